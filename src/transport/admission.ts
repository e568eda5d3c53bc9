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
    return new Ticket(this, transport, key);
  }

  // --- For tickets ---

  /** A ticket's client was named: counted under `key` from now on, or refused over the per-address cap. */
  countUnder(transport: TransportKind, key: string): Refusal | undefined {
    const refusal = this.perAddressRefusal(key);
    if (refusal !== undefined) return this.refuse(transport, key, refusal);
    this.byAddress.set(key, (this.byAddress.get(key) ?? 0) + 1);
    return undefined;
  }

  /** A ticket let go of its place (counted under `counted`, if under an address). */
  releasePlace(counted: string | undefined): void {
    this.total--;
    if (counted !== undefined) this.forget(counted);
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

  /** One socket fewer under `key`. */
  forget(key: string): void {
    const left = (this.byAddress.get(key) ?? 1) - 1;
    if (left === 0) this.byAddress.delete(key);
    else this.byAddress.set(key, left);
  }
}

/** A class, not a literal with closures: one per open socket, so it is kept small. */
class Ticket implements AdmissionTicket {
  private readonly admission: Admission;
  private readonly transport: TransportKind;
  private counted: string | undefined;
  private isReleased = false;

  constructor(admission: Admission, transport: TransportKind, counted: string | undefined) {
    this.admission = admission;
    this.transport = transport;
    this.counted = counted;
  }

  get address(): string | undefined {
    return this.counted;
  }

  identify(clientAddress: string): Refusal | undefined {
    if (this.isReleased) return undefined;
    const clientKey = plainAddress(clientAddress);
    if (this.counted !== undefined) this.admission.forget(this.counted);
    this.counted = undefined;
    const refusal = this.admission.countUnder(this.transport, clientKey);
    if (refusal !== undefined) {
      this.release();
      return refusal;
    }
    this.counted = clientKey;
    return undefined;
  }

  release(): void {
    if (this.isReleased) return;
    this.isReleased = true;
    this.admission.releasePlace(this.counted);
  }
}
