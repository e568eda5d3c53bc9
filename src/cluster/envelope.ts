// The envelope a message travels in between instances: binary-safe (the body is raw bytes,
// NULs and all; header names and values are UTF-8 with explicit lengths, so colons, line
// breaks and backslashes need no escaping) and compact (varint lengths, no field names).
//
//   byte 1        format version (1)
//   varint+bytes  origin instance id
//   varint+bytes  message id, destination, route key
//   varint        header count, then per header: varint+bytes name, varint+bytes value
//   rest          body

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

export class EnvelopeError extends Error {}

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

export function decodeEnvelope(bytes: Buffer): Envelope {
  if (bytes.length === 0 || bytes[0] !== FORMAT_VERSION) throw new EnvelopeError(`unknown envelope format ${bytes[0]}`);
  let offset = 1;
  const varint = (): number => {
    let n = 0;
    let scale = 1;
    for (;;) {
      if (offset >= bytes.length) throw new EnvelopeError('truncated envelope');
      const byte = bytes[offset++]!;
      n += (byte & 0x7f) * scale;
      if (byte < 0x80) return n;
      scale *= 0x80;
      if (scale > 2 ** 35) throw new EnvelopeError('bad varint in envelope');
    }
  };
  const text = (): string => {
    const length = varint();
    if (offset + length > bytes.length) throw new EnvelopeError('truncated envelope');
    const value = bytes.toString('utf8', offset, offset + length);
    offset += length;
    return value;
  };
  const origin = text();
  const messageId = text();
  const destination = text();
  const routeKey = text();
  const count = varint();
  const headers: Header[] = [];
  for (let i = 0; i < count; i++) headers.push([text(), text()]);
  return { origin, messageId, destination, routeKey, headers, body: bytes.subarray(offset) };
}
