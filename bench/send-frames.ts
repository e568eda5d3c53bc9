// The publisher's SEND frames: built once from a template, copied and stamped with the send
// time per socket write, so that publishing costs the load generator a copy, not an encode.
// A batch may end with a SEND asking for a RECEIPT (max-rate publishing is paced by them).

import { TIMESTAMP_DIGITS, makeBody, nowMicros, writeTimestamp } from './payload';

/** Receipt ids are zero-padded digits, stamped into the template like the send time (same width). */
const RECEIPT_DIGITS = TIMESTAMP_DIGITS;

/** SEND frames with the timestamp slot at a known offset, built once and copied per batch. */
export class SendBatcher {
  readonly frameBytes: number;
  /** The most frames one build() can return. */
  readonly maxFrames: number;
  private readonly template: Buffer;
  private readonly timestampEnd: number;
  /** The same frame with a `receipt` header: its length, and where the id and the send time end in it. */
  private readonly receiptFrame: Buffer;
  private readonly receiptIdEnd: number;
  private readonly receiptTimestampEnd: number;

  constructor(destination: string, bodyBytes: number, maxFrames: number) {
    const head = Buffer.from(`SEND\ndestination:${destination}\ncontent-length:${bodyBytes}\n\n`, 'latin1');
    const body = makeBody(bodyBytes);
    const frame = Buffer.concat([head, body, Buffer.from([0])]);
    this.frameBytes = frame.length;
    this.maxFrames = maxFrames;
    this.timestampEnd = head.length + bodyBytes;
    this.template = Buffer.concat(new Array<Buffer>(maxFrames).fill(frame));
    const receiptHead = Buffer.from(`SEND\ndestination:${destination}\ncontent-length:${bodyBytes}\nreceipt:${'0'.repeat(RECEIPT_DIGITS)}\n\n`, 'latin1');
    this.receiptFrame = Buffer.concat([receiptHead, body, Buffer.from([0])]);
    this.receiptIdEnd = receiptHead.length - 2;
    this.receiptTimestampEnd = receiptHead.length + bodyBytes;
  }

  /**
   * A fresh buffer (the socket may hold on to it) of `count` (<= maxFrames) frames stamped
   * with now; with `receiptId`, the last one asks for a RECEIPT with that id (digits only).
   */
  build(count: number, receiptId?: number): Buffer {
    const plain = receiptId === undefined ? count : count - 1;
    const bytes = Buffer.allocUnsafe(this.frameBytes * plain + (receiptId === undefined ? 0 : this.receiptFrame.length));
    this.template.copy(bytes, 0, 0, this.frameBytes * plain);
    const now = nowMicros();
    for (let i = 0; i < plain; i++) writeTimestamp(bytes, i * this.frameBytes + this.timestampEnd, now);
    if (receiptId !== undefined) {
      const offset = this.frameBytes * plain;
      this.receiptFrame.copy(bytes, offset);
      writeTimestamp(bytes, offset + this.receiptIdEnd, receiptId);
      writeTimestamp(bytes, offset + this.receiptTimestampEnd, now);
    }
    return bytes;
  }

  /** The id build() stamps for `receiptId`, as the RECEIPT's receipt-id carries it. */
  static receiptIdText(receiptId: number): string {
    return String(receiptId).padStart(RECEIPT_DIGITS, '0');
  }
}
