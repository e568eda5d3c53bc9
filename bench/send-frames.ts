// The publisher's frames: built once from a template, copied and stamped with the send time
// per socket write, so that publishing costs the load generator a copy, not an encode. STOMP
// SENDs here; the NATS client builds its PUBs from the same template (nats-client.ts). A
// STOMP batch may end with a SEND asking for a RECEIPT (max-rate publishing is paced by them).

import { TIMESTAMP_DIGITS, makeBody, nowMicros, writeTimestamp } from './payload';

/** Receipt ids are zero-padded digits, stamped into the template like the send time (same width). */
const RECEIPT_DIGITS = TIMESTAMP_DIGITS;

/** Frames of head + body + trailer, the body's timestamp slot at a known offset, copied per batch. */
export class StampedFrames {
  readonly frameBytes: number;
  /** The most frames one build() can return. */
  readonly maxFrames: number;
  protected readonly body: Buffer;
  private readonly template: Buffer;
  private readonly timestampEnd: number;

  constructor(head: Buffer, bodyBytes: number, trailer: Buffer, maxFrames: number) {
    this.body = makeBody(bodyBytes);
    const frame = Buffer.concat([head, this.body, trailer]);
    this.frameBytes = frame.length;
    this.maxFrames = maxFrames;
    this.timestampEnd = head.length + bodyBytes;
    this.template = Buffer.concat(new Array<Buffer>(maxFrames).fill(frame));
  }

  /** A fresh buffer (the socket may hold on to it) of `count` (<= maxFrames) frames stamped with now. */
  build(count: number): Buffer {
    return this.buildWithRoom(count, 0);
  }

  /** `count` stamped frames followed by `extraBytes` left for the caller to fill. */
  protected buildWithRoom(count: number, extraBytes: number): Buffer {
    const bytes = Buffer.allocUnsafe(this.frameBytes * count + extraBytes);
    this.template.copy(bytes, 0, 0, this.frameBytes * count);
    const now = nowMicros();
    for (let i = 0; i < count; i++) writeTimestamp(bytes, i * this.frameBytes + this.timestampEnd, now);
    return bytes;
  }
}

/** STOMP SEND frames to `destination`. */
export class SendBatcher extends StampedFrames {
  /** The same frame with a `receipt` header: where the id and the send time end in it. */
  private readonly receiptFrame: Buffer;
  private readonly receiptIdEnd: number;
  private readonly receiptTimestampEnd: number;

  constructor(destination: string, bodyBytes: number, maxFrames: number) {
    super(Buffer.from(`SEND\ndestination:${destination}\ncontent-length:${bodyBytes}\n\n`, 'latin1'), bodyBytes, Buffer.from([0]), maxFrames);
    const receiptHead = Buffer.from(`SEND\ndestination:${destination}\ncontent-length:${bodyBytes}\nreceipt:${'0'.repeat(RECEIPT_DIGITS)}\n\n`, 'latin1');
    this.receiptFrame = Buffer.concat([receiptHead, this.body, Buffer.from([0])]);
    this.receiptIdEnd = receiptHead.length - 2;
    this.receiptTimestampEnd = receiptHead.length + bodyBytes;
  }

  /**
   * A fresh buffer of `count` (<= maxFrames) frames stamped with now; with `receiptId`, the
   * last one asks for a RECEIPT with that id (digits only).
   */
  override build(count: number, receiptId?: number): Buffer {
    if (receiptId === undefined) return super.build(count);
    const plain = count - 1;
    const bytes = this.buildWithRoom(plain, this.receiptFrame.length);
    const offset = this.frameBytes * plain;
    this.receiptFrame.copy(bytes, offset);
    writeTimestamp(bytes, offset + this.receiptIdEnd, receiptId);
    writeTimestamp(bytes, offset + this.receiptTimestampEnd, nowMicros());
    return bytes;
  }

  /** The id build() stamps for `receiptId`, as the RECEIPT's receipt-id carries it. */
  static receiptIdText(receiptId: number): string {
    return String(receiptId).padStart(RECEIPT_DIGITS, '0');
  }
}
