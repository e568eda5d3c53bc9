// The envelope a message travels in between instances: binary-safe (the body is raw bytes,
// NULs and all; header names and values are UTF-8 with explicit lengths, so colons, line
// breaks and backslashes need no escaping) and compact (varint lengths, no field names).
//
//   byte 1        format version (1)
//   varint+bytes  origin instance id
//   varint+bytes  message id, destination, route key
//   varint        header count, then per header: varint+bytes name, varint+bytes value
//   rest          body

import { isUtf8 } from 'node:buffer';
import type { Header } from '../codec';

export interface Envelope {
  /** The instance that published it: it never delivers its own envelope again. */
  origin: string;
  messageId: string;
  destination: string;
  routeKey: string;
  headers: readonly Header[];
  body: Buffer;
}

const FORMAT_VERSION = 1;

/** Bytes that are not an envelope this instance can read. */
export class EnvelopeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EnvelopeError';
  }
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, offset: number, n: number): number {
  while (n >= 0x80) {
    out[offset++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[offset++] = n;
  return offset;
}

export function encodeEnvelope(envelope: Envelope): Buffer {
  const strings = [envelope.origin, envelope.messageId, envelope.destination, envelope.routeKey];
  for (const [name, value] of envelope.headers) strings.push(name, value);
  const lengths = strings.map((s) => Buffer.byteLength(s));
  let size = 1 + varintSize(envelope.headers.length) + envelope.body.length;
  for (const length of lengths) size += varintSize(length) + length;
  const out = Buffer.allocUnsafe(size);
  out[0] = FORMAT_VERSION;
  let offset = 1;
  const put = (index: number): void => {
    offset = writeVarint(out, offset, lengths[index]!);
    offset += out.write(strings[index]!, offset, 'utf8');
  };
  for (let i = 0; i < 4; i++) put(i);
  offset = writeVarint(out, offset, envelope.headers.length);
  for (let i = 4; i < strings.length; i++) put(i);
  envelope.body.copy(out, offset);
  return out;
}

/** Bytes a length may take: 5 varint bytes carry 35 bits, more than any Buffer holds. */
const MAX_VARINT_BYTES = 5;
const FIELD_NAMES = ['origin', 'message id', 'destination', 'route key'] as const;

/**
 * Another instance's bytes, checked like client input: an unknown format, a length past the
 * end, an over-long varint, a header count the remaining bytes cannot hold, or a name or
 * value that is not UTF-8 is an EnvelopeError naming what is wrong. Work is linear in the
 * input (each header takes at least two bytes), whatever the counts claim.
 */
export function decodeEnvelope(bytes: Buffer): Envelope {
  if (bytes.length === 0) throw new EnvelopeError('empty envelope');
  if (bytes[0] !== FORMAT_VERSION) throw new EnvelopeError(`unknown envelope format ${bytes[0]} (this instance reads format ${FORMAT_VERSION})`);
  let offset = 1;
  const varint = (what: string): number => {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (offset >= bytes.length) throw new EnvelopeError(`truncated envelope: the length of the ${what} runs past the end`);
      const byte = bytes[offset++]!;
      n += (byte & 0x7f) * scale;
      if (byte < 0x80) return n;
      scale *= 0x80;
    }
    throw new EnvelopeError(`bad envelope: the length of the ${what} takes more than ${MAX_VARINT_BYTES} bytes`);
  };
  const text = (what: string): string => {
    const length = varint(what);
    if (length > bytes.length - offset) throw new EnvelopeError(`truncated envelope: the ${what} (${length} bytes) runs past the end`);
    const end = offset + length;
    if (!isUtf8(bytes.subarray(offset, end))) throw new EnvelopeError(`bad envelope: the ${what} is not UTF-8`);
    const value = bytes.toString('utf8', offset, end);
    offset = end;
    return value;
  };
  const [origin, messageId, destination, routeKey] = FIELD_NAMES.map((name) => text(name)) as [string, string, string, string];
  const count = varint('header count');
  // Each header takes two length bytes at least: a count the rest cannot hold is a lie.
  if (count > (bytes.length - offset) / 2) throw new EnvelopeError(`bad envelope: ${count} headers cannot fit in the ${bytes.length - offset} bytes left`);
  const headers: Header[] = [];
  for (let i = 0; i < count; i++) headers.push([text(`name of header ${i}`), text(`value of header ${i}`)]);
  return { origin, messageId, destination, routeKey, headers, body: bytes.subarray(offset) };
}
