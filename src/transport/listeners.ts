// Every listener of one broker, opened from the configuration: plain TCP (STOMP_PORT, with the
// PROXY protocol from trusted proxies when asked), WebSocket (WS_PORT, with SockJS beside it
// when SOCKJS_PATH is set), and their TLS twins (STOMP_TLS_PORT, WSS_PORT). They share one
// admission (the connection caps) and the write limits; a port that cannot be opened closes
// those already open and throws a ListenError naming the variable to change.

import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { encodeFrame } from '../codec';
import type { ByteBudget } from '../codec';
import type { HandshakeRefusal } from '../auth/origin';
import type { Config } from '../config';
import { Admission } from './admission';
import type { Refusal } from './admission';
import { formatAddress, socketPeer } from './client-address';
import type { Connection } from './connection';
import { writeCoalescing } from './connection';
import { forwardedClientAddress } from './forwarded';
import { loggedHandshakeCheck, refusalLog, rejectionLog } from './refusal-log';
import { listenTcp } from './tcp';
import type { ListeningServer } from './tcp';
import type { TlsCredentials } from './tls-credentials';
import type { TrustedProxies } from './trusted-proxies';
import { listenWebSocket } from './websocket';

/** A listener could not be opened (port taken, no permission, HOST not here): names the variable to change. */
export class ListenError extends Error {
  readonly variable: string;

  constructor(variable: string, address: string, error: NodeJS.ErrnoException) {
    const why =
      error.code === 'EADDRINUSE'
        ? 'address already in use'
        : error.code === 'EACCES'
          ? 'permission denied'
          : error.code === 'EADDRNOTAVAIL'
            ? 'not an address of this machine'
            : error.code === 'ENOTFOUND'
              ? 'host name not found'
              : error.message;
    super(`cannot listen on ${address} (${variable}): ${why}`);
    this.name = 'ListenError';
    this.variable = variable;
  }
}

/** The ListenError of a failed listen on `host:port`: HOST when the address is the problem, else the port's variable. */
export function listenFailure(error: unknown, host: string, port: number, portVariable: string, hostVariable = 'HOST'): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === undefined) return error;
  const variable = code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' ? hostVariable : portVariable;
  return new ListenError(variable, `${host}:${port}`, error as NodeJS.ErrnoException);
}

export type ListenersConfig = Pick<
  Config,
  | 'host'
  | 'stompPort'
  | 'wsPort'
  | 'wsPath'
  | 'sockjsPath'
  | 'tls'
  | 'limits'
  | 'writeBufferLimitBytes'
  | 'writeCoalesceMs'
  | 'writeCoalesceMaxMs'
  | 'flowBehindBytes'
  | 'frameTimeoutMs'
  | 'handshakeTimeoutMs'
  | 'maxConnections'
  | 'maxConnectionsPerAddress'
  | 'proxyProtocol'
  | 'trustedProxies'
  | 'forwardedHeader'
>;

export interface ListenersDeps {
  /** A connection that passed the caps: it becomes a session. */
  accept: (connection: Connection) => void;
  /** Loaded from TLS_CERT_FILE etc.; undefined without TLS. */
  tlsCredentials: TlsCredentials | undefined;
  /** The WebSocket handshake check (Origin, Host, cookies); undefined: none. */
  verifyHandshake: ((request: IncomingMessage) => HandshakeRefusal | undefined) | undefined;
  trustedProxies: TrustedProxies;
  /** Bytes of frames in progress, all connections (MAX_PENDING_FRAME_BYTES). */
  pendingBudget: ByteBudget;
  logger: Logger;
}

export interface Listeners {
  /** Bound ports; undefined for a transport that is off. */
  readonly tcpPort: number | undefined;
  readonly wsPort: number | undefined;
  readonly stompTlsPort: number | undefined;
  readonly wssPort: number | undefined;
  /** Connections open now, on every listener. */
  readonly openCount: number;
  /** Stop accepting; resolves once every connection is closed. */
  close(): Promise<void>;
  /** Destroy every connection still open (the end of a shutdown, or a start that failed). */
  destroyConnections(): void;
  /** New TLS handshakes use `credentials`; open connections keep theirs. */
  setTlsCredentials(credentials: TlsCredentials): void;
}

/**
 * Over the caps, a TCP peer still hears why, in STOMP (a WebSocket one gets HTTP 503): one
 * ERROR and a close, no session (nothing to log per connection: the admission's rate-limited
 * line says it).
 */
function refuse(connection: Connection, refusal: Refusal): void {
  const text = `TOO_MANY_CONNECTIONS: ${refusal.message}`;
  connection.write(
    encodeFrame(
      {
        command: 'ERROR',
        headers: [
          ['message', text],
          ['content-type', 'text/plain'],
        ],
        body: Buffer.from(`${text}\n`),
      },
      '1.0',
    ),
  );
  connection.end();
}

export async function openListeners(config: Readonly<ListenersConfig>, deps: ListenersDeps): Promise<Listeners> {
  const { accept, tlsCredentials, trustedProxies, pendingBudget, logger } = deps;
  const admission = new Admission({ maxConnections: config.maxConnections, maxConnectionsPerAddress: config.maxConnectionsPerAddress }, refusalLog(logger));
  const onRejected = rejectionLog(logger);
  // Room past the soft limit for what is not a MESSAGE (RECEIPTs) and for one MESSAGE of the
  // largest frame: 6 MiB with the defaults, only ever reached by a client that stops reading
  // (an idle connection holds none of it).
  // One write scheduler per process (connection.ts): the last server started sets its window.
  writeCoalescing.windowMs = config.writeCoalesceMs;
  writeCoalescing.maxWindowMs = config.writeCoalesceMaxMs;
  const writeLimits = {
    writeLimitBytes: config.writeBufferLimitBytes,
    overflowLimitBytes: config.writeBufferLimitBytes * 2 + config.limits.maxFrameBytes,
    behindBytes: config.flowBehindBytes,
  };
  const all: ListeningServer[] = [];
  const secure: ListeningServer[] = [];
  const ports: { tcpPort?: number; wsPort?: number; stompTlsPort?: number; wssPort?: number } = {};
  // stompjs sends one frame per message, and a frame is held to maxFrameBytes anyway:
  // the 64 KiB lets a frame just over the limit reach the decoder, which answers
  // FRAME_TOO_LARGE, rather than the WebSocket closing with 1009.
  const maxMessageBytes = config.limits.maxFrameBytes + 64 * 1024;
  // Loaded only when wanted: without SOCKJS_PATH the process carries no sockjs. Served on
  // the WebSocket listeners (WS_PORT, WSS_PORT) beside WS_PATH.
  const sockjsMount =
    config.sockjsPath === undefined
      ? undefined
      : (await import('./sockjs')).sockJsMount({ path: config.sockjsPath, limits: writeLimits, maxMessageBytes, pendingBudget, messageTimeoutMs: config.frameTimeoutMs, logger }, accept);
  const { verifyHandshake } = deps;
  const wsOptions = {
    host: config.host,
    path: config.wsPath,
    limits: writeLimits,
    maxMessageBytes,
    pendingBudget,
    messageTimeoutMs: config.frameTimeoutMs,
    handshakeTimeoutMs: config.handshakeTimeoutMs,
    admission,
    onRejected,
    ...(trustedProxies.isEmpty ? {} : { forwarded: { trusted: trustedProxies, header: config.forwardedHeader } }),
    // The refusal line names the client a trusted proxy reports, as the session would.
    ...(verifyHandshake
      ? { verifyHandshake: loggedHandshakeCheck(verifyHandshake, logger, (request) => formatAddress(forwardedClientAddress(socketPeer(request.socket), request.headers, config.forwardedHeader, trustedProxies))) }
      : {}),
    ...(sockjsMount ? { mount: sockjsMount } : {}),
  };
  const opened = async (listening: Promise<ListeningServer>, port: number, variable: string, isSecure = false): Promise<number> => {
    const listener = await listening.catch((error: unknown) => {
      throw listenFailure(error, config.host, port, variable);
    });
    all.push(listener);
    if (isSecure) secure.push(listener);
    return listener.port;
  };
  try {
    if (config.stompPort !== undefined) {
      const proxyProtocol = config.proxyProtocol ? { proxyProtocol: { trusted: trustedProxies, timeoutMs: config.handshakeTimeoutMs } } : {};
      ports.tcpPort = await opened(listenTcp({ host: config.host, port: config.stompPort, limits: writeLimits, admission, onRejected, ...proxyProtocol }, accept, refuse), config.stompPort, 'STOMP_PORT');
    }
    if (config.wsPort !== undefined) ports.wsPort = await opened(listenWebSocket({ ...wsOptions, port: config.wsPort }, accept), config.wsPort, 'WS_PORT');
    if (config.tls !== undefined && tlsCredentials !== undefined) {
      const tls = { ...tlsCredentials.options, handshakeTimeout: config.handshakeTimeoutMs };
      const { stompTlsPort, wssPort } = config.tls;
      if (stompTlsPort !== undefined) {
        ports.stompTlsPort = await opened(listenTcp({ host: config.host, port: stompTlsPort, limits: writeLimits, admission, onRejected, tls }, accept, refuse), stompTlsPort, 'STOMP_TLS_PORT', true);
      }
      if (wssPort !== undefined) ports.wssPort = await opened(listenWebSocket({ ...wsOptions, port: wssPort, tls }, accept), wssPort, 'WSS_PORT', true);
    }
  } catch (error) {
    await Promise.all(all.map((l) => l.close()));
    throw error;
  }
  logger.info(
    {
      host: config.host,
      stompPort: ports.tcpPort,
      wsPort: ports.wsPort,
      wsPath: config.wsPath,
      sockjsPath: config.sockjsPath,
      stompTlsPort: ports.stompTlsPort,
      wssPort: ports.wssPort,
      ...(trustedProxies.isEmpty ? {} : { trustedProxies: config.trustedProxies, proxyProtocol: config.proxyProtocol }),
    },
    'stompd listening',
  );
  return {
    tcpPort: ports.tcpPort,
    wsPort: ports.wsPort,
    stompTlsPort: ports.stompTlsPort,
    wssPort: ports.wssPort,
    get openCount() {
      return admission.openCount;
    },
    close: async () => {
      await Promise.all(all.map((l) => l.close()));
    },
    destroyConnections: () => {
      for (const listener of all) listener.destroyConnections();
    },
    setTlsCredentials: (credentials) => {
      for (const listener of secure) listener.setSecureContext?.(credentials.options);
    },
  };
}
