// Streaming STOMP decoder: bytes in, frames out, whatever the chunking.
//
// Invariants:
// - Buffered bytes never exceed the limits: the header phase holds at most one partial
//   line (<= maxHeaderLineBytes + 1, for a CR), the body phase at most maxFrameBytes.
// - After push() returns, no view of a pushed chunk is kept: a partial line, a partial body
//   and bytes pushed while paused are copied into buffers the decoder owns, which grow by
//   doubling. So what a frame in progress holds (heldBytes) is at most about twice its bytes
//   however finely it is split (1-byte WebSocket messages cost no Buffer object per byte),
//   and every byte of it is reserved from the optional shared budget first.
// - The headers of a frame in progress (parsed strings, kept until the frame is out) are
//   reserved too, when the decoder stops with a frame unfinished: a frame decoded within one
//   push pays one comparison for them, not a reservation per header.
// - A frame that arrives within one chunk is not copied: its body is a view of the chunk,
//   so a caller must not reuse a chunk's memory after pushing it. Node sockets and `ws` hand
//   out fresh buffers.
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
  /** RabbitMQ's STOMP default (frame_max 4 MiB): what its users expect to send. */
  maxFrameBytes: 4 * 1024 * 1024,
  maxHeaders: 64,
  maxHeaderLineBytes: 8 * 1024,
});

/**
 * Bytes shared by many decoders (all connections of a server): a decoder reserves what it
 * holds for frames in progress before allocating it, and releases it when the frame is out.
 */
export interface ByteBudget {
  /** false: refused, nothing reserved. */
  tryReserve(bytes: number): boolean;
  release(bytes: number): void;
}

export interface DecoderOptions {
  limits?: Partial<DecoderLimits>;
  /** Refused reservations fail the decoder with SERVER_BUSY. */
  budget?: ByteBudget;
  /** Escaping rules for frames other than CONNECT/STOMP/CONNECTED. Changeable between frames. */
  version?: StompVersion;
  /** Accept server commands (CONNECTED, MESSAGE, ...) too: for clients and tests. */
  acceptServerCommands?: boolean;
}

const LF = 10;
const CR = 13;
const NUL = 0;
const COLON = 58;

/** Per parsed header held for a frame in progress: its tuple, two string headers, its slot. */
const HEADER_OVERHEAD_BYTES = 64;

/** What a string takes on the heap: a byte per character, two if any is above U+00FF. */
function stringHeapBytes(text: string): number {
  return /[\u0100-\uffff]/.test(text) ? 2 * text.length : text.length;
}

/** First capacity of an accumulation buffer; it doubles from there. */
const MIN_CAPACITY_BYTES = 256;

const enum Phase {
  FrameStart,
  Headers,
  Body,
  Failed,
}

/**
 * Bytes copied out of pushed chunks into one buffer that doubles as it fills (never past a
 * cap), its capacity reserved from the budget first. Created when a frame spans pushes and
 * dropped (release()) once its bytes are used, so an idle decoder holds none.
 */
class Accumulator {
  private bytes: Buffer = EMPTY_BODY;
  length = 0;
  private readonly budget: ByteBudget | undefined;

  constructor(budget: ByteBudget | undefined) {
    this.budget = budget;
  }

  get capacity(): number {
    return this.bytes.length;
  }

  /** The bytes so far. The buffer is never reused after release(): the view may be kept. */
  get view(): Buffer {
    return this.bytes.subarray(0, this.length);
  }

  /** Copy src[start, end). `maxCapacity`: the most this item can ever need. */
  append(src: Buffer, start: number, end: number, maxCapacity: number): void {
    const needed = this.length + (end - start);
    if (needed > this.bytes.length) {
      const capacity = Math.min(Math.max(needed, this.bytes.length * 2, MIN_CAPACITY_BYTES), Math.max(maxCapacity, needed));
      if (this.budget !== undefined && !this.budget.tryReserve(capacity - this.bytes.length)) {
        throw new FrameError('SERVER_BUSY', 'the server holds too many frames in progress; try again later');
      }
      const grown = Buffer.allocUnsafe(capacity);
      this.bytes.copy(grown, 0, 0, this.length);
      this.bytes = grown;
    }
    src.copy(this.bytes, this.length, start, end);
    this.length = needed;
  }

  /** Give the capacity back to the budget; the accumulator is not used after. */
  release(): undefined {
    if (this.bytes.length > 0) this.budget?.release(this.bytes.length);
    this.bytes = EMPTY_BODY;
    this.length = 0;
    return undefined;
  }
}

export class Decoder {
  version: StompVersion;
  private readonly limits: DecoderLimits;
  private readonly acceptServerCommands: boolean;
  private readonly onFrame: (frame: Frame) => void;
  private onHeartbeat: (() => void) | undefined;
  private readonly budget: ByteBudget | undefined;

  /** The chunk being scanned; empty between pushes. */
  private buf: Buffer = EMPTY_BODY;
  private pos = 0;
  private phase: Phase = Phase.FrameStart;
  private isPaused = false;
  private isDraining = false;
  /** A header line (or command line) whose LF has not come yet. */
  private line: Accumulator | undefined;
  /** A body that spans pushes. */
  private body: Accumulator | undefined;
  /** Bytes pushed while paused, waiting for resume(). */
  private backlog: Accumulator | undefined;

  // The frame being decoded.
  private command = '';
  private headers: Header[] = [];
  /** Of `headers`, how many are reserved from the budget (as headerHeldBytes); 0 when none is. */
  private reservedHeaders = 0;
  private headerHeldBytes = 0;
  private headerLines = 0;
  private frameBytes = 0;
  private contentLength = -1;

  constructor(onFrame: (frame: Frame) => void, options: DecoderOptions = {}) {
    this.onFrame = onFrame;
    this.version = options.version ?? '1.2';
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.acceptServerCommands = options.acceptServerCommands ?? false;
    this.budget = options.budget;
  }

  /** Called for every EOL seen between frames. */
  setHeartbeatListener(listener: () => void): void {
    this.onHeartbeat = listener;
  }

  /** Bytes received but not yet turned into frames. */
  get bufferedBytes(): number {
    return this.buf.length - this.pos + (this.line?.length ?? 0) + (this.body?.length ?? 0) + (this.backlog?.length ?? 0);
  }

  /** Memory the decoder holds between pushes (its buffers' capacity): at most ~2 × bufferedBytes + a constant. */
  get heldBytes(): number {
    return (this.line?.capacity ?? 0) + (this.body?.capacity ?? 0) + (this.backlog?.capacity ?? 0) + this.headerHeldBytes;
  }

  /** Of heldBytes, what the parsed headers of a frame spanning pushes are counted for. */
  get heldHeaderBytes(): number {
    return this.headerHeldBytes;
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
    if (this.isPaused || this.isDraining) {
      // Paused, or pushed from inside onFrame: after what is already waiting.
      try {
        (this.backlog ??= new Accumulator(this.budget)).append(chunk, 0, chunk.length, Number.MAX_SAFE_INTEGER);
      } catch (err) {
        this.failed();
        throw err;
      }
      return;
    }
    this.buf = chunk;
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

  /** Drop everything buffered and give its bytes back to the budget; later input is ignored. */
  dispose(): void {
    this.failed();
  }

  private drain(): void {
    if (this.isDraining) return; // resume() called from inside onFrame: the running loop continues
    this.isDraining = true;
    try {
      for (;;) {
        if (this.isPaused) {
          this.keepRestForLater();
          break;
        }
        if (this.step()) continue;
        // This input is used up (a partial line or body was copied): the backlog is next.
        if (this.backlog === undefined) break;
        this.buf = this.backlog.view;
        this.pos = 0;
        this.backlog = this.backlog.release();
      }
      // Stopped with a frame unfinished: its parsed headers stay until it ends.
      if (this.headers.length > this.reservedHeaders) this.reserveHeaders();
      this.buf = EMPTY_BODY;
      this.pos = 0;
    } catch (err) {
      this.failed();
      throw err;
    } finally {
      this.isDraining = false;
    }
  }

  /** Paused: the rest of the input being scanned waits for resume(), before the backlog. */
  private keepRestForLater(): void {
    if (this.pos >= this.buf.length) return;
    const waiting = this.backlog;
    this.backlog = new Accumulator(this.budget);
    this.backlog.append(this.buf, this.pos, this.buf.length, Number.MAX_SAFE_INTEGER);
    if (waiting !== undefined) {
      this.backlog.append(waiting.view, 0, waiting.length, Number.MAX_SAFE_INTEGER);
      waiting.release();
    }
    this.buf = EMPTY_BODY;
    this.pos = 0;
  }

  /** Reserve the headers parsed since the last reservation. */
  private reserveHeaders(): void {
    const headers = this.headers;
    let bytes = 0;
    for (let i = this.reservedHeaders; i < headers.length; i++) {
      const [name, value] = headers[i]!;
      bytes += HEADER_OVERHEAD_BYTES + stringHeapBytes(name) + stringHeapBytes(value);
    }
    if (this.budget !== undefined && !this.budget.tryReserve(bytes)) {
      throw new FrameError('SERVER_BUSY', 'the server holds too many frames in progress; try again later');
    }
    this.headerHeldBytes += bytes;
    this.reservedHeaders = headers.length;
  }

  private releaseHeaders(): void {
    this.budget?.release(this.headerHeldBytes);
    this.headerHeldBytes = 0;
    this.reservedHeaders = 0;
  }

  private failed(): void {
    this.phase = Phase.Failed;
    this.clear();
  }

  private clear(): void {
    this.buf = EMPTY_BODY;
    this.pos = 0;
    this.line = this.line?.release();
    this.body = this.body?.release();
    this.backlog = this.backlog?.release();
    if (this.headerHeldBytes !== 0) this.releaseHeaders();
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
    const carried = this.line?.length ?? 0;
    if (lf === -1) {
      const partial = carried + buf.length - start;
      if (partial > maxHeaderLineBytes + 1) this.lineTooLong();
      if (this.frameBytes + partial > maxFrameBytes) this.tooLarge();
      (this.line ??= new Accumulator(this.budget)).append(buf, start, buf.length, maxHeaderLineBytes + 2);
      this.pos = buf.length;
      return false;
    }
    this.pos = lf + 1;
    // The line: in the chunk, or (its start came earlier) completed in the line buffer.
    let lineBuf = buf;
    let lineStart = start;
    let eol = lf;
    if (carried > 0) {
      if (carried + lf - start > maxHeaderLineBytes + 1) this.lineTooLong();
      this.line!.append(buf, start, lf + 1, maxHeaderLineBytes + 2);
      lineBuf = this.line!.view;
      lineStart = 0;
      eol = lineBuf.length - 1;
    }
    let end = eol;
    if (end > lineStart && lineBuf[end - 1] === CR) end--;
    if (end - lineStart > maxHeaderLineBytes) this.lineTooLong();
    this.frameBytes += eol + 1 - lineStart;
    if (this.frameBytes > maxFrameBytes) this.tooLarge();

    if (this.command === '') {
      this.acceptCommand(lineBuf.toString('utf8', lineStart, end));
    } else if (end === lineStart) {
      this.endHeaders();
    } else {
      this.acceptHeaderLine(lineBuf, lineStart, end);
    }
    if (carried > 0) this.line = this.line!.release(); // the strings are copies: the line buffer is free
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
    const needed = this.contentLength - (this.body?.length ?? 0); // body bytes still missing
    const available = this.buf.length - this.pos;
    if (available <= needed) {
      // Not there yet (the NUL after the body is missing too): keep a copy of what came.
      if (available > 0) (this.body ??= new Accumulator(this.budget)).append(this.buf, this.pos, this.buf.length, this.contentLength);
      this.pos = this.buf.length;
      return false;
    }
    const terminator = this.pos + needed;
    if (this.buf[terminator] !== NUL) {
      this.fail('MISSING_NUL', `the ${this.contentLength}-byte body given by content-length is not followed by a NUL`);
    }
    const body = this.takeBody(terminator, this.contentLength);
    this.pos = terminator + 1;
    this.emit(body);
    return true;
  }

  private readNulTerminatedBody(): boolean {
    const nul = this.buf.indexOf(NUL, this.pos);
    const maxBodyBytes = this.limits.maxFrameBytes - this.frameBytes - 1; // the NUL counts too
    if (nul === -1) {
      const available = this.buf.length - this.pos;
      const bodyBytes = this.body?.length ?? 0;
      if (bodyBytes + available > maxBodyBytes) this.tooLarge();
      if (available > 0) (this.body ??= new Accumulator(this.budget)).append(this.buf, this.pos, this.buf.length, maxBodyBytes);
      this.pos = this.buf.length;
      return false;
    }
    if ((this.body?.length ?? 0) + nul - this.pos > maxBodyBytes) this.tooLarge();
    const body = this.takeBody(nul, maxBodyBytes);
    this.pos = nul + 1;
    this.emit(body);
    return true;
  }

  /** The body ending at `end` of the current chunk: a view when it all came in this chunk. */
  private takeBody(end: number, maxBodyBytes: number): Buffer {
    const body = this.body;
    if (body === undefined) return end === this.pos ? EMPTY_BODY : this.buf.subarray(this.pos, end);
    body.append(this.buf, this.pos, end, maxBodyBytes);
    const bytes = body.view; // the frame's now: no longer held, nor counted
    this.body = body.release();
    return bytes;
  }

  private emit(body: Buffer): void {
    const frame: Frame = { command: this.command, headers: this.headers, body };
    if (this.headerHeldBytes !== 0) this.releaseHeaders(); // the frame's now
    this.phase = Phase.FrameStart;
    this.headers = [];
    this.command = '';
    this.onFrame(frame);
  }

  private lineTooLong(): never {
    this.fail('HEADER_LINE_TOO_LONG', `a header line exceeds ${this.limits.maxHeaderLineBytes} bytes`);
  }

  private tooLarge(): never {
    this.fail('FRAME_TOO_LARGE', `a frame exceeds ${this.limits.maxFrameBytes} bytes`);
  }

  private fail(code: FrameError['code'], message: string): never {
    throw new FrameError(code, message);
  }
}
