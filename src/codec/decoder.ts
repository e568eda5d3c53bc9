// Streaming STOMP decoder: bytes in, frames out, whatever the chunking.
//
// Invariants:
// - Buffered bytes never exceed the limits: the header phase holds at most one partial
//   line (<= maxHeaderLineBytes + 1, for a CR), the body phase at most maxFrameBytes.
// - Frames hold views into the pushed chunks (no copy): a caller must not reuse a chunk's
//   memory after pushing it. Node sockets and `ws` hand out fresh buffers.
// - Parsed header lines are consumed as they complete, so a frame fed one byte at a time
//   is scanned once, not once per byte.
// - EOLs between frames are heart-beats, reported through onHeartbeat, never frames.
// - After a FrameError the decoder is failed and ignores further input.
// - pause() stops frame delivery at a frame boundary; the rest stays buffered until resume().
//   The session uses it while an asynchronous step (authentication) decides the version
//   by which the following frames must be unescaped.

import { FrameError } from './errors';
import { unescapeHeader } from './escape';
import { CLIENT_COMMANDS, EMPTY_BODY, SERVER_COMMANDS, isUnescapedCommand } from './frame';
import type { Frame, Header, StompVersion } from './frame';

export interface DecoderLimits {
  /** Command, headers and body together. */
  maxFrameBytes: number;
  maxHeaders: number;
  /** One header line (or the command line), without its EOL. */
  maxHeaderLineBytes: number;
}

export const DEFAULT_LIMITS: Readonly<DecoderLimits> = Object.freeze({
  maxFrameBytes: 1024 * 1024,
  maxHeaders: 64,
  maxHeaderLineBytes: 8 * 1024,
});

export interface DecoderOptions {
  limits?: Partial<DecoderLimits>;
  /** Escaping rules for frames other than CONNECT/STOMP/CONNECTED. Changeable between frames. */
  version?: StompVersion;
  /** Accept server commands (CONNECTED, MESSAGE, ...) too: for clients and tests. */
  acceptServerCommands?: boolean;
}

const LF = 10;
const CR = 13;
const NUL = 0;
const COLON = 58;

const enum Phase {
  FrameStart,
  Headers,
  Body,
  Failed,
}

export class Decoder {
  version: StompVersion;
  private readonly limits: DecoderLimits;
  private readonly acceptServerCommands: boolean;
  private readonly onFrame: (frame: Frame) => void;
  private onHeartbeat: (() => void) | undefined;

  private buf: Buffer = EMPTY_BODY;
  private pos = 0;
  private phase: Phase = Phase.FrameStart;
  private isPaused = false;
  private isDraining = false;

  // The frame being decoded.
  private command = '';
  private headers: Header[] = [];
  private headerLines = 0;
  private frameBytes = 0;
  private contentLength = -1;
  private bodyParts: Buffer[] = [];
  private bodyBytes = 0;

  constructor(onFrame: (frame: Frame) => void, options: DecoderOptions = {}) {
    this.onFrame = onFrame;
    this.version = options.version ?? '1.2';
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.acceptServerCommands = options.acceptServerCommands ?? false;
  }

  /** Called for every EOL seen between frames. */
  setHeartbeatListener(listener: () => void): void {
    this.onHeartbeat = listener;
  }

  /** Bytes received but not yet turned into frames. */
  get bufferedBytes(): number {
    return this.buf.length - this.pos + this.bodyBytes;
  }

  get isFailed(): boolean {
    return this.phase === Phase.Failed;
  }

  /** A frame has begun and not ended yet (EOLs between frames do not begin one). */
  get isInFrame(): boolean {
    return this.phase === Phase.Headers || this.phase === Phase.Body;
  }

  /** Feed bytes. Frames are delivered synchronously; a FrameError is thrown on bad input. */
  push(chunk: Buffer): void {
    if (this.phase === Phase.Failed || chunk.length === 0) return;
    if (this.pos >= this.buf.length) {
      this.buf = chunk;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.pos), chunk]);
    }
    this.pos = 0;
    this.drain();
  }

  pause(): void {
    this.isPaused = true;
  }

  /** Continue delivering frames already buffered. */
  resume(): void {
    if (!this.isPaused) return;
    this.isPaused = false;
    if (this.phase !== Phase.Failed) this.drain();
  }

  private drain(): void {
    if (this.isDraining) return; // resume() called from inside onFrame: the running loop continues
    this.isDraining = true;
    try {
      while (!this.isPaused && this.step()) {
        // step() made progress
      }
    } catch (err) {
      this.phase = Phase.Failed;
      this.buf = EMPTY_BODY;
      this.pos = 0;
      this.bodyParts = [];
      this.bodyBytes = 0;
      throw err;
    } finally {
      this.isDraining = false;
    }
  }

  /** One unit of progress; false when more bytes are needed. */
  private step(): boolean {
    switch (this.phase) {
      case Phase.FrameStart:
        return this.skipHeartbeats();
      case Phase.Headers:
        return this.readLine();
      case Phase.Body:
        return this.contentLength >= 0 ? this.readSizedBody() : this.readNulTerminatedBody();
      default:
        return false;
    }
  }

  private skipHeartbeats(): boolean {
    const buf = this.buf;
    let pos = this.pos;
    while (pos < buf.length) {
      const byte = buf[pos]!;
      if (byte === LF) {
        pos++;
        this.onHeartbeat?.();
      } else if (byte === CR) {
        pos++;
      } else {
        this.pos = pos;
        this.startFrame();
        return true;
      }
    }
    this.pos = pos;
    return false;
  }

  private startFrame(): void {
    this.phase = Phase.Headers;
    this.command = '';
    this.headers = [];
    this.headerLines = 0;
    this.frameBytes = 0;
    this.contentLength = -1;
  }

  private readLine(): boolean {
    const buf = this.buf;
    const start = this.pos;
    const lf = buf.indexOf(LF, start);
    const { maxHeaderLineBytes, maxFrameBytes } = this.limits;
    if (lf === -1) {
      const partial = buf.length - start;
      if (partial > maxHeaderLineBytes + 1) this.fail('HEADER_LINE_TOO_LONG', `a header line exceeds ${maxHeaderLineBytes} bytes`);
      if (this.frameBytes + partial > maxFrameBytes) this.tooLarge();
      return false;
    }
    let end = lf;
    if (end > start && buf[end - 1] === CR) end--;
    if (end - start > maxHeaderLineBytes) this.fail('HEADER_LINE_TOO_LONG', `a header line exceeds ${maxHeaderLineBytes} bytes`);
    this.frameBytes += lf + 1 - start;
    if (this.frameBytes > maxFrameBytes) this.tooLarge();
    this.pos = lf + 1;

    if (this.command === '') {
      this.acceptCommand(buf.toString('utf8', start, end));
    } else if (end === start) {
      this.endHeaders();
    } else {
      this.acceptHeaderLine(buf, start, end);
    }
    return true;
  }

  private acceptCommand(command: string): void {
    if (!CLIENT_COMMANDS.has(command) && !(this.acceptServerCommands && SERVER_COMMANDS.has(command))) {
      this.fail('UNKNOWN_COMMAND', `unknown command ${JSON.stringify(command.slice(0, 64))}`);
    }
    this.command = command;
  }

  private acceptHeaderLine(buf: Buffer, start: number, end: number): void {
    if (++this.headerLines > this.limits.maxHeaders) {
      this.fail('TOO_MANY_HEADERS', `a frame has more than ${this.limits.maxHeaders} headers`);
    }
    const colon = buf.indexOf(COLON, start);
    if (colon === -1 || colon >= end) {
      this.fail('MALFORMED_HEADER', `header line without a colon: ${JSON.stringify(buf.toString('utf8', start, Math.min(end, start + 64)))}`);
    }
    let name = buf.toString('utf8', start, colon);
    let value = buf.toString('utf8', colon + 1, end);
    if (!isUnescapedCommand(this.command)) {
      name = unescapeHeader(name, this.version);
      value = unescapeHeader(value, this.version);
    }
    const headers = this.headers;
    for (let i = 0; i < headers.length; i++) {
      if (headers[i]![0] === name) return; // the first of a repeated header wins
    }
    headers.push([name, value]);
  }

  private endHeaders(): void {
    this.phase = Phase.Body;
    this.bodyParts = [];
    this.bodyBytes = 0;
    for (const [name, value] of this.headers) {
      if (name !== 'content-length') continue;
      const text = value.trim();
      if (!/^\d{1,15}$/.test(text)) this.fail('BAD_CONTENT_LENGTH', `content-length ${JSON.stringify(value.slice(0, 32))} is not a byte count`);
      const length = Number(text);
      if (this.frameBytes + length + 1 > this.limits.maxFrameBytes) this.tooLarge();
      this.contentLength = length;
      break;
    }
  }

  private readSizedBody(): boolean {
    const needed = this.contentLength - this.bodyBytes; // body bytes still missing
    const available = this.buf.length - this.pos;
    if (available <= needed) {
      // Not there yet (the NUL after the body is missing too): keep a view of what came.
      if (available > 0) {
        this.bodyParts.push(this.buf.subarray(this.pos));
        this.bodyBytes += available;
      }
      this.buf = EMPTY_BODY;
      this.pos = 0;
      return false;
    }
    const terminator = this.pos + needed;
    if (this.buf[terminator] !== NUL) {
      this.fail('MISSING_NUL', `the ${this.contentLength}-byte body given by content-length is not followed by a NUL`);
    }
    const body = this.takeBody(this.buf.subarray(this.pos, terminator));
    this.pos = terminator + 1;
    this.emit(body);
    return true;
  }

  private readNulTerminatedBody(): boolean {
    const nul = this.buf.indexOf(NUL, this.pos);
    const room = this.limits.maxFrameBytes - this.frameBytes - this.bodyBytes;
    if (nul === -1) {
      const available = this.buf.length - this.pos;
      if (available >= room) this.tooLarge();
      if (available > 0) {
        this.bodyParts.push(this.buf.subarray(this.pos));
        this.bodyBytes += available;
      }
      this.buf = EMPTY_BODY;
      this.pos = 0;
      return false;
    }
    if (nul - this.pos >= room) this.tooLarge();
    const body = this.takeBody(this.buf.subarray(this.pos, nul));
    this.pos = nul + 1;
    this.emit(body);
    return true;
  }

  private takeBody(last: Buffer): Buffer {
    if (this.bodyParts.length === 0) return last.length === 0 ? EMPTY_BODY : last;
    this.bodyParts.push(last);
    const body = Buffer.concat(this.bodyParts, this.bodyBytes + last.length);
    this.bodyParts = [];
    this.bodyBytes = 0;
    return body;
  }

  private emit(body: Buffer): void {
    const frame: Frame = { command: this.command, headers: this.headers, body };
    this.phase = Phase.FrameStart;
    this.headers = [];
    this.command = '';
    this.onFrame(frame);
  }

  private tooLarge(): never {
    this.fail('FRAME_TOO_LARGE', `a frame exceeds ${this.limits.maxFrameBytes} bytes`);
  }

  private fail(code: FrameError['code'], message: string): never {
    throw new FrameError(code, message);
  }
}
