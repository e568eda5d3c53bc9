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
  | { isBound: true; /** Sessions evicted to make room (mode replace), oldest first. */ evicted: SessionRecord[] }
  | { isBound: false; /** The user's sessions that hold the places. */ holders: SessionRecord[] };

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
