// A lean STOMP client for load generation, over TCP (`net`) or WebSocket (`ws`). Library
// clients decode every frame and would measure themselves rather than the broker.
//
// Two modes:
// - frames: whole frames are parsed (CONNECTED, RECEIPT, ERROR): the handshake, and the
//   publisher's connection for its whole life.
// - counting: once its SUBSCRIBE is acknowledged, a subscriber only counts NUL bytes per
//   chunk. Bodies are ASCII digits (payload.ts), so each NUL ends one MESSAGE, however the
//   broker batches frames into chunks or WebSocket messages and wherever it splits them.
//   A subscriber given a LatencyRecorder also reads the send time just before each NUL.

import net from 'node:net';
import WebSocket from 'ws';
import type { LatencyRecorder } from './latency';
import { TIMESTAMP_DIGITS, nowMicros, readTimestamp } from './payload';

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
  /** The last bytes of the previous chunk, for a send time split across chunks. */
  private carry: Buffer | undefined;
  private pending: Buffer | undefined;
  private awaited: Awaited | undefined;
  private readonly sendBytes: (bytes: Buffer) => void;
  private readonly bufferedBytes: () => number;
  private readonly destroySocket: () => void;

  private constructor(transport: Transport, send: (bytes: Buffer) => void, buffered: () => number, destroy: () => void) {
    this.transport = transport;
    this.sendBytes = send;
    this.bufferedBytes = buffered;
    this.destroySocket = destroy;
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
    return this.bufferedBytes();
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
    if (!this.isClosed) this.sendBytes(bytes);
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeReason ??= 'closed by the bench';
    this.destroySocket();
  }

  // --- Transports ---

  private static openTcp(endpoint: Endpoint, timeoutMs: number): Promise<LoadClient> {
    if (endpoint.tcpPort === undefined) return Promise.reject(new Error('no TCP port to connect to'));
    const socket = net.connect({ host: endpoint.host, port: endpoint.tcpPort, ...(endpoint.localAddress !== undefined ? { localAddress: endpoint.localAddress } : {}) });
    socket.setNoDelay(true);
    const client = new LoadClient(
      'tcp',
      (bytes) => socket.write(bytes),
      () => socket.writableLength,
      () => socket.destroy(),
    );
    socket.on('data', (chunk: Buffer) => client.receive(chunk));
    socket.on('error', (error) => client.lost(`socket error: ${error.message}`));
    socket.on('close', () => client.lost('socket closed by peer'));
    return opened(client, timeoutMs, (resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
  }

  private static openWs(endpoint: Endpoint, timeoutMs: number): Promise<LoadClient> {
    if (endpoint.wsPort === undefined) return Promise.reject(new Error('no WebSocket port to connect to'));
    const url = `ws://${endpoint.host}:${endpoint.wsPort}${endpoint.wsPath}`;
    // Our own bodies are ASCII: skipping UTF-8 validation keeps the load generator's cost down.
    const ws = new WebSocket(url, ['v12.stomp'], {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      ...(endpoint.localAddress !== undefined ? { localAddress: endpoint.localAddress } : {}),
    });
    const client = new LoadClient(
      'ws',
      // Frames are ASCII text; STOMP over WebSocket clients send text messages.
      (bytes) => ws.send(bytes, { binary: false }),
      () => ws.bufferedAmount,
      () => ws.terminate(),
    );
    ws.on('message', (data: WebSocket.RawData) => client.receive(toBuffer(data)));
    ws.on('error', (error) => client.lost(`WebSocket error: ${error.message}`));
    ws.on('close', (code) => client.lost(`WebSocket closed by peer (code ${code})`));
    return opened(client, timeoutMs, (resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
  }

  // --- Bytes in ---

  private receive(chunk: Buffer): void {
    if (this.isCounting) {
      this.count(chunk);
      return;
    }
    let bytes = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = undefined;
    let nul = bytes.indexOf(NUL);
    while (nul !== -1) {
      this.onFrame(parseFrame(bytes.subarray(0, nul)));
      bytes = bytes.subarray(nul + 1);
      if (this.isCounting) {
        if (bytes.length > 0) this.count(bytes);
        return;
      }
      nul = bytes.indexOf(NUL);
    }
    if (bytes.length > 0) this.pending = bytes;
  }

  /** The hot path: one indexOf per frame, a clock read per chunk only when sampling. */
  private count(chunk: Buffer): void {
    let frames = 0;
    let nul = chunk.indexOf(NUL);
    const latency = this.latency;
    if (latency === undefined) {
      while (nul !== -1) {
        frames++;
        nul = chunk.indexOf(NUL, nul + 1);
      }
    } else {
      const now = nowMicros();
      while (nul !== -1) {
        frames++;
        const sentAt = nul >= TIMESTAMP_DIGITS ? readTimestamp(chunk, nul) : this.readSplitTimestamp(chunk, nul);
        if (sentAt >= 0) latency.record(now - sentAt);
        else this.unparsed++;
        nul = chunk.indexOf(NUL, nul + 1);
      }
      const keep = Math.min(chunk.length, TIMESTAMP_DIGITS);
      this.carry = Buffer.from(chunk.subarray(chunk.length - keep));
    }
    if (frames > 0) {
      this.received += frames;
      this.onDelivered!(this, frames);
    }
  }

  private readSplitTimestamp(chunk: Buffer, nul: number): number {
    if (this.carry === undefined) return -1;
    const joined = Buffer.concat([this.carry, chunk.subarray(0, nul)]);
    return readTimestamp(joined, joined.length);
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
      this.sendBytes(encodeFrame(command, headers));
    });
  }
}

function opened(client: LoadClient, timeoutMs: number, wait: (resolve: () => void, reject: (error: Error) => void) => void): Promise<LoadClient> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.close();
      reject(new Error(`${client.transport} connection not open within ${timeoutMs} ms`));
    }, timeoutMs);
    wait(
      () => {
        clearTimeout(timer);
        resolve(client);
      },
      (error) => {
        clearTimeout(timer);
        client.close();
        reject(error);
      },
    );
  });
}

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
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
