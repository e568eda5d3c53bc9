// The session registry: who is connected, as which user, where. The single-session policy
// decides against it, so "check the user's sessions and bind this one" is one atomic step
// (bind): two simultaneous CONNECTs of one user can never both pass a limit of one.
//
// MemoryRegistry serves one instance; RedisRegistry (src/cluster/) makes the same promises
// across instances, with bind decided by one Lua script on the user's hash slot.

export interface SessionRecord {
  sessionId: string;
  userId: string;
  /** Roles from the credentials, for example CUSTOMER, AGENT, ADMIN. */
  roles: readonly string[];
  /** The stompd instance holding the connection. */
  instanceId: string;
  transport: string;
  remoteAddress: string;
  connectedAt: number;
  /** When the session was last known to be alive (refreshed while it lives). */
  lastSeenAt: number;
  /** Its subscriptions, as last noted (SubscriptionNotes writes them within a moment of a change). */
  subscriptions?: readonly SubscriptionNote[];
}

/** One subscription of a session, as the registry keeps it for the HTTP API and the dashboard. */
export interface SubscriptionNote {
  id: string;
  destination: string;
  ack: string;
}

export type SessionLimitMode =
  /** Refuse the newcomer when the user is at the limit. */
  | 'reject'
  /** Let the newcomer in and evict the user's oldest sessions down to the limit. */
  | 'replace';

export interface BindPolicy {
  /** Sessions one user may hold; Infinity for no limit. */
  maxPerUser: number;
  mode: SessionLimitMode;
}

export type BindResult =
  { isBound: true; /** Sessions evicted to make room (mode replace), oldest first. */ evicted: SessionRecord[] } | { isBound: false; /** The user's sessions that hold the places. */ holders: SessionRecord[] };

export interface SessionRegistry {
  /** Atomically check the user's sessions against the policy and, if it allows, bind this one. */
  bind(record: SessionRecord, policy: BindPolicy): Promise<BindResult>;
  /** Forget a session; unknown ids are ignored. */
  unbind(sessionId: string): Promise<void>;
  get(sessionId: string): Promise<SessionRecord | undefined>;
  /** A user's live sessions, oldest first. */
  sessionsOf(userId: string): Promise<SessionRecord[]>;
  /** Users with at least one live session. */
  onlineUsers(): Promise<string[]>;
  /**
   * One page of live session ids. `cursor` is what the previous page returned (undefined:
   * start); a session present during the whole walk is listed at least once, and the walk
   * never blocks the store (SSCAN in Redis, not KEYS).
   */
  listSessions(cursor: string | undefined, limit: number): Promise<SessionPage>;
  /** One page of online users with their roles, ordered by user id; `role` keeps those holding it. */
  onlineUsersPage(query: OnlineUsersQuery): Promise<OnlineUsersPage>;
  stats(): Promise<RegistryStats>;
  /**
   * Note the session as alive now and extend its expiry. undefined when unknown; ttlSeconds
   * null where sessions do not expire (in memory: a session lives as long as its connection).
   */
  refreshSession(sessionId: string, now?: number): Promise<{ record: SessionRecord; ttlSeconds: number | null } | undefined>;
  /** Replace a live session's noted subscriptions; a session that is gone stays gone. */
  noteSubscriptions(sessionId: string, subscriptions: readonly SubscriptionNote[]): Promise<void>;
}

export interface SessionPage {
  sessionIds: string[];
  /** Live sessions in all (at the time of the call). */
  totalCount: number;
  /** undefined: this was the last page. */
  nextCursor: string | undefined;
}

export interface OnlineUsersQuery {
  cursor: string | undefined;
  limit: number;
  role: string | undefined;
}

export interface OnlineUser {
  userId: string;
  /** Every role the user's sessions hold. */
  roles: string[];
  sessionCount: number;
}

export interface OnlineUsersPage {
  users: OnlineUser[];
  nextCursor: string | undefined;
}

export interface RegistryStats {
  totalActiveSessions: number;
  onlineUsers: number;
  /** Sessions per transport (`tcp`, `ws`). */
  byTransport: Record<string, number>;
  /** Per live instance: its sessions and distinct users. */
  perInstance: Record<string, { sessions: number; users: number }>;
}

/**
 * Online users page by page, in user-id order, from the full list and a per-user lookup:
 * the cursor is the last user id returned, so users coming and going between pages never
 * shift the others. Both registries use it.
 */
export async function pageOnlineUsers(userIds: readonly string[], sessionsOf: (userId: string) => Promise<SessionRecord[]>, query: OnlineUsersQuery): Promise<OnlineUsersPage> {
  const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, 'u:');
  const sorted = [...userIds].sort().filter((id) => after === undefined || id > after);
  const users: OnlineUser[] = [];
  let index = 0;
  while (index < sorted.length && users.length < query.limit) {
    // Looked up a page at a time: a role filter may skip many users.
    const batch = sorted.slice(index, index + Math.max(query.limit - users.length, 16));
    const records = await Promise.all(batch.map((id) => sessionsOf(id)));
    for (let i = 0; i < batch.length && users.length < query.limit; i++) {
      index++;
      const sessions = records[i]!;
      if (sessions.length === 0) continue; // went offline meanwhile
      const roles = [...new Set(sessions.flatMap((s) => s.roles))];
      if (query.role !== undefined && !roles.includes(query.role)) continue;
      users.push({ userId: batch[i]!, roles, sessionCount: sessions.length });
    }
  }
  return { users, nextCursor: index < sorted.length && index > 0 ? encodeCursor('u:', sorted[index - 1]!) : undefined };
}

/** A cursor this registry never issued (or one of another listing). */
export class InvalidCursorError extends Error {
  constructor() {
    super('not a cursor this listing returned');
    this.name = 'InvalidCursorError';
  }
}

/**
 * Cursors are opaque to callers: a kind tag and a value, base64url, so any id travels
 * safely in a query string and a cursor of one listing is refused by another.
 */
export function encodeCursor(kind: string, value: string): string {
  return Buffer.from(kind + value, 'utf8').toString('base64url');
}

/** The value of a cursor issued by encodeCursor(kind, …); InvalidCursorError otherwise. */
export function decodeCursor(cursor: string, kind: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw new InvalidCursorError();
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!text.startsWith(kind)) throw new InvalidCursorError();
  return text.slice(kind.length);
}

/**
 * The registry cannot answer now (Redis unreachable). A decision that needs it (a session
 * limit) cannot be made; the policy link refuses the CONNECT with UNAVAILABLE.
 */
export class RegistryUnavailableError extends Error {
  constructor(cause: unknown) {
    super(`session registry unavailable: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'RegistryUnavailableError';
  }
}
