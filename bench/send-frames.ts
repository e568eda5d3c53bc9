// The publisher's frames: built once from a template, copied and stamped with the send time
// per socket write, so that publishing costs the load generator a copy, not an encode. STOMP
// SENDs here; the NATS client builds its PUBs from the same template (nats-client.ts).

import { makeBody, nowMicros, writeTimestamp } from './payload';

/** Frames of head + body + trailer, the body's timestamp slot at a known offset, copied per batch. */
export class StampedFrames {
  readonly frameBytes: number;
  /** The most frames one build() can return. */
  readonly maxFrames: number;
  private readonly template: Buffer;
  private readonly timestampEnd: number;

  constructor(head: Buffer, bodyBytes: number, trailer: Buffer, maxFrames: number) {
    const frame = Buffer.concat([head, makeBody(bodyBytes), trailer]);
    this.frameBytes = frame.length;
    this.maxFrames = maxFrames;
    this.timestampEnd = head.length + bodyBytes;
    this.template = Buffer.concat(new Array<Buffer>(maxFrames).fill(frame));
  }

  /** A fresh buffer (the socket may hold on to it) of `count` (<= maxFrames) frames stamped with now. */
  build(count: number): Buffer {
    const bytes = Buffer.allocUnsafe(this.frameBytes * count);
    this.template.copy(bytes, 0, 0, bytes.length);
    const now = nowMicros();
    for (let i = 0; i < count; i++) writeTimestamp(bytes, i * this.frameBytes + this.timestampEnd, now);
    return bytes;
  }
}

/** STOMP SEND frames to `destination`. */
export class SendBatcher extends StampedFrames {
  constructor(destination: string, bodyBytes: number, maxFrames: number) {
    super(Buffer.from(`SEND\ndestination:${destination}\ncontent-length:${bodyBytes}\n\n`, 'latin1'), bodyBytes, Buffer.from([0]), maxFrames);
  }
}
