// The benchmark's message body: ASCII digits ending in the publisher's send time, so a
// subscriber finds the time in the bytes just before the frame's NUL and never has to
// decode a frame.
//
// Invariants: a body is only ASCII digits (never a NUL, valid UTF-8 for WebSocket text
// messages); its last TIMESTAMP_DIGITS bytes are microseconds on this process's
// performance.now() clock, zero-padded. Publisher and subscribers share one process, so
// one clock.

import { performance } from 'node:perf_hooks';

/** 12 digits of µs cover 11 days of process uptime. */
export const TIMESTAMP_DIGITS = 12;

const ZERO = 48;

export function nowMicros(): number {
  return Math.round(performance.now() * 1000);
}

/** Write `micros` as TIMESTAMP_DIGITS zero-padded digits ending just before `end`. */
export function writeTimestamp(buffer: Buffer, end: number, micros: number): void {
  let value = micros;
  for (let i = end - 1; i >= end - TIMESTAMP_DIGITS; i--) {
    buffer[i] = ZERO + (value % 10);
    value = Math.floor(value / 10);
  }
}

/**
 * Read the timestamp that ends just before `end` in `buffer`, or -1 when those bytes
 * are not all digits (a frame that is not ours, or one cut short).
 */
export function readTimestamp(buffer: Buffer, end: number): number {
  if (end < TIMESTAMP_DIGITS) return -1;
  let value = 0;
  for (let i = end - TIMESTAMP_DIGITS; i < end; i++) {
    const digit = buffer[i]! - ZERO;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

/** A body of `bodyBytes` digits whose timestamp slot is still zero. */
export function makeBody(bodyBytes: number): Buffer {
  if (bodyBytes < TIMESTAMP_DIGITS) throw new RangeError(`body must be at least ${TIMESTAMP_DIGITS} bytes to carry the timestamp`);
  return Buffer.alloc(bodyBytes, '0');
}
