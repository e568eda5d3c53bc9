// SockJS transport (SOCKJS_PATH): what Spring's `.withSockJS()` endpoints serve, for clients
// that use `new SockJS(url)` as @stomp/stompjs's webSocketFactory. The `sockjs` package speaks
// the protocol; a SockJS session is one more Connection, so the session core, heart-beats and
// limits are the same as on /ws. This module is imported only when SOCKJS_PATH is set.
//
// - Transports: websocket, xhr-streaming, xhr-polling. The others (jsonp, eventsource,
//   htmlfile, the iframe page) are answered 404, so clients fall back to these. The raw
//   `<path>/websocket` (plain STOMP over WebSocket, no SockJS framing) is the /ws endpoint's.
// - Every request under the path goes through the WebSocket port's caps and its handshake
//   check (Origin) first; the session's peer is its opening request (headers, URL, address),
//   so cookies, `access_token` and forwarded headers work as on /ws.
// - SockJS carries text only: a batch holding a body that is not UTF-8 cannot reach the client
//   intact (stompjs would re-encode it and its content-length would lie), so the session is
//   closed with ERROR BINARY_NOT_SUPPORTED instead of delivering a corrupt frame.
// - Inbound bytes are bounded as on /ws: an xhr_send body at most maxMessageBytes × 2 (JSON
//   quoting), counted against the pending budget while it arrives, complete within
//   messageTimeoutMs; a WebSocket message at most the same (the WebSocket driver's maxLength).
// - Backpressure: while the session pauses reading, xhr_send requests wait unread (the client
//   sends one at a time) and a WebSocket's socket is paused. Outbound bytes count as written
//   once sockjs's send buffer and the receiving socket have let them go.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import sockjs from 'sockjs';
import { encodeFrame } from '../codec';
import type { ByteBudget } from '../codec';
import { BatchingConnection } from './connection';
import type { Connection, PeerInfo, WriteLimits } from './connection';
import type { HttpMount } from './websocket';

/** The transports served; sockjs-client falls back along this list. */
export const SOCKJS_TRANSPORTS = ['websocket', 'xhr-streaming', 'xhr-polling'] as const;

/** URL segment of each served transport under `<path>/<server>/<session>/`. */
const TRANSPORT_SEGMENTS = new Set(['websocket', 'xhr', 'xhr_streaming', 'xhr_send']);
/** Opening requests not yet claimed by a session are forgotten after this. */
const OPENING_KEPT_MS = 10_000;
/** xhr_send requests that may wait for one paused session: the client sends one at a time. */
const MAX_HELD_SENDS = 16;
/** While bytes are still in sockjs's hands, how often to look whether they left. */
const DELIVERY_CHECK_MS = 20;

/** What sockjs keeps of a session and its current receiver; read for flow control only. */
interface SockJsInternals {
  _session?: {
    send_buffer?: string[];
    recv?: {
      protocol?: string;
      connection?: Socket | null;
      response?: ServerResponse | null;
    } | null;
  } | null;
}

interface SockJsListener {
  handler(request: IncomingMessage, responseOrSocket: ServerResponse | Socket, head?: Buffer): boolean;
}

export class SockJsConnection extends BatchingConnection {
  readonly transport = 'ws' as const;
  private readonly conn: sockjs.Connection;
  private readonly logger: Logger;
  /** Characters handed to sockjs so far, and the batches waiting for them to leave. */
  private charsWritten = 0;
  private readonly awaitingDelivery: { endMark: number; done: () => void }[] = [];
  private deliveryTimer: NodeJS.Timeout | undefined;
  private isPaused = false;
  /** The WebSocket receiver's socket, paused with reading (resumed even if the receiver changed since). */
  private pausedSocket: Socket | undefined;
  /** xhr_send requests held while reading is paused, run in order on resume. */
  private readonly heldSends: (() => void)[] = [];

  constructor(conn: sockjs.Connection, peer: PeerInfo, limits: WriteLimits, logger: Logger) {
    super(peer, limits);
    this.conn = conn;
    this.logger = logger;
    conn.on('data', (text: string) => this.handlers?.onData(Buffer.from(text, 'utf8')));
    conn.on('close', () => this.closed(undefined));
  }

  /** The shared pending budget had no room for what the peer is sending. */
  refuseBusy(): void {
    this.handlers?.onBusy();
  }

  /** The SockJS transport this session uses now (xhr-polling may not be the one it opened with). */
  get sockjsTransport(): string | undefined {
    return (this.conn as unknown as SockJsInternals)._session?.recv?.protocol ?? this.conn.protocol;
  }

  get isReadingPaused(): boolean {
    return this.isPaused;
  }

  /** Keep an xhr_send until reading resumes; false when too many wait already. */
  holdSend(send: () => void): boolean {
    if (this.heldSends.length >= MAX_HELD_SENDS) return false;
    this.heldSends.push(send);
    return true;
  }

  pauseReading(): void {
    this.isPaused = true;
    // A WebSocket's messages come on its socket. An xhr receiver's socket carries the client's
    // next poll, never its sends (those wait in holdSend): pausing it would stall the session.
    if (this.sockjsTransport === 'websocket') {
      this.pausedSocket = this.receiverSocket();
      this.pausedSocket?.pause();
    }
  }

  resumeReading(): void {
    this.isPaused = false;
    this.pausedSocket?.resume();
    this.pausedSocket = undefined;
    while (!this.isPaused && this.heldSends.length > 0) this.heldSends.shift()!();
  }

  protected writeToSocket(chunks: readonly Buffer[], isBinary: boolean, done: () => void): void {
    if (this.conn.readyState !== 1) {
      done(); // closing or closed: nothing to deliver to
      return;
    }
    if (isBinary) {
      done();
      this.refuseBinary();
      return;
    }
    const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
    this.conn.write(text);
    this.charsWritten += text.length;
    this.awaitingDelivery.push({ endMark: this.charsWritten, done });
    this.checkDelivery();
  }

  protected socketBufferedBytes(): number {
    const session = (this.conn as unknown as SockJsInternals)._session;
    let held = 0;
    for (const text of session?.send_buffer ?? []) held += text.length;
    return held + (this.receiverSocket()?.writableLength ?? 0);
  }

  protected endSocket(): void {
    this.conn.close('1000', 'Normal closure');
  }

  protected destroySocket(): void {
    this.conn.close('1000', 'Normal closure');
    // sockjs says `close` only once the client's last request is gone: the session ends now.
    this.closed(undefined);
  }

  protected override closed(error: Error | undefined): void {
    clearTimeout(this.deliveryTimer);
    this.deliveryTimer = undefined;
    for (const waiting of this.awaitingDelivery.splice(0)) waiting.done();
    this.heldSends.length = 0;
    super.closed(error);
  }

  /** Batches whose characters left sockjs and the socket are written; the rest are looked at again shortly. */
  private checkDelivery(): void {
    const delivered = this.charsWritten - this.socketBufferedBytes();
    while (this.awaitingDelivery.length > 0 && this.awaitingDelivery[0]!.endMark <= delivered) this.awaitingDelivery.shift()!.done();
    if (this.awaitingDelivery.length === 0 || this.deliveryTimer !== undefined || this.isClosed) return;
    this.deliveryTimer = setTimeout(() => {
      this.deliveryTimer = undefined;
      this.checkDelivery();
    }, DELIVERY_CHECK_MS);
    this.deliveryTimer.unref();
  }

  private refuseBinary(): void {
    const text = 'BINARY_NOT_SUPPORTED: SockJS carries text only; a message body that is not UTF-8 cannot be delivered over it (use the WebSocket endpoint)';
    const error = encodeFrame(
      {
        command: 'ERROR',
        headers: [
          ['message', text],
          ['content-type', 'text/plain'],
        ],
        body: Buffer.from(`${text}\n`),
      },
      '1.2',
    );
    this.conn.write(error.toString('utf8'));
    this.logger.info({ remoteAddress: this.peer.remoteAddress }, 'SockJS session closed: a message body was not UTF-8');
    this.destroySocket();
  }

  /** The TCP socket of the current WebSocket or streaming receiver, if any. */
  private receiverSocket(): Socket | undefined {
    const recv = (this.conn as unknown as SockJsInternals)._session?.recv;
    return recv?.connection ?? recv?.response?.socket ?? undefined;
  }
}

export interface SockJsMountOptions {
  /** SOCKJS_PATH, e.g. `/stomp`. */
  path: string;
  limits: WriteLimits;
  /** The largest STOMP message accepted on /ws; a SockJS message may be twice it (JSON quoting). */
  maxMessageBytes: number;
  /** Bytes of xhr_send bodies in progress are reserved from it. */
  pendingBudget?: ByteBudget;
  /** An xhr_send body begun must be complete within this. */
  messageTimeoutMs: number;
  logger: Logger;
}

interface Opening {
  /** The client's address as the listener decided it (a trusted proxy's forwarded one), else the socket's peer. */
  remoteAddress: string;
  url: string;
  headers: IncomingMessage['headers'];
  timer: NodeJS.Timeout;
}

/** SockJS under `options.path`, for listenWebSocket's `mount`; every session a SockJsConnection. */
export function sockJsMount(options: SockJsMountOptions, onConnection: (connection: Connection) => void): HttpMount {
  const { path, logger } = options;
  const maxSockJsMessageBytes = options.maxMessageBytes * 2;
  const server = sockjs.createServer({
    prefix: path,
    // The iframe page would load the client from a CDN; it is not served (404 below).
    sockjs_url: 'about:blank',
    log: (severity, line) => (severity === 'error' ? logger.warn({ sockjs: line }, 'SockJS error') : logger.debug({ sockjs: line }, 'SockJS')),
    faye_server_options: { maxLength: maxSockJsMessageBytes },
  } as sockjs.ServerOptions);
  const listener = (server as unknown as { listener(options?: sockjs.ServerOptions): SockJsListener }).listener();
  /** SockJS session id → its opening request, until sockjs announces the session. */
  const openings = new Map<string, Opening>();
  /** SockJS session id → its connection, while it lives (held xhr_sends find it here). */
  const live = new Map<string, SockJsConnection>();

  server.on('connection', (conn: sockjs.Connection) => {
    const sessionId = sessionIdOf(conn.url, path);
    const opening = sessionId === undefined ? undefined : openings.get(sessionId);
    if (opening !== undefined) {
      clearTimeout(opening.timer);
      openings.delete(sessionId!);
    }
    const peer: PeerInfo = {
      remoteAddress: opening?.remoteAddress ?? `${conn.remoteAddress ?? '?'}:${conn.remotePort ?? '?'}`,
      url: opening?.url ?? conn.url,
      headers: opening?.headers ?? conn.headers,
    };
    const connection = new SockJsConnection(conn, peer, options.limits, logger);
    if (sessionId !== undefined) {
      live.set(sessionId, connection);
      conn.on('close', () => live.delete(sessionId));
    }
    onConnection(connection);
  });

  const remember = (sessionId: string, request: IncomingMessage, remoteAddress: string | undefined): void => {
    if (openings.has(sessionId) || live.has(sessionId)) return;
    const timer = setTimeout(() => openings.delete(sessionId), OPENING_KEPT_MS);
    timer.unref();
    const peer = `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? '?'}`;
    openings.set(sessionId, { remoteAddress: remoteAddress ?? peer, url: request.url ?? path, headers: request.headers, timer });
  };

  /** Bounds an xhr_send body (size, pending budget, time) before sockjs buffers it. */
  const guardBody = (request: IncomingMessage, response: ServerResponse, connection: SockJsConnection | undefined): boolean => {
    const declared = Number(request.headers['content-length'] ?? 0);
    if (declared > maxSockJsMessageBytes) {
      response.writeHead(413, { 'Content-Type': 'text/plain', Connection: 'close' });
      response.end(`a SockJS message may be at most ${maxSockJsMessageBytes} bytes`);
      return false;
    }
    const budget = options.pendingBudget;
    let received = 0;
    let reserved = 0;
    const release = (): void => {
      clearTimeout(timer);
      if (reserved > 0) budget?.release(reserved);
      reserved = 0;
    };
    const timer = setTimeout(() => {
      release();
      request.socket.destroy();
    }, options.messageTimeoutMs);
    timer.unref();
    request.prependListener('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > maxSockJsMessageBytes) {
        release();
        request.socket.destroy();
        return;
      }
      if (budget !== undefined) {
        if (!budget.tryReserve(chunk.length)) {
          release();
          request.socket.destroy();
          connection?.refuseBusy();
          return;
        }
        reserved += chunk.length;
      }
    });
    request.once('end', release);
    request.once('close', release);
    return true;
  };

  const rawWebSocketPath = `${path}/websocket`;
  return {
    rawWebSocketPath,
    handlesUrl: (url) => {
      const pathname = url.split('?', 1)[0]!;
      return pathname !== rawWebSocketPath && (pathname === path || pathname.startsWith(`${path}/`));
    },
    handleRequest: (request, response, remoteAddress) => {
      const route = routeOf(request.url ?? '/', path);
      if (route === undefined) {
        response.writeHead(404, { 'Content-Type': 'text/plain' });
        response.end('Not Found');
        return;
      }
      if (route.sessionId === undefined || route.segment === undefined) {
        listener.handler(request, response);
        return;
      }
      if (route.segment !== 'xhr_send') {
        if (request.method === 'POST') remember(route.sessionId, request, remoteAddress);
        listener.handler(request, response);
        return;
      }
      const connection = live.get(route.sessionId);
      const send = (): void => {
        if (guardBody(request, response, connection)) listener.handler(request, response);
      };
      if (connection === undefined || !connection.isReadingPaused || request.method !== 'POST') {
        send();
        return;
      }
      if (!connection.holdSend(send)) request.socket.destroy();
    },
    handleUpgrade: (request, socket, head, remoteAddress) => {
      const route = routeOf(request.url ?? '/', path);
      if (route?.segment !== 'websocket' || route.sessionId === undefined) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      remember(route.sessionId, request, remoteAddress);
      listener.handler(request, socket, head);
    },
  };
}

/** `<path>`, `<path>/info`, or `<path>/<server>/<session>/<transport>` for a served transport; else undefined. */
function routeOf(url: string, path: string): { sessionId?: string; segment?: string } | undefined {
  const rest = url.split('?', 1)[0]!.slice(path.length);
  if (rest === '' || rest === '/' || rest === '/info') return {};
  const parts = rest.split('/');
  // ['', server, session, transport]: sockjs's own pattern for ids is [^/.]+
  if (parts.length !== 4 || !TRANSPORT_SEGMENTS.has(parts[3]!)) return undefined;
  if (!/^[^/.]+$/.test(parts[1]!) || !/^[^/.]+$/.test(parts[2]!)) return undefined;
  return { sessionId: parts[2]!, segment: parts[3]! };
}

function sessionIdOf(url: string | undefined, path: string): string | undefined {
  return url === undefined ? undefined : routeOf(url, path)?.sessionId;
}
