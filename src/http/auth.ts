// Who may use /api: the holder of ADMIN_TOKEN (a bearer token, compared in constant time on
// equal-length digests) or of a JWT verified like a STOMP login whose roles meet ADMIN_ROLES.
// No credential: 401; a valid JWT without an admin role: 403. Failed attempts are counted per
// client address; past MAX_FAILURES within WINDOW_MS its failures get 429 until the window
// ends, while a valid credential from it is still served (a shared NAT or proxy must not let
// one noisy client lock the admins out). No answer ever repeats a token.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { JwtVerifier } from '../auth/jwt';
import { isRevoked } from '../auth/revocation';
import type { RevocationStore } from '../auth/revocation';

export type AdminVerdict = { isAdmin: true; /** Who acted: the JWT's user, or "admin-token". */ adminId: string } | { isAdmin: false; statusCode: 401 | 403; message: string };

export interface AdminAuthOptions {
  adminToken: string | undefined;
  /** Set when STOMP logins are JWTs (AUTH=jwt): the same verification. */
  jwtVerifier: JwtVerifier | undefined;
  adminRoles: readonly string[];
  /** Neither credential configured: everyone is admin (the API then listens on loopback only). */
  isOpen: boolean;
  /** Logouts: an admin's JWT issued before its user was logged out is refused here as at CONNECT. */
  revocations?: RevocationStore;
}

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

export function adminAuthenticator(options: AdminAuthOptions): (authorization: string | undefined) => Promise<AdminVerdict> {
  const tokenDigest = options.adminToken === undefined ? undefined : digest(options.adminToken);
  return async (authorization) => {
    if (options.isOpen) return { isAdmin: true, adminId: 'loopback' };
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (match === null) return { isAdmin: false, statusCode: 401, message: 'send "Authorization: Bearer <ADMIN_TOKEN or admin JWT>"' };
    const presented = match[1]!;
    if (tokenDigest !== undefined && timingSafeEqual(digest(presented), tokenDigest)) return { isAdmin: true, adminId: 'admin-token' };
    if (options.jwtVerifier === undefined) return { isAdmin: false, statusCode: 401, message: 'invalid admin token' };
    let principal;
    try {
      principal = await options.jwtVerifier.verify(presented);
    } catch (error) {
      // The verifier's messages name what is wrong, never the token.
      return { isAdmin: false, statusCode: 401, message: error instanceof Error ? error.message : 'invalid token' };
    }
    if (options.revocations !== undefined && principal.tokenIssuedAtMs !== undefined) {
      const revokedAtMs = await options.revocations.revokedAt(principal.userId);
      if (revokedAtMs !== undefined && isRevoked(principal.tokenIssuedAtMs, revokedAtMs)) {
        return { isAdmin: false, statusCode: 401, message: 'this token was revoked (the user was logged out); sign in again for a new one' };
      }
    }
    if (!principal.roles.some((role) => options.adminRoles.includes(role))) {
      return { isAdmin: false, statusCode: 403, message: `user ${principal.userId} holds none of the admin roles (${options.adminRoles.join(', ')})` };
    }
    return { isAdmin: true, adminId: principal.userId };
  };
}

/**
 * Who may scrape a guarded /metrics: the holder of METRICS_TOKEN (given to the scraper alone),
 * or an admin. `admin` is undefined when the API is open: "everyone is admin" must not open
 * a guarded /metrics.
 */
export function metricsAuthenticator(metricsToken: string | undefined, admin: ((authorization: string | undefined) => Promise<AdminVerdict>) | undefined): (authorization: string | undefined) => Promise<AdminVerdict> {
  const tokenDigest = metricsToken === undefined ? undefined : digest(metricsToken);
  return async (authorization) => {
    const presented = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    if (presented !== undefined && tokenDigest !== undefined && timingSafeEqual(digest(presented), tokenDigest)) return { isAdmin: true, adminId: 'metrics-token' };
    if (admin !== undefined) return admin(authorization);
    return { isAdmin: false, statusCode: 401, message: 'send "Authorization: Bearer <METRICS_TOKEN>"' };
  };
}

export const MAX_FAILURES = 20;
export const WINDOW_MS = 60_000;

/** Failed authentications per remote address, in fixed windows; bounded in memory. */
export class FailedAuthLimiter {
  private readonly windows = new Map<string, { startedAt: number; failures: number }>();
  private readonly maxFailures: number;
  private readonly windowMs: number;
  /** Past this many addresses tracked, expired windows are swept (and, if still full, the oldest dropped). */
  private readonly maxAddresses = 10_000;

  constructor(maxFailures = MAX_FAILURES, windowMs = WINDOW_MS) {
    this.maxFailures = maxFailures;
    this.windowMs = windowMs;
  }

  /** Milliseconds until `address` may try again; 0 when it may now. */
  retryAfterMs(address: string, now = Date.now()): number {
    const window = this.windows.get(address);
    if (window === undefined) return 0;
    const endsAt = window.startedAt + this.windowMs;
    if (now >= endsAt) {
      this.windows.delete(address);
      return 0;
    }
    return window.failures >= this.maxFailures ? endsAt - now : 0;
  }

  recordFailure(address: string, now = Date.now()): void {
    let window = this.windows.get(address);
    if (window === undefined || now >= window.startedAt + this.windowMs) {
      if (this.windows.size >= this.maxAddresses) this.sweep(now);
      window = { startedAt: now, failures: 0 };
      this.windows.set(address, window);
    }
    window.failures++;
  }

  private sweep(now: number): void {
    for (const [address, window] of this.windows) if (now >= window.startedAt + this.windowMs) this.windows.delete(address);
    if (this.windows.size >= this.maxAddresses) this.windows.delete(this.windows.keys().next().value!);
  }
}
