// Admission: how many connections may be open at once, in all and per remote address.
//
// Both transports count a socket from its TCP accept to its close: a WebSocket counts before
// its upgrade, so half-done handshakes (a slow loris on the WebSocket port) use up the caps
// like sessions do. A refused socket is not counted; the transport answers it in its own way
// (TCP: a STOMP ERROR; WebSocket: HTTP 503) and closes it.

import type { Socket } from 'node:net';
import type { TransportKind } from './connection';

export interface AdmissionLimits {
  /** 0: no cap. */
  maxConnections: number;
  /** 0: no cap. */
  maxConnectionsPerAddress: number;
}

export interface Refusal {
  /** The setting whose cap was reached. */
  limit: 'MAX_CONNECTIONS' | 'MAX_CONNECTIONS_PER_ADDRESS';
  max: number;
  /** For the ERROR frame or the HTTP 503 body. */
  message: string;
}

export type RefusalListener = (transport: TransportKind, remoteAddress: string, refusal: Refusal) => void;

export class Admission {
  private readonly limits: AdmissionLimits;
  private readonly onRefused: RefusalListener;
  private total = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(limits: AdmissionLimits, onRefused: RefusalListener = () => undefined) {
    this.limits = limits;
    this.onRefused = onRefused;
  }

  /** Sockets admitted and not closed yet. */
  get openCount(): number {
    return this.total;
  }

  /**
   * Count `socket` in (the caller calls release(address) once when it closes, from the one
   * close listener it keeps per socket anyway: a socket forgets its address once destroyed,
   * so the caller keeps it); or, over a cap, say why not (and tell the refusal listener).
   */
  admit(socket: Socket, transport: TransportKind): Refusal | undefined {
    const address = socket.remoteAddress ?? '?';
    const { maxConnections, maxConnectionsPerAddress } = this.limits;
    const fromAddress = this.byAddress.get(address) ?? 0;
    let refusal: Refusal | undefined;
    if (maxConnections > 0 && this.total >= maxConnections) {
      refusal = { limit: 'MAX_CONNECTIONS', max: maxConnections, message: `the server holds its maximum of ${maxConnections} connections; try again later` };
    } else if (maxConnectionsPerAddress > 0 && fromAddress >= maxConnectionsPerAddress) {
      refusal = { limit: 'MAX_CONNECTIONS_PER_ADDRESS', max: maxConnectionsPerAddress, message: `at most ${maxConnectionsPerAddress} connections from one address` };
    }
    if (refusal !== undefined) {
      this.onRefused(transport, address, refusal);
      return refusal;
    }
    this.total++;
    this.byAddress.set(address, fromAddress + 1);
    return undefined;
  }

  /** An admitted socket from `address` (its remoteAddress when admitted) closed. */
  release(address: string): void {
    this.total--;
    const left = (this.byAddress.get(address) ?? 1) - 1;
    if (left === 0) this.byAddress.delete(address);
    else this.byAddress.set(address, left);
  }
}
