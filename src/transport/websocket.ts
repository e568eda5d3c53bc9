// WebSocket transport (`ws`): STOMP over WebSocket as @stomp/stompjs speaks it.
//
// - Subprotocols v12.stomp, v11.stomp, v10.stomp are offered; a client asking for none is
//   accepted too. The chosen one is only a hint: CONNECT's accept-version decides.
// - A WebSocket message may hold any part of a frame or several frames: the session's
//   decoder is a stream, so messages are just chunks.
// - A batch of outgoing frames goes out as one message: text, unless some frame's body is
//   not UTF-8, then binary (a text message must be valid UTF-8). A batch of several chunks
//   is one message in several fragments (RFC 6455 §5.4), so shared frames are not copied;
//   a client sees only the reassembled message, whose boundaries are frame boundaries.
// - Before the upgrade a socket is the listener's: it must finish its handshake in time and
//   counts towards the connection caps (HTTP 503 over them).
// - A message in progress is held by `ws` (one Buffer per fragment) until it completes. It is
//   bounded per connection by maxPayload and MAX_MESSAGE_FRAGMENTS (ws closes with 1009 /
//   1008); its wire bytes so far, plus what its fragments may cost ws (MESSAGE_HELD_BYTES) and
//   what each socket read may (CHUNK_HELD_BYTES), are reserved from the shared pending budget
//   (SERVER_BUSY when spent).
// - A message begun must complete within messageTimeoutMs (the session's frame timeout):
//   fragments of an unfinished message never reach the session's decoder, so a peer trickling
//   them would otherwise be held forever. The session is told (onStalled: FRAME_TIMEOUT).
//   Pings and pongs are not messages: they neither start that clock nor stay counted.
// - The client's address: the socket's peer, or, from a peer in TRUSTED_PROXIES, what its
//   X-Forwarded-For / Forwarded header says (forwarded.ts); a socket from a trusted proxy is
//   counted under that address once the handshake's headers are in.
// - WSS_PORT: the same over https (node's TLS; the certificate can be swapped on SIGHUP). A
//   TLS handshake arriving on the plain port is closed at once with a log line.

import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type tls from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import { isRefusal } from './admission';
import type { Admission, AdmissionTicket, Refusal } from './admission';
import type { ByteBudget } from '../codec';
import { BatchingConnection } from './connection';
import type { Connection, WriteLimits } from './connection';
import { formatAddress, socketPeer } from './client-address';
import type { ClientAddress } from './client-address';
import { forwardedClientAddress } from './forwarded';
import type { ForwardedHeader } from './forwarded';
import { KEEPALIVE_IDLE_MS } from './tcp';
import type { ListeningServer, RejectReason } from './tcp';
import type { TrustedProxies } from './trusted-proxies';

export const STOMP_SUBPROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'] as const;

const CLOSE_TIMEOUT_MS = 5000;

/** How long a socket over the connection caps may take to send the request it is refused. */
const REFUSED_SOCKET_MS = 1000;

/**
 * Fragments one message may arrive in. Browsers, @stomp/stompjs and `ws` send a message as
 * one frame; a peer that fragments at all uses few, large fragments. Each costs `ws` a Buffer
 * object until the message completes, whatever its size: ~140 bytes of heap measured (100
 * connections × 128 1-byte fragments: +1.8 MB), ~20× the wire bytes of a 1-byte fragment.
 */
export const MAX_MESSAGE_FRAGMENTS = 128;
/** Reserved from the pending budget while a message is in progress: what its fragments may cost `ws` beyond their bytes. */
export const MESSAGE_HELD_BYTES = MAX_MESSAGE_FRAGMENTS * 160;
/**
 * What `ws` holds per socket read until the frame it belongs to is complete, beyond its bytes:
 * the Buffer and its backing store (~210 bytes measured for 1-byte reads). A frame trickled
 * in 1-byte TCP segments would otherwise cost ~200× its counted bytes.
 */
const CHUNK_HELD_BYTES = 256;
/** A ping or pong from a client on the wire: 2 header bytes, a 4-byte mask, its payload (<= 125 bytes). */
const CONTROL_FRAME_HEADER_BYTES = 6;
const WHOLE_TEXT = { binary: false, fin: true } as const;
const WHOLE_BINARY = { binary: true, fin: true } as const;
const FRAGMENT_TEXT = { binary: false, fin: false } as const;
const FRAGMENT_BINARY = { binary: true, fin: false } as const;

/** On the ws and its raw socket: the connection their events are for (shared listeners, no closures per connection). */
const CONNECTION = Symbol('stompd.wsConnection');
type Carrier = { [CONNECTION]?: WsConnection };

function connectionOf(emitter: unknown): WsConnection | undefined {
  return (emitter as Carrier)[CONNECTION];
}

export class WsConnection extends BatchingConnection {
  readonly transport = 'ws' as const;
  private readonly ws: WebSocket;
  private readonly budget: ByteBudget | undefined;
  private readonly messageTimeoutMs: number;
  /** Wire bytes since the last complete message (pings and pongs taken out), reserved from the budget. */
  private inboundBytes = 0;
  /** CHUNK_HELD_BYTES per read since no bytes were counted, reserved from the budget. */
  private inboundChunkBytes = 0;
  /** A message is in progress: MESSAGE_HELD_BYTES reserved, its clock running (unless reading is paused). */
  private isInMessage = false;
  private messageTimer: NodeJS.Timeout | undefined;
  private isReadingPaused = false;
  private isRefused = false;
  /** The socket under `ws`: corked around a fragmented message so it leaves in one writev. */
  private readonly socket: Socket;

  /**
   * `messageTimeoutMs`: a message begun must complete within it (0: no limit). `client`: the
   * address a trusted proxy named (default: the socket's peer).
   */
  constructor(ws: WebSocket, request: IncomingMessage, limits: WriteLimits, budget?: ByteBudget, messageTimeoutMs = 0, client?: ClientAddress) {
    const peer = socketPeer(request.socket);
    const isProxied = client !== undefined && formatAddress(client) !== formatAddress(peer);
    super(
      {
        remoteAddress: formatAddress(isProxied ? client : peer),
        ...(isProxied ? { proxyAddress: formatAddress(peer) } : {}),
        url: request.url ?? '/',
        headers: request.headers,
        ...(ws.protocol ? { subprotocol: ws.protocol } : {}),
      },
      limits,
    );
    this.ws = ws;
    this.budget = budget;
    this.messageTimeoutMs = messageTimeoutMs;
    this.socket = request.socket;
    request.socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    // The listeners are shared by every connection and find this one on their emitter.
    (request.socket as Carrier)[CONNECTION] = this;
    (ws as Carrier)[CONNECTION] = this;
    // Before ws parses a chunk: its messages then reset the count, so what is left counted is
    // at most what ws still holds (it may miss the start of a message begun in the same chunk).
    request.socket.prependListener('data', WsConnection.beforeRead);
    // After ws parsed it (its events are synchronous): bytes still counted are a message in progress.
    request.socket.on('data', WsConnection.afterRead);
    ws.on('message', WsConnection.onMessage);
    ws.on('ping', WsConnection.onControlFrame);
    ws.on('pong', WsConnection.onControlFrame);
    ws.on('error', WsConnection.onError);
    ws.on('close', WsConnection.onClose);
  }

  private static beforeRead(this: Socket, chunk: Buffer): void {
    connectionOf(this)?.receiving(chunk.length);
  }

  private static afterRead(this: Socket): void {
    const connection = connectionOf(this);
    if (connection !== undefined && connection.inboundBytes > 0 && !connection.isInMessage) connection.messageBegun();
  }

  private static onMessage(this: WebSocket, data: RawData): void {
    const connection = connectionOf(this);
    if (connection === undefined) return;
    connection.releaseInbound(connection.inboundBytes);
    connection.handlers?.onData(toBuffer(data));
  }

  private static onControlFrame(this: WebSocket, data: Buffer): void {
    connectionOf(this)?.releaseInbound(CONTROL_FRAME_HEADER_BYTES + data.length);
  }

  private static onError(this: WebSocket, error: Error): void {
    connectionOf(this)?.closed(error);
  }

  private static onClose(this: WebSocket): void {
    connectionOf(this)?.closed(undefined);
  }

  private receiving(byteCount: number): void {
    if (this.isClosed || this.isRefused) return;
    if (!this.reserve(byteCount + CHUNK_HELD_BYTES)) return;
    this.inboundBytes += byteCount;
    this.inboundChunkBytes += CHUNK_HELD_BYTES;
  }

  private reserve(byteCount: number): boolean {
    if (this.budget === undefined || this.budget.tryReserve(byteCount)) return true;
    this.isRefused = true; // what comes after is not read
    this.handlers?.onBusy();
    return false;
  }

  private messageBegun(): void {
    if (this.isClosed || this.isRefused || !this.reserve(MESSAGE_HELD_BYTES)) return;
    this.isInMessage = true;
    if (!this.isReadingPaused) this.startMessageClock();
  }

  private startMessageClock(): void {
    if (this.messageTimeoutMs <= 0) return;
    this.messageTimer = setTimeout(() => {
      this.messageTimer = undefined;
      if (this.isInMessage && !this.isClosed) this.handlers?.onStalled?.();
    }, this.messageTimeoutMs);
    this.messageTimer.unref();
  }

  /** `byteCount` of the counted bytes were a complete message or a control frame. */
  private releaseInbound(byteCount: number): void {
    const released = Math.min(byteCount, this.inboundBytes);
    if (released > 0) {
      this.budget?.release(released);
      this.inboundBytes -= released;
    }
    if (this.inboundBytes !== 0) return;
    // Nothing counted is in progress: ws holds none of the reads either.
    if (this.inboundChunkBytes !== 0) {
      this.budget?.release(this.inboundChunkBytes);
      this.inboundChunkBytes = 0;
    }
    if (this.isInMessage) this.messageEnded();
  }

  private messageEnded(): void {
    this.isInMessage = false;
    this.budget?.release(MESSAGE_HELD_BYTES);
    clearTimeout(this.messageTimer);
    this.messageTimer = undefined;
  }

  protected override closed(error: Error | undefined): void {
    this.releaseInbound(this.inboundBytes);
    super.closed(error);
  }

  pauseReading(): void {
    this.ws.pause();
    // The peer cannot send meanwhile: its message's clock starts again on resume.
    this.isReadingPaused = true;
    clearTimeout(this.messageTimer);
    this.messageTimer = undefined;
  }

  resumeReading(): void {
    this.ws.resume();
    this.isReadingPaused = false;
    if (this.isInMessage && this.messageTimer === undefined) this.startMessageClock();
  }

  protected writeToSocket(chunks: readonly Buffer[], isBinary: boolean, done: () => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      done(); // closing or closed: nothing to deliver to
      return;
    }
    const last = chunks.length - 1;
    if (last === 0) {
      this.ws.send(chunks[0]!, isBinary ? WHOLE_BINARY : WHOLE_TEXT, done);
      return;
    }
    // Only the first fragment's type counts (later ones are continuations); `ws` writes each
    // fragment as its header plus the buffer itself, and the cork makes them one writev.
    const fragment = isBinary ? FRAGMENT_BINARY : FRAGMENT_TEXT;
    this.socket.cork();
    for (let i = 0; i < last; i++) this.ws.send(chunks[i]!, fragment);
    this.ws.send(chunks[last]!, isBinary ? WHOLE_BINARY : WHOLE_TEXT, done);
    this.socket.uncork();
  }

  protected socketBufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  protected endSocket(): void {
    this.ws.close(1000);
    setTimeout(() => this.ws.terminate(), CLOSE_TIMEOUT_MS).unref();
  }

  protected destroySocket(): void {
    this.ws.terminate();
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** Prefer the newest STOMP version the client offers; no offer (or none we know) is fine too. */
export function chooseSubprotocol(offered: ReadonlySet<string>): string | false {
  for (const protocol of STOMP_SUBPROTOCOLS) if (offered.has(protocol)) return protocol;
  return false;
}

export interface WsServerOptions {
  host: string;
  port: number;
  path: string;
  limits: WriteLimits;
  /** Largest WebSocket message accepted; frames inside are limited by the decoder. */
  maxMessageBytes: number;
  /** TCP connect to completed upgrade: a socket that takes longer is destroyed. */
  handshakeTimeoutMs: number;
  admission: Admission;
  /** Wire bytes of messages in progress are reserved from it. */
  pendingBudget?: ByteBudget;
  /** A message begun must complete within this (the frame timeout), else the session hears onStalled. */
  messageTimeoutMs?: number;
  /** Decides on the HTTP upgrade, before any STOMP frame: a reason refuses with 403, the reason its body. Mounted paths' requests too. */
  verifyHandshake?: (request: IncomingMessage) => string | undefined;
  /** Another protocol served on this port under its own path (SockJS), after the caps and the handshake check. */
  mount?: HttpMount;
  /** Whose X-Forwarded-For / Forwarded is believed, and which of the two. */
  forwarded?: { trusted: TrustedProxies; header: ForwardedHeader };
  /** wss://: node https server options (key, cert, ca, requestCert). */
  tls?: tls.TlsOptions;
  /** A connection closed before its handshake, and why (one log line): TLS on the plain port, a failed TLS handshake. */
  onRejected?(remoteAddress: string, reason: RejectReason): void;
}

/**
 * A protocol sharing the WebSocket port under a path of its own: the requests whose URL it
 * handles (handlesUrl) are its own, after the caps and the handshake check; the others are the
 * WebSocket endpoint's. A socket that carried one of its requests is the mount's to time: it
 * leaves the handshake deadline (long-polling answers outlive it).
 */
export interface HttpMount {
  /**
   * An upgrade to this path is a plain STOMP WebSocket, served as WS_PATH is (a SockJS
   * endpoint's raw `<path>/websocket`, which clients of Spring's `.withSockJS()` use too).
   */
  readonly rawWebSocketPath?: string;
  handlesUrl(url: string): boolean;
  /** `remoteAddress`: the client's address when the listener knows better than the socket (a trusted proxy's header). */
  handleRequest(request: IncomingMessage, response: http.ServerResponse, remoteAddress?: string): void;
  handleUpgrade(request: IncomingMessage, socket: Socket, head: Buffer, remoteAddress?: string): void;
}

/**
 * The same TCP connection seen as the raw socket and, over TLS, as the TLSSocket wrapping it
 * (the one 'upgrade' gives): both report the peer's address and port, unique among the live
 * connections of one listener.
 */
function peerKey(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}|${socket.remotePort ?? '?'}`;
}

interface RawSocketState {
  /** The socket's peerKey when it was accepted. */
  readonly key: string;
  /** Until the upgrade completes. */
  handshakeTimer: NodeJS.Timeout | undefined;
  ticket: AdmissionTicket | undefined;
  refusal: Refusal | undefined;
}

/**
 * Our own HTTP server in front of `ws` (noServer mode), so that it owns the sockets before the
 * upgrade: each must complete its handshake within handshakeTimeoutMs, counts towards the
 * connection caps (over them: HTTP 503), and can be destroyed at shutdown.
 */
export function listenWebSocket(options: WsServerOptions, onConnection: (connection: Connection) => void): Promise<ListeningServer> {
  const wss = new WebSocketServer({
    noServer: true,
    path: options.path,
    maxPayload: options.maxMessageBytes,
    maxFragments: MAX_MESSAGE_FRAGMENTS,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (offered) => chooseSubprotocol(offered),
    ...(options.verifyHandshake ? { verifyClient: (info: { req: IncomingMessage }, callback: VerifyCallback) => verifyWith(options.verifyHandshake!, info.req, callback) } : {}),
  });
  /** Every raw socket, by itself and by its peer key (to find it from a TLSSocket). */
  const sockets = new Map<Socket, RawSocketState>();
  const byPeerKey = new Map<string, Socket>();
  const stateOf = (socket: Socket): RawSocketState | undefined => sockets.get(socket) ?? sockets.get(byPeerKey.get(peerKey(socket))!);
  const endHandshake = (state: RawSocketState): void => {
    clearTimeout(state.handshakeTimer);
    state.handshakeTimer = undefined;
  };
  /** One listener for every socket of this listener (`this` is the socket): no closure per socket. */
  const onRawSocketClose = function (this: Socket): void {
    const state = sockets.get(this);
    if (state === undefined) return;
    endHandshake(state);
    state.ticket?.release();
    sockets.delete(this);
    if (byPeerKey.get(state.key) === this) byPeerKey.delete(state.key);
  };

  const isMounted = (request: IncomingMessage): boolean => options.mount !== undefined && options.mount.handlesUrl(request.url ?? '/');
  /** The handshake check's reason to refuse a mounted path's request (as ws's verifyClient does for WS_PATH), if any. */
  const handshakeRefusal = (request: IncomingMessage): string | undefined => options.verifyHandshake?.(request);
  /**
   * Behind a trusted proxy, the client its header names, counted under that address from now
   * on (a refusal when that address is over the caps); without trusted proxies, none (the
   * socket's peer is the client).
   */
  const identify = (request: IncomingMessage, socket: Socket, state: RawSocketState | undefined): { client?: ClientAddress; refusal?: Refusal } => {
    if (options.forwarded === undefined) return {};
    const client = forwardedClientAddress(socketPeer(socket), request.headers, options.forwarded.header, options.forwarded.trusted);
    const refusal = state?.ticket !== undefined && state.ticket.address === undefined ? state.ticket.identify(client.address) : undefined;
    return refusal === undefined ? { client } : { client, refusal };
  };

  // A plain HTTP request (no upgrade): the mount's, else 426; 503 when over the caps.
  const onRequest = (request: IncomingMessage, response: http.ServerResponse): void => {
    const state = stateOf(request.socket);
    let refusal = state?.refusal;
    if (refusal === undefined && isMounted(request)) {
      const identified = identify(request, request.socket, state);
      refusal = identified.refusal;
      if (refusal === undefined) {
        const reason = handshakeRefusal(request);
        if (reason !== undefined) {
          // text/plain: the reason quotes request headers, which must never be rendered as HTML.
          response.writeHead(403, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(reason), Connection: 'close' });
          response.end(reason);
          return;
        }
        if (state !== undefined) endHandshake(state);
        options.mount!.handleRequest(request, response, identified.client === undefined ? undefined : formatAddress(identified.client));
        return;
      }
    }
    const status = refusal === undefined ? 426 : 503;
    const body = refusal === undefined ? http.STATUS_CODES[426]! : `TOO_MANY_CONNECTIONS: ${refusal.message}`;
    response.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body), ...(refusal ? { Connection: 'close' } : {}) });
    response.end(body);
  };
  const server = options.tls === undefined ? http.createServer(onRequest) : https.createServer(options.tls, onRequest);
  server.on('connection', (socket: Socket) => {
    // From a trusted proxy the client is named by the handshake's headers: counted then.
    const isFromProxy = options.forwarded?.trusted.has(socket.remoteAddress) === true;
    const admitted = options.admission.admit('ws', isFromProxy ? undefined : socket.remoteAddress);
    const refusal = isRefusal(admitted) ? admitted : undefined;
    // A refused socket is not counted: it gets a short while for its request (to be told 503), no more.
    const deadlineMs = refusal === undefined ? options.handshakeTimeoutMs : Math.min(options.handshakeTimeoutMs, REFUSED_SOCKET_MS);
    const handshakeTimer = setTimeout(() => socket.destroy(), deadlineMs);
    handshakeTimer.unref();
    const key = peerKey(socket);
    sockets.set(socket, { key, handshakeTimer, ticket: isRefusal(admitted) ? undefined : admitted, refusal });
    byPeerKey.set(key, socket);
    socket.on('close', onRawSocketClose);
  });
  // Bytes that are not HTTP: node answers 400 and closes; a TLS ClientHello on the plain port is said in the log.
  server.on('clientError', (error: Error & { code?: string; rawPacket?: Buffer }, socket: Socket) => {
    if (options.tls === undefined && error.rawPacket?.[0] === 0x16) {
      options.onRejected?.(formatAddress(socketPeer(socket)), { code: 'TLS_ON_PLAIN_PORT', detail: 'a TLS handshake arrived on the plain WebSocket port (use WSS_PORT for wss://)' });
      socket.destroy();
      return;
    }
    // What node answers when nobody listens for clientError.
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    if (socket.writable && error.code !== 'ECONNRESET') socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`);
    socket.destroy();
  });
  if (options.tls !== undefined) {
    server.on('tlsClientError', (error: Error & { code?: string }, socket: Socket) => {
      options.onRejected?.(formatAddress(socketPeer(socket)), { code: 'TLS_HANDSHAKE_FAILED', detail: error.code ?? error.message });
    });
  }
  server.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => {
    const state = stateOf(socket);
    const { client, refusal } = state?.refusal !== undefined ? { client: undefined, refusal: state.refusal } : identify(request, socket, state);
    if (refusal !== undefined) {
      refuseHandshake(socket, 503, `TOO_MANY_CONNECTIONS: ${refusal.message}`);
      return;
    }
    if (isMounted(request)) {
      const reason = handshakeRefusal(request);
      if (reason !== undefined) {
        refuseHandshake(socket, 403, reason);
        return;
      }
      if (state !== undefined) endHandshake(state);
      options.mount!.handleUpgrade(request, socket, head, client === undefined ? undefined : formatAddress(client));
      return;
    }
    const [pathname, query] = splitUrl(request.url ?? '/');
    if (options.mount?.rawWebSocketPath !== undefined && pathname === options.mount.rawWebSocketPath) {
      request.url = `${options.path}${query}`; // ws accepts its own path only; the query (access_token) stays
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      if (state !== undefined) endHandshake(state);
      onConnection(new WsConnection(ws, request, options.limits, options.pendingBudget, options.messageTimeoutMs, client));
    });
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      server.on('error', () => undefined);
      const address = server.address() as AddressInfo;
      resolve({
        port: address.port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            wss.close();
            // Not sessions yet: nothing to say goodbye to.
            for (const [socket, state] of sockets) if (state.handshakeTimer !== undefined) socket.destroy();
          }),
        destroyConnections: () => {
          for (const socket of sockets.keys()) socket.destroy();
        },
        ...(server instanceof https.Server ? { setSecureContext: (context: tls.SecureContextOptions) => (server as https.Server).setSecureContext(context) } : {}),
      });
    });
  });
}

/** [path, "?query" or ""] */
function splitUrl(url: string): [string, string] {
  const mark = url.indexOf('?');
  return mark === -1 ? [url, ''] : [url.slice(0, mark), url.slice(mark)];
}

type VerifyCallback = (isAllowed: boolean, code?: number, message?: string, headers?: Record<string, string>) => void;

function verifyWith(verify: (request: IncomingMessage) => string | undefined, request: IncomingMessage, callback: VerifyCallback): void {
  const refusal = verify(request);
  if (refusal === undefined) callback(true);
  // text/plain: the reason quotes request headers, which must never be rendered as HTML.
  else callback(false, 403, refusal, { 'Content-Type': 'text/plain' });
}

function refuseHandshake(socket: Socket, status: number, body: string): void {
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  socket.once('finish', () => socket.destroy());
}
