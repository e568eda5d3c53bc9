// Admission: how many connections may be open at once, in all and per client address.
//
// Both transports count a socket from its TCP accept to its close: a WebSocket counts before
// its upgrade, so half-done handshakes (a slow loris on the WebSocket port) use up the caps
// like sessions do. A refused socket is not counted; the transport answers it in its own way
// (TCP: a STOMP ERROR; WebSocket: HTTP 503) and closes it.
//
// Behind a trusted proxy the client's address is known only later (its PROXY header, the
// handshake's X-Forwarded-For): such a socket is admitted under the total cap alone, and
// counted under its client's address once the proxy names it (identify), so
// MAX_CONNECTIONS_PER_ADDRESS holds per client, not per proxy.

import { plainAddress } from './client-address';
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

/** One admitted socket's place under the caps. */
export interface AdmissionTicket {
  /** Counted under this client address; undefined while a proxy has yet to name it. */
  readonly address: string | undefined;
  /**
   * The proxy named the client: counted under `address` from now on, or, over the
   * per-address cap, refused (the ticket is then released).
   */
  identify(address: string): Refusal | undefined;
  /** The socket closed. Safe to call more than once. */
  release(): void;
}

export function isRefusal(result: AdmissionTicket | Refusal): result is Refusal {
  return 'limit' in result;
}

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
   * Count a new socket in, from client `address` (undefined: a trusted proxy will name it
   * later; only the total cap applies until then); or, over a cap, say why not (and tell the
   * refusal listener).
   */
  admit(transport: TransportKind, address: string | undefined): AdmissionTicket | Refusal {
    const { maxConnections } = this.limits;
    if (maxConnections > 0 && this.total >= maxConnections) {
      return this.refuse(transport, address ?? '?', { limit: 'MAX_CONNECTIONS', max: maxConnections, message: `the server holds its maximum of ${maxConnections} connections; try again later` });
    }
    const key = address === undefined ? undefined : plainAddress(address);
    if (key !== undefined) {
      const refusal = this.perAddressRefusal(key);
      if (refusal !== undefined) return this.refuse(transport, key, refusal);
      this.byAddress.set(key, (this.byAddress.get(key) ?? 0) + 1);
    }
    this.total++;
    let counted = key;
    let isReleased = false;
    const release = (): void => {
      if (isReleased) return;
      isReleased = true;
      this.total--;
      if (counted !== undefined) this.forget(counted);
    };
    return {
      get address() {
        return counted;
      },
      identify: (clientAddress: string): Refusal | undefined => {
        if (isReleased) return undefined;
        const clientKey = plainAddress(clientAddress);
        if (counted !== undefined) this.forget(counted);
        counted = undefined;
        const refusal = this.perAddressRefusal(clientKey);
        if (refusal !== undefined) {
          release();
          return this.refuse(transport, clientKey, refusal);
        }
        counted = clientKey;
        this.byAddress.set(clientKey, (this.byAddress.get(clientKey) ?? 0) + 1);
        return undefined;
      },
      release,
    };
  }

  private perAddressRefusal(key: string): Refusal | undefined {
    const max = this.limits.maxConnectionsPerAddress;
    if (max > 0 && (this.byAddress.get(key) ?? 0) >= max) {
      return { limit: 'MAX_CONNECTIONS_PER_ADDRESS', max, message: `at most ${max} connections from one address` };
    }
    return undefined;
  }

  private refuse(transport: TransportKind, address: string, refusal: Refusal): Refusal {
    this.onRefused(transport, address, refusal);
    return refusal;
  }

  private forget(key: string): void {
    const left = (this.byAddress.get(key) ?? 1) - 1;
    if (left === 0) this.byAddress.delete(key);
    else this.byAddress.set(key, left);
  }
}
