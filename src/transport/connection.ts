// The one interface between a transport (TCP, WebSocket) and the session core, plus the
// write batching both transports share.
//
// Invariants:
// - write() never touches the socket: bytes are queued and every dirty connection is
//   flushed together once per event-loop turn (setImmediate), as one batch per connection;
//   after a fan-out's pass, the next waits out the coalescing window (writeCoalescing, which
//   widens while the event loop is saturated).
// - No connection pays for a copy of what other connections are sent too. A MESSAGE frame is
//   shared by every subscriber of a fan-out: a batch goes to the socket as chunks (runs of
//   small buffers joined, buffers of SHARED_MIN_BYTES or more as they are), and when several
//   connections of one flush pass queued the very same buffers, the batch is joined once and
//   that one buffer is written to each of them.
// - bufferedBytes counts queued bytes plus bytes handed to the socket and not yet written,
//   so the core can stop feeding a slow reader (isWritable) and hear when it drains.
// - Below the write limit sits the flow-control mark (behindBytes): past it the connection is
//   behind (publishers may be held for it), until it drains to half of it (onCaughtUp).
//   acceptedBytes only grows while the socket takes bytes: a behind connection whose
//   acceptedBytes stands still is stalled, not slow.

import { performance } from 'node:perf_hooks';
import { LoadAdaptiveWindow } from '../load-window';

export type TransportKind = 'tcp' | 'ws';

export interface WriteLimits {
  writeLimitBytes: number;
  overflowLimitBytes: number;
  /** Past it the connection is behind (flow control); default: half of writeLimitBytes. */
  behindBytes?: number;
}

export interface ConnectionHandlers {
  onData(chunk: Buffer): void;
  /** The connection is gone; `error` when it failed rather than closed. */
  onClose(error: Error | undefined): void;
  /** bufferedBytes fell back under the limit after having passed it. */
  onDrain(): void;
  /** bufferedBytes passed the hard limit: the peer does not read even what is not a MESSAGE. */
  onOverflow(): void;
  /** The connection was behind (past behindBytes) and drained to half of it. */
  onCaughtUp?(): void;
  /** What the peer is sending could not be given memory (the shared pending budget is spent). */
  onBusy(): void;
  /**
   * What the peer began sending at the transport level (a WebSocket message in fragments) was
   * not completed within the frame timeout: the session never saw those bytes to time them.
   */
  onStalled?(): void;
}

/** What the transport knows of the peer, for authentication and logs. */
export interface PeerInfo {
  /** The client's address ("ip:port", or "ip" when a proxy named no port): behind a trusted proxy, the one it named. */
  remoteAddress: string;
  /** The trusted proxy's own address, when remoteAddress came from one (PROXY header, X-Forwarded-For). */
  proxyAddress?: string;
  /** WebSocket handshake only: request URL (path and query) and headers. */
  url?: string;
  headers?: Readonly<Record<string, string | string[] | undefined>>;
  /** The negotiated WebSocket subprotocol, if any. */
  subprotocol?: string;
}

export interface Connection {
  readonly transport: TransportKind;
  readonly peer: PeerInfo;
  /** Bytes queued or in flight towards the peer. */
  readonly bufferedBytes: number;
  /** False once bufferedBytes passed the limit, until it drains. */
  readonly isWritable: boolean;
  /** True once bufferedBytes passed the flow-control mark, until it drained to half of it. */
  readonly isBehind: boolean;
  /** Bytes the socket has taken so far (a write completed): it stands still while the peer reads nothing. */
  readonly acceptedBytes: number;
  /** Date.now() of the last flush towards the peer. */
  readonly lastWriteAt: number;
  /** Bytes handed to the socket so far (counted per flush, not per write: the metrics read it). */
  readonly bytesWritten: number;
  setHandlers(handlers: ConnectionHandlers): void;
  /** Queue bytes for the peer. `isBinary`: not valid UTF-8 (WebSocket sends such batches as binary). */
  write(bytes: Buffer, isBinary?: boolean): void;
  pauseReading(): void;
  resumeReading(): void;
  /** Flush what is queued, then close. */
  end(): void;
  /** Close now, dropping what is queued. */
  destroy(): void;
}

/**
 * Buffers at least this long are handed to the socket by reference; shorter ones are joined
 * with their neighbours. Below it, a copy is cheaper than one more vectored-write entry (or
 * WebSocket fragment); above it, the copy is what a fan-out would pay once per subscriber.
 */
export const SHARED_MIN_BYTES = 2048;

/**
 * The chunks one batch goes out as: each run of small buffers joined into one buffer, each
 * buffer of SHARED_MIN_BYTES or more kept as it is, in order.
 */
export function batchChunks(queue: readonly Buffer[]): Buffer[] {
  if (queue.length === 1) return [queue[0]!];
  const chunks: Buffer[] = [];
  let runStart = 0;
  let runBytes = 0;
  const closeRun = (end: number): void => {
    if (end - runStart === 1) chunks.push(queue[runStart]!);
    else if (end > runStart) chunks.push(Buffer.concat(queue.slice(runStart, end), runBytes));
  };
  for (let i = 0; i < queue.length; i++) {
    const bytes = queue[i]!;
    if (bytes.length < SHARED_MIN_BYTES) {
      runBytes += bytes.length;
      continue;
    }
    closeRun(i);
    chunks.push(bytes);
    runStart = i + 1;
    runBytes = 0;
  }
  closeRun(queue.length);
  return chunks;
}

/** A batch already cut into chunks during this flush pass, for connections that queued the same buffers. */
interface SharedBatch {
  readonly queue: readonly Buffer[];
  chunks: Buffer[];
  /** Joined into one buffer, once a second connection turned out to want the same batch. */
  isJoined: boolean;
}

function hasSameBuffers(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const dirty: BatchingConnection[] = [];
let isFlushScheduled = false;

/**
 * Write coalescing for fan-outs at a moderate rate: a flush pass that wrote to at least
 * `minConnections` connections makes the next pass wait until the window has passed since it,
 * so that messages arriving one per event-loop turn (a backend's answers, a publisher paced by
 * a timer) reach each subscriber as one write instead of one each. A pass over fewer
 * connections (request and answer: CONNECTED, RECEIPTs) makes the next wait for nothing.
 *
 * The window adapts to load, between `windowMs` and `maxWindowMs` (src/load-window.ts): each
 * syscall costs the same whatever it carries, so while the event loop is saturated the window
 * widens, and fewer, larger writes leave more of the loop for the messages themselves; an idle
 * broker keeps the short window, and so its latency. windowMs 0: off.
 */
export const writeCoalescing = { windowMs: 1, maxWindowMs: 8, minConnections: 32 };
const writeWindow = new LoadAdaptiveWindow();
let lastPassEndedAt = 0;
let lastPassConnections = 0;

/** The window now in force (ms). */
export function coalescingWindowMs(now: number): number {
  return writeWindow.at(now, writeCoalescing.windowMs, writeCoalescing.maxWindowMs);
}

function scheduleFlush(): void {
  isFlushScheduled = true;
  if (writeCoalescing.windowMs > 0 && lastPassConnections >= writeCoalescing.minConnections) {
    const now = performance.now();
    const wait = lastPassEndedAt + coalescingWindowMs(now) - now;
    if (wait >= 0.5) {
      setTimeout(flushAll, wait);
      return;
    }
  }
  setImmediate(flushAll);
}
/**
 * During a flush pass: batches by their first buffer. In a fan-out, connection after
 * connection queued the very same buffers (the shared frames of the same messages), so the
 * batch is joined once and every such connection writes that one buffer, as a forwarder would.
 */
let passBatches: Map<Buffer, SharedBatch> | undefined;

function flushAll(): void {
  isFlushScheduled = false;
  // A flush may queue more writes (a socket callback); those land in the next turn.
  const batch = dirty.splice(0, dirty.length);
  passBatches = new Map();
  try {
    for (let i = 0; i < batch.length; i++) batch[i]!.flush();
  } finally {
    passBatches = undefined; // the joined buffers now belong to the sockets' queues
    lastPassConnections = batch.length;
    lastPassEndedAt = performance.now();
  }
}

/** The chunks `queue` goes out as: shared with an identical batch of this pass, if any. */
function chunksFor(queue: Buffer[], byteCount: number): Buffer[] {
  const batches = passBatches;
  if (batches === undefined) return batchChunks(queue);
  const first = queue[0]!;
  const earlier = batches.get(first);
  if (earlier !== undefined && hasSameBuffers(queue, earlier.queue)) {
    if (!earlier.isJoined) {
      if (earlier.chunks.length > 1) earlier.chunks = [Buffer.concat(earlier.chunks, byteCount)];
      earlier.isJoined = true;
    }
    return earlier.chunks;
  }
  const chunks = batchChunks(queue);
  batches.set(first, { queue, chunks, isJoined: false });
  return chunks;
}

/** Shared batching and accounting; subclasses move bytes to their socket. */
export abstract class BatchingConnection implements Connection {
  abstract readonly transport: TransportKind;
  readonly peer: PeerInfo;
  lastWriteAt = Date.now();
  bytesWritten = 0;
  protected handlers: ConnectionHandlers | undefined;
  protected isClosed = false;
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private isQueueBinary = false;
  private inflightBytes = 0;
  private isAboveLimit = false;
  private isBehindMark = false;
  private isEnding = false;
  acceptedBytes = 0;
  private readonly writeLimitBytes: number;
  private readonly behindBytes: number;
  private readonly overflowLimitBytes: number;
  private hasOverflowed = false;

  /**
   * `writeLimitBytes`: past it the connection is not writable (MESSAGEs stop). A few frames may
   * still come (RECEIPTs, one big MESSAGE); past `overflowLimitBytes` the peer is given up.
   */
  protected constructor(peer: PeerInfo, limits: WriteLimits) {
    this.peer = peer;
    this.writeLimitBytes = limits.writeLimitBytes;
    this.overflowLimitBytes = limits.overflowLimitBytes;
    this.behindBytes = limits.behindBytes ?? Math.floor(limits.writeLimitBytes / 2);
  }

  get bufferedBytes(): number {
    return this.queuedBytes + this.inflightBytes;
  }

  get isWritable(): boolean {
    return !this.isAboveLimit && !this.isClosed;
  }

  get isBehind(): boolean {
    return this.isBehindMark;
  }

  setHandlers(handlers: ConnectionHandlers): void {
    this.handlers = handlers;
  }

  write(bytes: Buffer, isBinary = false): void {
    if (this.isClosed || this.isEnding) return;
    this.queue.push(bytes);
    this.queuedBytes += bytes.length;
    if (isBinary) this.isQueueBinary = true;
    if (this.queue.length === 1) {
      dirty.push(this);
      if (!isFlushScheduled) scheduleFlush();
    }
    // isAboveLimit implies isBehindMark (behindBytes <= writeLimitBytes, and it clears no later).
    if (!this.isAboveLimit) {
      const buffered = this.queuedBytes + this.inflightBytes;
      if (buffered > this.behindBytes) {
        this.isBehindMark = true;
        if (buffered > this.writeLimitBytes) this.isAboveLimit = true;
      }
    }
  }

  /** Called by the scheduler: hand the queued bytes to the socket as one batch. */
  flush(): void {
    const queue = this.queue;
    if (queue.length === 0 || this.isClosed) return;
    // What the socket still holds from earlier turns is what the peer did not take: a
    // reader that keeps up never gets here, however much one turn queued.
    if (!this.hasOverflowed && this.socketBufferedBytes() > this.overflowLimitBytes) {
      this.hasOverflowed = true;
      this.handlers?.onOverflow();
      return;
    }
    const byteCount = this.queuedBytes;
    const chunks = chunksFor(queue, byteCount);
    const isBinary = this.isQueueBinary;
    this.queue = [];
    this.queuedBytes = 0;
    this.isQueueBinary = false;
    this.inflightBytes += byteCount;
    this.bytesWritten += byteCount;
    this.lastWriteAt = Date.now();
    this.writeToSocket(chunks, isBinary, () => this.written(byteCount));
  }

  end(): void {
    if (this.isClosed || this.isEnding) return;
    this.flush();
    this.isEnding = true;
    this.endSocket();
  }

  destroy(): void {
    if (this.isClosed) return;
    this.isEnding = true; // nothing more is queued
    this.queue = [];
    this.queuedBytes = 0;
    this.destroySocket();
  }

  abstract pauseReading(): void;
  abstract resumeReading(): void;
  /**
   * Send `chunks` (in order, not to be copied) as one unit: one vectored write, one WebSocket
   * message. `done` once, when the socket has taken all of them (or is gone).
   */
  protected abstract writeToSocket(chunks: readonly Buffer[], isBinary: boolean, done: () => void): void;
  /** Bytes handed to the socket that it has not passed to the kernel yet. */
  protected abstract socketBufferedBytes(): number;
  protected abstract endSocket(): void;
  protected abstract destroySocket(): void;

  /** Subclasses call this exactly once when the socket is gone. */
  protected closed(error: Error | undefined): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.queue = [];
    this.queuedBytes = 0;
    this.handlers?.onClose(error);
  }

  private written(byteCount: number): void {
    this.inflightBytes -= byteCount;
    this.acceptedBytes += byteCount;
    if (!this.isBehindMark) return;
    const buffered = this.bufferedBytes;
    const hasDrained = this.isAboveLimit && buffered <= this.writeLimitBytes / 2;
    const hasCaughtUp = buffered <= this.behindBytes / 2;
    // Both flags first: onDrain may write again (a queue hands out more), which sets them anew.
    if (hasDrained) this.isAboveLimit = false;
    if (hasCaughtUp) this.isBehindMark = false;
    if (this.isClosed) return;
    if (hasCaughtUp) this.handlers?.onCaughtUp?.();
    if (hasDrained) this.handlers?.onDrain();
  }
}
