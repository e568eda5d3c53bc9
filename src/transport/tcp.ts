// Raw TCP transport (what stompit and other native clients use): one socket, one Connection;
// plain on STOMP_PORT, TLS on STOMP_TLS_PORT.
//
// Before a session sees a byte, the listener decides who the client is:
// - PROXY_PROTOCOL=1 (plain listener): a peer in TRUSTED_PROXIES must open with a PROXY
//   protocol header (v1 or v2), read by proxy-protocol.ts within the handshake timeout; the
//   address it names is the session's, for the per-address cap too. A malformed or missing
//   header is closed with a log line.
// - Bytes that cannot be STOMP are closed at once with a log line instead of waiting for the
//   CONNECT timeout: a TLS ClientHello (first byte 0x16) on the plain port, a PROXY header
//   from a peer that is not a trusted proxy (it would choose its own address).
// - TLS listener: node's tls server does the handshake (within the handshake timeout, client
//   certificates when TLS_CA_FILE is set); the session starts on the decrypted stream. Its
//   certificate can be swapped (SIGHUP) without touching open connections.

import net from 'node:net';
import tls from 'node:tls';
import { isRefusal } from './admission';
import type { Admission, AdmissionTicket, Refusal } from './admission';
import { BatchingConnection } from './connection';
import type { Connection, WriteLimits } from './connection';
import { formatAddress, socketPeer } from './client-address';
import type { ClientAddress } from './client-address';
import { ProxyHeaderReader } from './proxy-protocol';
import type { ProxyHeader } from './proxy-protocol';
import type { TrustedProxies } from './trusted-proxies';

/**
 * TCP keepalive after this much silence: a peer that vanished without heart-beating (its
 * CONNECT said heart-beat 0) is still found, by the kernel's probes.
 */
export const KEEPALIVE_IDLE_MS = 30_000;

/** How long an ended socket may wait for the peer's FIN before it is destroyed. */
const END_TIMEOUT_MS = 5000;

export class TcpConnection extends BatchingConnection {
  readonly transport = 'tcp' as const;
  private readonly socket: net.Socket;

  /**
   * `client`: the address a trusted proxy named (default: the socket's peer).
   * `isAcceptable`: judges the first bytes read; false closes the connection, nothing passed on.
   */
  constructor(socket: net.Socket, limits: WriteLimits, client?: ClientAddress, isAcceptable?: (firstBytes: Buffer) => boolean) {
    const peer = socketPeer(socket);
    super(client === undefined ? { remoteAddress: formatAddress(peer) } : { remoteAddress: formatAddress(client), proxyAddress: formatAddress(peer) }, limits);
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    let check = isAcceptable;
    socket.on('data', (chunk: Buffer) => {
      if (check !== undefined) {
        const isOk = check(chunk);
        check = undefined;
        if (!isOk) {
          socket.destroy();
          return;
        }
      }
      this.handlers?.onData(chunk);
    });
    socket.on('error', (error) => this.closed(error));
    socket.on('close', () => this.closed(undefined));
  }

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  protected writeToSocket(chunks: readonly Buffer[], _isBinary: boolean, done: () => void): void {
    if (!this.socket.writable) {
      done(); // the peer is gone (or going): nothing to deliver to, and no error to raise
      return;
    }
    const last = chunks.length - 1;
    if (last === 0) {
      this.socket.write(chunks[0]!, done);
      return;
    }
    // Corked writes leave together as one writev of the buffers themselves; the socket
    // calls back in order, so the last callback means all were taken.
    this.socket.cork();
    for (let i = 0; i < last; i++) this.socket.write(chunks[i]!);
    this.socket.write(chunks[last]!, done);
    this.socket.uncork();
  }

  protected socketBufferedBytes(): number {
    return this.socket.writableLength;
  }

  protected endSocket(): void {
    this.socket.end();
    setTimeout(() => this.socket.destroy(), END_TIMEOUT_MS).unref();
  }

  protected destroySocket(): void {
    this.socket.destroy();
  }
}

export interface ListeningServer {
  readonly port: number;
  /** Stop accepting; resolves once every connection is closed (left to its session). */
  close(): Promise<void>;
  /** Destroy every connection still open, whatever its state: the end of a shutdown. */
  destroyConnections(): void;
  /** TLS listeners: new handshakes use these credentials; open connections keep theirs. */
  setSecureContext?(options: tls.SecureContextOptions): void;
}

/** Why the listener closed a connection before it became a session (logged by the caller). */
export type RejectReason =
  { code: 'TLS_ON_PLAIN_PORT'; detail: string } | { code: 'UNTRUSTED_PROXY_HEADER'; detail: string } | { code: 'BAD_PROXY_HEADER'; detail: string } | { code: 'TLS_HANDSHAKE_FAILED'; detail: string };

export interface TcpServerOptions {
  host: string;
  port: number;
  limits: WriteLimits;
  admission: Admission;
  /** Plain listener only: PROXY protocol headers from these peers are required and believed. */
  proxyProtocol?: { trusted: TrustedProxies; timeoutMs: number };
  /** A TLS listener: node tls server options (key, cert, ca, requestCert, handshakeTimeout). */
  tls?: tls.TlsOptions;
  /** A connection closed before its session began, and why (one log line). */
  onRejected(remoteAddress: string, reason: RejectReason): void;
}

const TLS_HANDSHAKE_RECORD = 0x16;
const PROXY_V1_START = Buffer.from('PROXY ', 'latin1');
const PROXY_V2_START = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00]);

/**
 * First bytes a STOMP client never sends, on a plain listener: why they are refused. A PROXY
 * header counts from its whole signature ("PROXY ", or the v2 one's first five bytes, a NUL
 * after two EOLs): a client's leading heart-beat EOLs are not one.
 */
function refusedFirstBytes(chunk: Buffer): RejectReason | undefined {
  if (chunk[0] === TLS_HANDSHAKE_RECORD) return { code: 'TLS_ON_PLAIN_PORT', detail: 'a TLS handshake arrived on the plain STOMP port (use STOMP_TLS_PORT for TLS)' };
  const startsWith = (prefix: Buffer): boolean => chunk.length >= prefix.length && chunk.subarray(0, prefix.length).equals(prefix);
  if (startsWith(PROXY_V1_START) || startsWith(PROXY_V2_START)) {
    return { code: 'UNTRUSTED_PROXY_HEADER', detail: 'a PROXY protocol header from a peer that is not in TRUSTED_PROXIES (or PROXY_PROTOCOL is off)' };
  }
  return undefined;
}

/** `onRefused`: a connection over the caps, to be answered with a STOMP ERROR and closed. */
export function listenTcp(options: TcpServerOptions, onConnection: (connection: Connection) => void, onRefused: (connection: Connection, refusal: Refusal) => void): Promise<ListeningServer> {
  /** Every open socket, and its place under the caps (none when it was refused). */
  const sockets = new Map<net.Socket, AdmissionTicket | undefined>();
  const isTls = options.tls !== undefined;
  /** One listener for every socket (`this` is the socket): no closure per socket. */
  const onSocketClose = function (this: net.Socket): void {
    sockets.get(this)?.release();
    sockets.delete(this);
  };
  const track = (socket: net.Socket, ticket: AdmissionTicket | undefined): void => {
    sockets.set(socket, ticket);
    socket.on('close', onSocketClose);
  };
  const isAcceptable =
    (socket: net.Socket) =>
    (chunk: Buffer): boolean => {
      const reason = refusedFirstBytes(chunk);
      if (reason !== undefined) options.onRejected(formatAddress(socketPeer(socket)), reason);
      return reason === undefined;
    };
  const start = (socket: net.Socket, client: ClientAddress | undefined, refusal: Refusal | undefined): void => {
    const connection = new TcpConnection(socket, options.limits, client, isTls ? undefined : isAcceptable(socket));
    if (refusal === undefined) onConnection(connection);
    else onRefused(connection, refusal);
  };

  let server: net.Server;
  if (options.tls !== undefined) {
    const tlsServer = tls.createServer(options.tls, (secure) => start(secure, undefined, undefined));
    // The raw socket is counted from its accept, its handshake bounded by handshakeTimeout.
    tlsServer.on('connection', (socket: net.Socket) => {
      const admitted = options.admission.admit('tcp', socket.remoteAddress);
      if (isRefusal(admitted)) {
        socket.destroy(); // nothing can be said to it before its handshake
        return;
      }
      track(socket, admitted);
    });
    // A failed handshake (expired or unknown client certificate, plain bytes, timeout): node closes it.
    tlsServer.on('tlsClientError', (error: Error & { code?: string }, secure: tls.TLSSocket) => {
      options.onRejected(formatAddress(socketPeer(secure)), { code: 'TLS_HANDSHAKE_FAILED', detail: error.code ?? error.message });
    });
    server = tlsServer;
  } else {
    server = net.createServer((socket) => {
      const proxy = options.proxyProtocol;
      if (proxy === undefined || !proxy.trusted.has(socket.remoteAddress)) {
        const admitted = options.admission.admit('tcp', socket.remoteAddress);
        track(socket, isRefusal(admitted) ? undefined : admitted);
        start(socket, undefined, isRefusal(admitted) ? admitted : undefined);
        return;
      }
      const admitted = options.admission.admit('tcp', undefined);
      track(socket, isRefusal(admitted) ? undefined : admitted);
      if (isRefusal(admitted)) {
        start(socket, undefined, admitted);
        return;
      }
      readProxyHeader(socket, proxy.timeoutMs, (result) => {
        if (result.kind === 'invalid') {
          options.onRejected(formatAddress(socketPeer(socket)), { code: 'BAD_PROXY_HEADER', detail: result.reason });
          socket.destroy();
          return;
        }
        const client = result.kind === 'proxied' ? result.source : undefined;
        const refusal = admitted.identify((client ?? socketPeer(socket)).address);
        if (result.rest.length > 0) socket.unshift(result.rest);
        start(socket, client, refusal);
        socket.resume();
      });
    });
  }
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      const address = server.address() as net.AddressInfo;
      resolve({
        port: address.port,
        close: () => new Promise<void>((done) => server.close(() => done())),
        destroyConnections: () => {
          for (const socket of sockets.keys()) socket.destroy();
        },
        ...(server instanceof tls.Server ? { setSecureContext: (context: tls.SecureContextOptions) => server.setSecureContext(context) } : {}),
      });
    });
  });
}

/**
 * Read the PROXY header off `socket`, then hand over with the socket paused (the bytes after
 * the header in `rest`). Bounded in bytes by the reader and in time by `timeoutMs`.
 */
function readProxyHeader(socket: net.Socket, timeoutMs: number, done: (result: ProxyHeader) => void): void {
  const reader = new ProxyHeaderReader();
  const finish = (result: ProxyHeader): void => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('close', onClose);
    socket.pause();
    done(result);
  };
  const onData = (chunk: Buffer): void => {
    const result = reader.push(chunk);
    if (result !== undefined) finish(result);
  };
  const onClose = (): void => clearTimeout(timer);
  const timer = setTimeout(() => finish({ kind: 'invalid', reason: `no complete PROXY protocol header within ${timeoutMs} ms` }), timeoutMs);
  timer.unref();
  socket.on('data', onData);
  socket.once('close', onClose);
  socket.on('error', () => undefined); // the close that follows is enough
}
