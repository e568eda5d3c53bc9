// Administrative actions on sessions, for the HTTP API and for embedders: close one session,
// or log a user out everywhere. They reach sessions on this instance directly and, with
// several instances, the others through RemoteSessions (the control channel).

import type { RevocationStore } from '../auth/revocation';
import type { SessionRegistry } from '../registry/registry';
import type { StompErrorCode } from './errors';
import type { DisconnectReason } from './events';
import type { Session } from './session';

export interface KickOutcome {
  /** Sessions told to close (ERROR KICKED / LOGGED_OUT), here and elsewhere. */
  sessionsClosed: number;
  /** Instances that heard the request, this one included. */
  instancesReached: number;
}

/** The other instances, as the cluster layer reaches them (NO_OTHER_INSTANCES in one process). */
export interface RemoteSessions {
  /** Resolves with how many instances heard it (this one included: it listens too), 0 when Redis is away. */
  kickSession(sessionId: string, code: StompErrorCode, message: string): Promise<number>;
  /** `revokedAtMs`: the logout's revocation, for the other instances to remember. */
  kickUser(userId: string, code: StompErrorCode, message: string, revokedAtMs?: number): Promise<number>;
}

export interface SessionAdmin {
  kickSession(sessionId: string): Promise<KickOutcome>;
  /** Close every session of the user and revoke the tokens it holds (TOKEN_REVOKED on reconnect). */
  logoutUser(userId: string): Promise<KickOutcome>;
}

export interface SessionAdminDeps {
  localSessions(): Iterable<Session>;
  localSession(sessionId: string): Session | undefined;
  registry: SessionRegistry;
  revocations: RevocationStore;
  instanceId: string;
  remote: RemoteSessions;
}

/** One process: no other instance to reach; only this one heard it. */
export const NO_OTHER_INSTANCES: RemoteSessions = {
  kickSession: async () => 1,
  kickUser: async () => 1,
};

const KICK_MESSAGE = 'closed by an administrator';
const LOGOUT_MESSAGE = 'logged out on every device';

/** Close the connected sessions among `sessions` (only `userId`'s when given) with ERROR `code`; returns how many. */
export function closeSessions(sessions: Iterable<Session>, userId: string | undefined, code: StompErrorCode, message: string, reason: DisconnectReason): number {
  let closed = 0;
  for (const session of [...sessions]) {
    if (session.state !== 'connected' || (userId !== undefined && session.userId !== userId)) continue;
    session.kick(code, message, reason);
    closed++;
  }
  return closed;
}

export function createSessionAdmin(deps: SessionAdminDeps): SessionAdmin {
  return {
    async kickSession(sessionId) {
      const local = deps.localSession(sessionId);
      if (local !== undefined && local.isOpen) {
        local.kick('KICKED', KICK_MESSAGE);
        return { sessionsClosed: 1, instancesReached: 1 };
      }
      // Unknown to the registry (or the registry unreachable): ask every instance anyway.
      const record = await deps.registry.get(sessionId).catch(() => undefined);
      if (record === undefined) {
        const reached = await deps.remote.kickSession(sessionId, 'KICKED', KICK_MESSAGE);
        return { sessionsClosed: 0, instancesReached: Math.max(1, reached) };
      }
      const reached = await deps.remote.kickSession(sessionId, 'KICKED', KICK_MESSAGE);
      return { sessionsClosed: reached > 1 ? 1 : 0, instancesReached: Math.max(1, reached) };
    },

    async logoutUser(userId) {
      const revokedAtMs = Date.now();
      // Even if the revocation cannot be stored now (Redis away), this instance's sessions go.
      const revoked = deps.revocations.revoke(userId, revokedAtMs).catch(() => undefined);
      const closedHere = closeSessions(deps.localSessions(), userId, 'LOGGED_OUT', LOGOUT_MESSAGE, 'logged-out');
      await revoked;
      const elsewhere = (await deps.registry.sessionsOf(userId).catch(() => [])).filter((r) => r.instanceId !== deps.instanceId).length;
      const reached = await deps.remote.kickUser(userId, 'LOGGED_OUT', LOGOUT_MESSAGE, revokedAtMs);
      return { sessionsClosed: closedHere + (reached > 1 ? elsewhere : 0), instancesReached: Math.max(1, reached) };
    },
  };
}
