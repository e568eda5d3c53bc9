// A raw-bytes STOMP client for edge cases: writes whatever bytes a test gives it, and
// decodes what the broker sends with our own codec. Over TCP or WebSocket.

import net from 'node:net';
import { after } from 'node:test';
import WebSocket from 'ws';
import { Decoder, encodeFrame, headerValue } from '../../src/codec';
import type { Frame, Header, StompVersion } from '../../src/codec';

const DEFAULT_TIMEOUT_MS = 3000;

export class RawClient {
  readonly frames: Frame[] = [];
  heartbeatsReceived = 0;
  /** WebSocket only: how many messages came, and whether each was binary. */
  readonly wsMessages: { isBinary: boolean; bytes: number }[] = [];
  isClosed = false;
  readonly closed: Promise<void>;
  version: StompVersion = '1.2';
  private readonly decoder: Decoder;
  private readonly waiters: (() => void)[] = [];
  private readonly writeBytes: (bytes: Buffer) => void;
  private readonly closeSocket: () => void;
  private readonly destroySocket: () => void;
  private markClosed!: () => void;

  private constructor(write: (bytes: Buffer) => void, close: () => void, destroy: () => void) {
    this.writeBytes = write;
    this.closeSocket = close;
    this.destroySocket = destroy;
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
    this.decoder = new Decoder(
      (frame) => {
        if (frame.command === 'CONNECTED') this.version = (headerValue(frame.headers, 'version') as StompVersion | undefined) ?? '1.0';
        if (frame.command === 'CONNECTED') this.decoder.version = this.version;
        this.frames.push(frame);
        this.wake();
      },
      { acceptServerCommands: true, limits: { maxFrameBytes: 64 * 1024 * 1024, maxHeaders: 1000 } },
    );
    this.decoder.setHeartbeatListener(() => this.heartbeatsReceived++);
  }

  /** `localAddress`: connect from another loopback address (127.0.0.2, …): another client as the broker counts them. */
  static tcp(port: number, localAddress?: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', ...(localAddress === undefined ? {} : { localAddress }) });
      const client = new RawClient(
        (bytes) => socket.write(bytes),
        () => socket.end(),
        () => socket.destroy(),
      );
      socket.on('data', (chunk: Buffer) => client.receive(chunk));
      socket.on('close', () => client.onClosed());
      socket.on('error', () => undefined);
      socket.once('connect', () => resolve(client));
      socket.once('error', reject);
    });
  }

  static ws(port: number, options: { path?: string; protocols?: string[]; headers?: Record<string, string>; localAddress?: string } = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}${options.path ?? '/ws'}`, options.protocols ?? ['v12.stomp'], {
        headers: options.headers ?? {},
        ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}),
      });
      const client = new RawClient(
        (bytes) => ws.send(bytes),
        () => ws.close(),
        () => ws.terminate(),
      );
      client.socketProtocol = () => ws.protocol;
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        client.wsMessages.push({ isBinary, bytes: data.length });
        client.receive(data);
      });
      ws.on('close', () => client.onClosed());
      ws.on('error', () => undefined);
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  socketProtocol: () => string = () => '';

  send(bytes: string | Buffer): void {
    this.writeBytes(typeof bytes === 'string' ? Buffer.from(bytes) : bytes);
  }

  sendFrame(command: string, headers: Header[] | Record<string, string>, body: string | Buffer = ''): void {
    const list = Array.isArray(headers) ? headers : Object.entries(headers);
    this.send(encodeFrame({ command, headers: list, body: typeof body === 'string' ? Buffer.from(body) : body }, this.version));
  }

  /** CONNECT (1.2 unless told otherwise) and wait for CONNECTED. */
  async connect(headers: Record<string, string> = {}): Promise<Frame> {
    this.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0', ...headers });
    return this.expect('CONNECTED');
  }

  /** The next frame not yet taken, waiting for it if needed. */
  async next(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    await this.waitUntil(() => this.taken < this.frames.length, timeoutMs, 'a frame');
    return this.frames[this.taken++]!;
  }

  /** The next frame, which must be `command`. */
  async expect(command: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    const frame = await this.next(timeoutMs);
    if (frame.command !== command) {
      throw new Error(`expected ${command}, got ${frame.command} ${JSON.stringify(frame.headers)} ${frame.body.toString()}`);
    }
    return frame;
  }

  /** Resolves when the broker closed the connection. */
  async waitClosed(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    await this.waitUntil(() => this.isClosed, timeoutMs, 'the connection to close');
  }

  async waitUntil(condition: () => boolean, timeoutMs = DEFAULT_TIMEOUT_MS, what = 'a condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Nothing more arrives within `ms`. */
  async expectSilence(ms = 200): Promise<void> {
    const before = this.frames.length;
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.frames.length !== before) throw new Error(`unexpected ${this.frames[before]!.command} frame`);
  }

  close(): void {
    this.closeSocket();
  }

  destroy(): void {
    this.destroySocket();
  }

  private taken = 0;

  private receive(chunk: Buffer): void {
    this.decoder.push(chunk);
    this.wake();
  }

  private onClosed(): void {
    this.isClosed = true;
    this.markClosed();
    this.wake();
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

export function header(frame: Frame, name: string): string | undefined {
  return headerValue(frame.headers, name);
}

/** A list for the clients a test file opens: all destroyed when the file's tests are over. */
export function clientsOfThisFile(): RawClient[] {
  const clients: RawClient[] = [];
  after(() => {
    for (const c of clients) c.destroy();
  });
  return clients;
}

/** A TCP client that sent CONNECT as `login` and got CONNECTED, kept in `clients` (for cleanup). */
export async function connectedAs(clients: RawClient[], port: number, login: string): Promise<RawClient> {
  const c = await RawClient.tcp(port);
  clients.push(c);
  await c.connect({ login });
  return c;
}
