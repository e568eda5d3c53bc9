// A lean STOMP client for load generation, over TCP or WebSocket (bench/wire.ts: reads into
// one shared buffer, a minimal WebSocket client). Library clients decode every frame and
// would measure themselves rather than the broker.
//
// Two modes:
// - frames: whole frames are parsed (CONNECTED, RECEIPT, ERROR): the handshake, and the
//   publisher's connection for its whole life.
// - counting: once its SUBSCRIBE is acknowledged, a subscriber only counts NUL bytes. Bodies are ASCII digits (payload.ts), so each NUL ends one MESSAGE, however the
//   broker batches frames into chunks or WebSocket messages and wherever it splits them.
//   A subscriber given a LatencyRecorder also reads the send time just before each NUL.

import type { LatencyRecorder } from './latency';
import { TIMESTAMP_DIGITS, nowMicros, readTimestamp } from './payload';
import { openTcpWire, openWithin, openWsWire, type WireEvents, type WireOpening, type WireSocket } from './wire';

export type Transport = 'tcp' | 'ws';

export interface Endpoint {
  host: string;
  tcpPort: number | undefined;
  wsPort: number | undefined;
  wsPath: string;
  login: string | undefined;
  passcode: string | undefined;
  /** CONNECT's heart-beat header (default "0,0"); the caller sends its own beats (write). */
  heartbeat?: string;
  /** The local address to connect from (127.0.0.x): more ephemeral ports for many connections. */
  localAddress?: string;
}

/** Called once per chunk that held at least one frame. */
export type DeliveryListener = (client: LoadClient, frameCount: number) => void;

interface ParsedFrame {
  command: string;
  headers: Map<string, string>;
}

interface Awaited {
  command: string;
  receiptId?: string;
  resolve: () => void;
  reject: (error: Error) => void;
}

const NUL = 0;

export class LoadClient {
  readonly transport: Transport;
  /** Frames counted since the subscription started. */
  received = 0;
  /** Sampled subscribers only: frames whose send time could not be read. */
  unparsed = 0;
  isClosed = false;
  /** Why the connection ended, when it ended on its own (error, ERROR frame). */
  closeReason: string | undefined;
  /** Frames mode (a publisher): every RECEIPT, with its receipt-id. */
  onReceipt: ((receiptId: string) => void) | undefined;

  private isCounting = false;
  private onDelivered: DeliveryListener | undefined;
  private latency: LatencyRecorder | undefined;
  private pending: Buffer | undefined;
  private awaited: Awaited | undefined;
  private readonly counter = new NulCounter();
  /** Set once the transport is open. */
  private wire: WireSocket | undefined;

  private constructor(transport: Transport) {
    this.transport = transport;
  }

  /** Open the transport and complete CONNECT → CONNECTED. */
  static async open(transport: Transport, endpoint: Endpoint, timeoutMs: number): Promise<LoadClient> {
    const client = await (transport === 'tcp' ? LoadClient.openTcp(endpoint, timeoutMs) : LoadClient.openWs(endpoint, timeoutMs));
    const headers: [string, string][] = [
      ['accept-version', '1.2'],
      ['host', '/'],
      ['heart-beat', endpoint.heartbeat ?? '0,0'],
    ];
    if (endpoint.login !== undefined) headers.push(['login', endpoint.login]);
    if (endpoint.passcode !== undefined) headers.push(['passcode', endpoint.passcode]);
    try {
      await client.request('CONNECT', headers, { command: 'CONNECTED' }, timeoutMs);
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  /** Number of bytes written but not yet handed to the kernel. */
  get backlogBytes(): number {
    return this.wire?.bufferedBytes() ?? 0;
  }

  /**
   * SUBSCRIBE (ack:auto) and wait for its RECEIPT, then count every following frame.
   * With `latency`, also record now − send time for each one.
   */
  async subscribe(destination: string, receiptId: string, onDelivered: DeliveryListener, latency: LatencyRecorder | undefined, timeoutMs: number): Promise<void> {
    this.onDelivered = onDelivered;
    this.latency = latency;
    const headers: [string, string][] = [
      ['id', '0'],
      ['destination', destination],
      ['ack', 'auto'],
      ['receipt', receiptId],
    ];
    await this.request('SUBSCRIBE', headers, { command: 'RECEIPT', receiptId }, timeoutMs);
  }

  write(bytes: Buffer): void {
    if (!this.isClosed) this.wire?.send(bytes);
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeReason ??= 'closed by the bench';
    this.wire?.destroy();
  }

  // --- Transports ---

  private static openTcp(endpoint: Endpoint, timeoutMs: number): Promise<LoadClient> {
    if (endpoint.tcpPort === undefined) return Promise.reject(new Error('no TCP port to connect to'));
    const port = endpoint.tcpPort;
    return LoadClient.openOver('tcp', timeoutMs, (events) => openTcpWire(endpoint.host, port, endpoint.localAddress, events));
  }

  private static openWs(endpoint: Endpoint, timeoutMs: number): Promise<LoadClient> {
    if (endpoint.wsPort === undefined) return Promise.reject(new Error('no WebSocket port to connect to'));
    const target = { host: endpoint.host, port: endpoint.wsPort, path: endpoint.wsPath, protocol: 'v12.stomp', localAddress: endpoint.localAddress };
    // Frames are ASCII text; STOMP over WebSocket clients send text messages.
    return LoadClient.openOver('ws', timeoutMs, (events) => openWsWire(target, false, events));
  }

  private static openOver(transport: Transport, timeoutMs: number, open: (events: WireEvents) => WireOpening): Promise<LoadClient> {
    const client = new LoadClient(transport);
    const opening = open({ onBytes: (bytes, start, end) => client.receive(bytes, start, end), onLost: (reason) => client.lost(reason) });
    return openWithin(opening, timeoutMs, `${transport} connection`).then((wire) => {
      client.wire = wire;
      return client;
    });
  }

  // --- Bytes in ---

  /** bytes[start, end) is a view of a shared read buffer: what is kept is copied. */
  private receive(bytes: Buffer, start: number, end: number): void {
    if (this.isCounting) {
      this.count(bytes, start, end);
      return;
    }
    let at = start;
    if (this.pending !== undefined) {
      bytes = Buffer.concat([this.pending, bytes.subarray(start, end)]);
      this.pending = undefined;
      at = 0;
      end = bytes.length;
    }
    let nul = bytes.indexOf(NUL, at);
    while (nul !== -1 && nul < end) {
      this.onFrame(parseFrame(bytes.subarray(at, nul)));
      at = nul + 1;
      if (this.isCounting) {
        if (at < end) this.count(bytes, at, end);
        return;
      }
      nul = bytes.indexOf(NUL, at);
    }
    if (at < end) this.pending = Buffer.from(bytes.subarray(at, end));
  }

  /** The hot path: see NulCounter. */
  private count(bytes: Buffer, start: number, end: number): void {
    const counter = this.counter;
    const frames = counter.count(bytes, start, end, this.latency);
    this.unparsed = counter.unparsed;
    if (frames > 0) {
      this.received += frames;
      this.onDelivered!(this, frames);
    }
  }

  private onFrame(frame: ParsedFrame): void {
    const awaited = this.awaited;
    if (frame.command === 'ERROR') {
      const message = `ERROR frame: ${frame.headers.get('message') ?? '(no message header)'}`;
      this.closeReason ??= message;
      if (awaited !== undefined) {
        this.awaited = undefined;
        awaited.reject(new Error(message));
      }
      return;
    }
    if (frame.command === 'RECEIPT') this.onReceipt?.(frame.headers.get('receipt-id') ?? '');
    if (awaited === undefined || frame.command !== awaited.command) return;
    if (awaited.receiptId !== undefined && frame.headers.get('receipt-id') !== awaited.receiptId) return;
    this.awaited = undefined;
    if (frame.command === 'RECEIPT' && this.onDelivered !== undefined) this.isCounting = true;
    awaited.resolve();
  }

  private lost(reason: string): void {
    this.closeReason ??= reason;
    const awaited = this.awaited;
    if (awaited !== undefined) {
      this.awaited = undefined;
      awaited.reject(new Error(`${reason} while waiting for ${awaited.command}`));
    }
    this.isClosed = true;
  }

  private request(command: string, headers: [string, string][], expect: Omit<Awaited, 'resolve' | 'reject'>, timeoutMs: number): Promise<void> {
    if (this.isClosed) return Promise.reject(new Error(`connection closed (${this.closeReason ?? 'by us'}) before ${command}`));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.awaited = undefined;
        reject(new Error(`no ${expect.command} within ${timeoutMs} ms after ${command}`));
      }, timeoutMs);
      this.awaited = {
        ...expect,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.wire?.send(encodeFrame(command, headers));
    });
  }
}

/**
 * Counts the frames of a byte stream by their NULs, and reads each one's send time when given
 * a LatencyRecorder. Each NUL is looked for first where the last frame's length puts it (one
 * byte read); only when that byte is not a NUL is the chunk searched. That guess can only be
 * wrong in one way, a NUL at the guessed place with another before it, which needs two frames
 * whose lengths add up to the last one's: impossible for the MESSAGEs a subscriber counts
 * here (one body size; only the message-id and x-dropped headers vary), each more than half
 * as long as any other. A clock read per chunk only when sampling.
 */
export class NulCounter {
  /** Frames whose send time could not be read. */
  unparsed = 0;
  /** Bytes of the current frame seen so far, and the length of the last whole one. */
  private partialBytes = 0;
  private lastFrameBytes = 0;
  /** The stream's last TIMESTAMP_DIGITS bytes, for a send time split across chunks. */
  private carry: Buffer | undefined;

  /** Frames that ended in bytes[start, end). */
  count(bytes: Buffer, start: number, end: number, latency: LatencyRecorder | undefined): number {
    let frames = 0;
    let at = start;
    let before = this.partialBytes; // bytes of the current frame before `at`
    let guess = this.lastFrameBytes;
    const now = latency === undefined ? 0 : nowMicros();
    for (;;) {
      let nul = at + guess - before - 1;
      if (guess === 0 || nul < at || nul >= end || bytes[nul] !== NUL) {
        nul = bytes.indexOf(NUL, at);
        if (nul === -1 || nul >= end) break;
      }
      frames++;
      guess = before + nul - at + 1;
      if (latency !== undefined) {
        const sentAt = nul - at >= TIMESTAMP_DIGITS ? readTimestamp(bytes, nul) : this.readSplitTimestamp(bytes, at, nul);
        if (sentAt >= 0) latency.record(now - sentAt);
        else this.unparsed++;
      }
      before = 0;
      at = nul + 1;
    }
    this.partialBytes = before + end - at;
    this.lastFrameBytes = guess;
    if (latency !== undefined) this.keepTail(bytes, start, end);
    return frames;
  }

  /** The send time of a frame whose last digits came in an earlier chunk. */
  private readSplitTimestamp(bytes: Buffer, at: number, nul: number): number {
    if (this.carry === undefined) return -1;
    const joined = Buffer.concat([this.carry, bytes.subarray(at, nul)]);
    return readTimestamp(joined, joined.length);
  }

  /** Keep the stream's last TIMESTAMP_DIGITS bytes, however short the chunk. */
  private keepTail(bytes: Buffer, start: number, end: number): void {
    if (end - start >= TIMESTAMP_DIGITS) {
      this.carry = Buffer.from(bytes.subarray(end - TIMESTAMP_DIGITS, end));
      return;
    }
    const joined = Buffer.concat([this.carry ?? Buffer.alloc(0), bytes.subarray(start, end)]);
    this.carry = joined.subarray(Math.max(0, joined.length - TIMESTAMP_DIGITS));
  }
}

/** Header values here are plain ASCII without ":" or EOLs, so no escaping is needed. */
function encodeFrame(command: string, headers: readonly [string, string][]): Buffer {
  let text = `${command}\n`;
  for (const [name, value] of headers) text += `${name}:${value}\n`;
  return Buffer.from(`${text}\n\0`, 'latin1');
}

/** Command and headers only: the handshake needs nothing else. Leading EOLs are heart-beats. */
function parseFrame(bytes: Buffer): ParsedFrame {
  const text = bytes.toString('latin1').replace(/^[\r\n]+/, '');
  const headerEnd = text.search(/\r?\n\r?\n/);
  const lines = (headerEnd === -1 ? text : text.slice(0, headerEnd)).split(/\r?\n/);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !headers.has(line.slice(0, colon))) headers.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return { command: lines[0] ?? '', headers };
}
