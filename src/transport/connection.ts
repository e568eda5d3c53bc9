// The one interface between a transport (TCP, WebSocket) and the session core, plus the
// write batching both transports share.
//
// Invariants:
// - write() never touches the socket: bytes are queued and every dirty connection is
//   flushed together once per event-loop turn (setImmediate), as one write per connection.
// - bufferedBytes counts queued bytes plus bytes handed to the socket and not yet written,
//   so the core can stop feeding a slow reader (isWritable) and hear when it drains.

export type TransportKind = 'tcp' | 'ws';

export interface WriteLimits {
  writeLimitBytes: number;
  overflowLimitBytes: number;
}

export interface ConnectionHandlers {
  onData(chunk: Buffer): void;
  /** The connection is gone; `error` when it failed rather than closed. */
  onClose(error: Error | undefined): void;
  /** bufferedBytes fell back under the limit after having passed it. */
  onDrain(): void;
  /** bufferedBytes passed the hard limit: the peer does not read even what is not a MESSAGE. */
  onOverflow(): void;
}

/** What the transport knows of the peer, for authentication and logs. */
export interface PeerInfo {
  remoteAddress: string;
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

const dirty: BatchingConnection[] = [];
let isFlushScheduled = false;

function flushAll(): void {
  isFlushScheduled = false;
  // A flush may queue more writes (a socket callback); those land in the next turn.
  const batch = dirty.splice(0, dirty.length);
  for (let i = 0; i < batch.length; i++) batch[i]!.flush();
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
  private isEnding = false;
  private readonly writeLimitBytes: number;
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
  }

  get bufferedBytes(): number {
    return this.queuedBytes + this.inflightBytes;
  }

  get isWritable(): boolean {
    return !this.isAboveLimit && !this.isClosed;
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
      if (!isFlushScheduled) {
        isFlushScheduled = true;
        setImmediate(flushAll);
      }
    }
    if (!this.isAboveLimit && this.bufferedBytes > this.writeLimitBytes) this.isAboveLimit = true;
  }

  /** Called by the scheduler: hand the queued bytes to the socket in one write. */
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
    const bytes = queue.length === 1 ? queue[0]! : Buffer.concat(queue, this.queuedBytes);
    const isBinary = this.isQueueBinary;
    this.queue = [];
    this.queuedBytes = 0;
    this.isQueueBinary = false;
    this.inflightBytes += bytes.length;
    this.bytesWritten += bytes.length;
    this.lastWriteAt = Date.now();
    this.writeToSocket(bytes, isBinary, () => this.written(bytes.length));
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
  protected abstract writeToSocket(bytes: Buffer, isBinary: boolean, done: () => void): void;
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
    if (this.isAboveLimit && this.bufferedBytes <= this.writeLimitBytes / 2) {
      this.isAboveLimit = false;
      if (!this.isClosed) this.handlers?.onDrain();
    }
  }
}
