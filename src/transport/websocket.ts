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

import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import { BatchingConnection } from './connection';
import type { Connection, WriteLimits } from './connection';
import { KEEPALIVE_IDLE_MS } from './tcp';
import type { ListeningServer } from './tcp';

export const STOMP_SUBPROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'] as const;

const CLOSE_TIMEOUT_MS = 5000;

const WHOLE_TEXT = { binary: false, fin: true } as const;
const WHOLE_BINARY = { binary: true, fin: true } as const;
const FRAGMENT_TEXT = { binary: false, fin: false } as const;
const FRAGMENT_BINARY = { binary: true, fin: false } as const;

export class WsConnection extends BatchingConnection {
  readonly transport = 'ws' as const;
  private readonly ws: WebSocket;
  /** The socket under `ws`: corked around a fragmented message so it leaves in one writev. */
  private readonly socket: Socket;

  constructor(ws: WebSocket, request: IncomingMessage, limits: WriteLimits) {
    super(
      {
        remoteAddress: `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? '?'}`,
        url: request.url ?? '/',
        headers: request.headers,
        ...(ws.protocol ? { subprotocol: ws.protocol } : {}),
      },
      limits,
    );
    this.ws = ws;
    this.socket = request.socket;
    request.socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    ws.on('message', (data: RawData) => this.handlers?.onData(toBuffer(data)));
    ws.on('error', (error) => this.closed(error));
    ws.on('close', () => this.closed(undefined));
  }

  pauseReading(): void {
    this.ws.pause();
  }

  resumeReading(): void {
    this.ws.resume();
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
  /** Decides on the HTTP upgrade, before any STOMP frame: false refuses with 403. */
  verifyHandshake?: (request: IncomingMessage) => boolean;
}

export function listenWebSocket(options: WsServerOptions, onConnection: (connection: Connection) => void): Promise<ListeningServer> {
  return new Promise((resolve, reject) => {
    const server = new WebSocketServer({
      host: options.host,
      port: options.port,
      path: options.path,
      maxPayload: options.maxMessageBytes,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (offered) => chooseSubprotocol(offered),
      ...(options.verifyHandshake
        ? { verifyClient: (info: { req: IncomingMessage }, callback: (ok: boolean, code?: number) => void) => callback(options.verifyHandshake!(info.req), 403) }
        : {}),
    });
    server.on('connection', (ws, request) => onConnection(new WsConnection(ws, request, options.limits)));
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      server.on('error', () => undefined);
      const address = server.address() as AddressInfo;
      resolve({
        port: address.port,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}
