// A published message: decoded once from SEND, encoded once per destination and STOMP
// version, then shared by every subscriber. Only the per-subscriber head
// ("MESSAGE", subscription, ack) is written per delivery.

import { isUtf8 } from 'node:buffer';
import { encodeFrameTail } from '../codec';
import { DROPPED_HEADER } from './subscription';
import type { Header, StompVersion } from '../codec';

/** The header naming the sender's user id on every MESSAGE; a client-supplied copy is dropped. */
export const USER_ID_HEADER = 'user-id';

/**
 * SEND headers the broker sets itself or that only mean something on the SEND. `x-presence`
 * marks the broker's JOIN/LEAVE/snapshot messages and `x-dropped` what a slow subscriber
 * missed: a client must not be able to forge either.
 */
const RESERVED_HEADERS = ['destination', 'message-id', 'subscription', 'ack', 'receipt', 'transaction', 'content-length', 'redelivered', USER_ID_HEADER, DROPPED_HEADER, 'x-presence'];

/**
 * A header name as a lenient client might read it: case, punctuation, spaces and control
 * characters ignored ("User-Id", "user_id", "user-id " and "user-id:" all read "userid"),
 * after Unicode folding: compatibility forms (NFKC: "ｕｓｅｒ-ｉｄ") and the letters whose
 * case mapping lands on ASCII ("ſ" → "S", "ı" → "I", "K" (Kelvin) → "k") read as their ASCII
 * letter, as Java's equalsIgnoreCase or a toUpperCase() comparison would read them.
 */
function looseName(name: string): string {
  // ASCII names (nearly all) skip the Unicode work: it is per header of every SEND.
  const folded = NON_ASCII.test(name) ? name.normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC') : name.toLowerCase();
  return folded.replace(/[^a-z0-9]/g, '');
}

const NON_ASCII = /[\u0080-\uffff]/;

const RESERVED_LOOSE_NAMES: ReadonlySet<string> = new Set(RESERVED_HEADERS.map(looseName));

/** Whether a receiver could mistake a header of this name for one the broker sets (or an empty name). */
export function isReservedHeaderName(name: string): boolean {
  return name === '' || RESERVED_LOOSE_NAMES.has(looseName(name));
}

/** Whether a lenient receiver would read header `name` as `other` (see looseName). */
export function readsAs(name: string, other: string): boolean {
  return looseName(name) === looseName(other);
}

/**
 * The SEND headers a MESSAGE carries on (STOMP 1.2: user-defined headers MUST be passed
 * through): all but the reserved ones and any name a client could mistake for one of them
 * (so the broker's own `user-id` is the only one a receiver sees), and empty names.
 */
export function forwardableHeaders(sendHeaders: readonly Header[]): Header[] {
  const kept: Header[] = [];
  for (const header of sendHeaders) if (!isReservedHeaderName(header[0])) kept.push(header);
  return kept;
}

/**
 * Whether a receiver of `version` can be given a header with this name. 1.2 escapes
 * everything; 1.1 has no escape for CR; 1.0 none at all, so a colon or line break in a name
 * would move the name/value split or start a forged header: such headers are left out.
 */
export function isNameCarriedBy(name: string, version: StompVersion): boolean {
  if (version === '1.2') return true;
  if (version === '1.1') return !name.includes('\r');
  return !/[:\r\n]/.test(name);
}

const MAX_SHARED_FRAMES = 8;

/**
 * What a held message costs beyond its body and header text: the objects, ids, caches, and a
 * share of its queue's. Measured: 100k queues x 3 messages of 11 bytes with 3 headers cost
 * ~970 bytes of heap each; counted with this, ~935.
 */
const MESSAGE_OVERHEAD_BYTES = 640;
/** Per header: its tuple and two strings. */
const HEADER_OVERHEAD_BYTES = 64;

/**
 * The bytes a message (or a frame held for later) is counted for in the limits: its body,
 * its header names and values, and a fixed overhead. Header-heavy messages with empty bodies
 * cost memory too, mostly on the V8 heap.
 */
export function heldByteSize(headers: readonly Header[], bodyBytes: number): number {
  let bytes = bodyBytes + MESSAGE_OVERHEAD_BYTES;
  for (const [name, value] of headers) bytes += name.length + value.length + HEADER_OVERHEAD_BYTES;
  return bytes;
}

/**
 * The `expires` header as ActiveMQ and RabbitMQ clients send it: ms since the epoch; absent,
 * 0 or not a number means the message never expires.
 */
export function expiresAtMsOf(headers: readonly Header[]): number | undefined {
  for (const [name, value] of headers) {
    if (name !== 'expires') continue;
    const at = Number(value);
    return Number.isFinite(at) && at > 0 ? at : undefined;
  }
  return undefined;
}

export class Message {
  readonly id: string;
  /** The destination subscribers see in the MESSAGE. */
  readonly destination: string;
  /** Where the router delivers it: the destination, or for a user destination `/user/<id>/queue/x`. */
  readonly routeKey: string;
  /** The sender's own headers, minus the reserved ones. */
  readonly headers: readonly Header[];
  readonly body: Buffer;
  /** Not valid UTF-8: WebSocket must carry it in a binary message. */
  readonly isBinary: boolean;
  /** What holding it costs, as the queue and transaction limits count it (heldByteSize). */
  readonly byteSize: number;
  /** Set when a queue hands the message out again after a NACK or a lost consumer. */
  isRedelivered = false;
  /** When it was published (Date.now()): a queue's oldest message age. */
  createdAtMs = Date.now();
  /** Queue messages: past this Date.now() time it is never delivered (the `expires` header); undefined: never. */
  expiresAtMs: number | undefined = undefined;
  private tails: Partial<Record<StompVersion, Buffer>> = {};
  /** Whole MESSAGE frames by subscription head, for heads many subscribers share. */
  private frames: Map<string, Buffer> | undefined;
  private redeliveredTails: Partial<Record<StompVersion, Buffer>> = {};

  constructor(id: string, destination: string, routeKey: string, headers: readonly Header[], body: Buffer) {
    this.id = id;
    this.destination = destination;
    this.routeKey = routeKey;
    this.headers = headers;
    this.body = body;
    this.isBinary = body.length > 0 && !isUtf8(body);
    this.byteSize = heldByteSize(headers, body.length) + destination.length + routeKey.length + id.length;
  }

  /**
   * The whole frame for an auto-ack subscription whose head is `head` (its key: `headKey`).
   * Clients tend to reuse subscription ids (stompjs numbers them sub-0, sub-1, ...), so one
   * buffer serves most subscribers and a delivery is a single write. At most
   * MAX_SHARED_FRAMES heads are kept; beyond that: undefined, write head and tail apart.
   */
  frameFor(head: Buffer, headKey: string, version: StompVersion): Buffer | undefined {
    if (this.isRedelivered) return undefined;
    let frame = this.frames?.get(headKey);
    if (frame !== undefined) return frame;
    this.frames ??= new Map();
    if (this.frames.size >= MAX_SHARED_FRAMES) return undefined;
    const tail = this.tail(version);
    frame = Buffer.concat([head, tail], head.length + tail.length);
    this.frames.set(headKey, frame);
    return frame;
  }

  /** Drop the shared whole frames once a fan-out no longer needs them. */
  releaseFrames(): void {
    this.frames = undefined;
  }

  /** The frame after the per-subscriber head, encoded once per version. */
  tail(version: StompVersion): Buffer {
    const cache = this.isRedelivered ? this.redeliveredTails : this.tails;
    let tail = cache[version];
    if (tail === undefined) {
      const headers: Header[] = [
        ['destination', this.destination],
        ['message-id', this.id],
      ];
      if (this.isRedelivered) headers.push(['redelivered', 'true']);
      for (const header of this.headers) if (isNameCarriedBy(header[0], version)) headers.push(header);
      tail = encodeFrameTail(headers, this.body, version);
      cache[version] = tail;
    }
    return tail;
  }
}
