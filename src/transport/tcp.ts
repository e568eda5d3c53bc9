// Raw TCP transport (what stompit and other native clients use): one socket, one Connection.

import net from 'node:net';
import type { Admission, Refusal } from './admission';
import { BatchingConnection } from './connection';
import type { Connection, WriteLimits } from './connection';

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

  constructor(socket: net.Socket, limits: WriteLimits) {
    super({ remoteAddress: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}` }, limits);
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    socket.on('data', (chunk: Buffer) => this.handlers?.onData(chunk));
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
}

export interface TcpServerOptions {
  host: string;
  port: number;
  limits: WriteLimits;
  admission: Admission;
}

/** `onRefused`: a connection over the caps, to be answered with a STOMP ERROR and closed. */
export function listenTcp(
  options: TcpServerOptions,
  onConnection: (connection: Connection) => void,
  onRefused: (connection: Connection, refusal: Refusal) => void,
): Promise<ListeningServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const address = socket.remoteAddress ?? '?';
    const refusal = options.admission.admit(socket, 'tcp');
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      if (refusal === undefined) options.admission.release(address);
    });
    const connection = new TcpConnection(socket, options.limits);
    if (refusal === undefined) onConnection(connection);
    else onRefused(connection, refusal);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      const address = server.address() as net.AddressInfo;
      resolve({
        port: address.port,
        close: () => new Promise<void>((done) => server.close(() => done())),
        destroyConnections: () => {
          for (const socket of sockets) socket.destroy();
        },
      });
    });
  });
}
