// Logout everywhere: a revocation makes every token of a user issued up to that moment
// useless for reconnecting (ERROR TOKEN_REVOKED), until the tokens expire by themselves.
// The store is in memory in embedded mode and in Redis (`auth:{userId}`) with several
// instances. Only token sessions are concerned: a password login (AUTH=users) or an
// embedded login has nothing issued to revoke.
//
// JWT `iat` has one-second resolution, so a token issued in the same second as the logout
// counts as issued before it: a client that signs in again at once is refused for at most a
// second (stompjs retries after 5 s). A token without `iat` counts as issued before any logout.

import { StompError } from '../session/errors';
import type { ConnectContext, Interceptor } from '../session/interceptor';

export interface RevocationStore {
  /** From now on, tokens of `userId` issued at or before `atMs` are refused. */
  revoke(userId: string, atMs: number): Promise<void>;
  /** The latest revocation in force (epoch ms), if any. */
  revokedAt(userId: string): Promise<number | undefined>;
}

export class MemoryRevocations implements RevocationStore {
  private readonly ttlMs: number;
  private readonly revoked = new Map<string, { atMs: number; untilMs: number }>();

  /** A revocation is kept `ttlMs`: longer than any token accepted lives. */
  constructor(ttlMs: number) {
    this.ttlMs = ttlMs;
  }

  revoke(userId: string, atMs: number): Promise<void> {
    const now = Date.now();
    for (const [id, entry] of this.revoked) if (entry.untilMs <= now) this.revoked.delete(id); // keep it bounded
    const atMsKept = Math.max(atMs, this.revoked.get(userId)?.atMs ?? 0);
    this.revoked.set(userId, { atMs: atMsKept, untilMs: now + this.ttlMs });
    return Promise.resolve();
  }

  revokedAt(userId: string): Promise<number | undefined> {
    const entry = this.revoked.get(userId);
    if (entry === undefined || entry.untilMs <= Date.now()) return Promise.resolve(undefined);
    return Promise.resolve(entry.atMs);
  }
}

/** Whether a token issued at `issuedAtMs` (0: unknown) falls under a revocation at `revokedAtMs`. */
export function isRevoked(issuedAtMs: number, revokedAtMs: number): boolean {
  return Math.floor(issuedAtMs / 1000) <= Math.floor(revokedAtMs / 1000);
}

/** The link after authentication: a revoked token is refused with TOKEN_REVOKED. */
export function revocationCheck(store: RevocationStore): Interceptor {
  return {
    name: 'revocation',
    onConnect(ctx: ConnectContext): void | Promise<void> {
      const principal = ctx.principal;
      if (principal?.tokenIssuedAtMs === undefined) return undefined;
      const issuedAtMs = principal.tokenIssuedAtMs;
      return store.revokedAt(principal.userId).then((revokedAtMs) => {
        if (revokedAtMs !== undefined && isRevoked(issuedAtMs, revokedAtMs)) {
          throw new StompError('TOKEN_REVOKED', 'this token was revoked (the user was logged out); sign in again for a new one');
        }
      });
    },
  };
}
