// The in-memory SessionRegistry of a single instance. Every operation completes before it
// returns (the promises are already settled), which makes bind atomic for free.
// Sessions here do not expire: one lives as long as its connection (refreshSession answers
// ttlSeconds null and only notes lastSeenAt).

import { decideBind } from './bind-policy';
import { InvalidCursorError, decodeCursor, encodeCursor, pageOnlineUsers } from './registry';
import type { BindPolicy, BindResult, OnlineUsersPage, OnlineUsersQuery, RegistryStats, SessionPage, SessionRecord, SessionRegistry, SubscriptionNote } from './registry';

export class MemoryRegistry implements SessionRegistry {
  private readonly sessions = new Map<string, SessionRecord>();
  /** userId → sessionIds, in binding order (oldest first). */
  private readonly byUser = new Map<string, Set<string>>();
  /** sessionId → binding sequence number: `sessions` iterates in this order, cursors name it. */
  private readonly seqOf = new Map<string, number>();
  private lastSeq = 0;

  /** Holders are in binding order and the newcomer binds last: it is always the newest. */
  bind(record: SessionRecord, policy: BindPolicy): Promise<BindResult> {
    this.remove(record.sessionId); // binding a bound session again counts it once
    const decision = decideBind(this.recordsOf(record.userId), () => true, policy);
    if (decision.verdict === 'refused') return Promise.resolve({ isBound: false, holders: decision.holders });
    if (decision.verdict === 'lost') return Promise.resolve({ isBound: false, holders: [] });
    for (const old of decision.evicted) this.remove(old.sessionId);
    this.add(record);
    return Promise.resolve({ isBound: true, evicted: decision.evicted });
  }

  unbind(sessionId: string): Promise<void> {
    this.remove(sessionId);
    return Promise.resolve();
  }

  get(sessionId: string): Promise<SessionRecord | undefined> {
    return Promise.resolve(this.sessions.get(sessionId));
  }

  sessionsOf(userId: string): Promise<SessionRecord[]> {
    return Promise.resolve(this.recordsOf(userId));
  }

  onlineUsers(): Promise<string[]> {
    return Promise.resolve([...this.byUser.keys()]);
  }

  // async: a bad cursor rejects like the Redis registry's does.
  async listSessions(cursor: string | undefined, limit: number): Promise<SessionPage> {
    const after = cursor === undefined ? 0 : Number(decodeCursor(cursor, 'm:'));
    if (!Number.isSafeInteger(after)) throw new InvalidCursorError();
    const sessionIds: string[] = [];
    let hasMore = false;
    for (const [sessionId, seq] of this.seqOf) {
      if (!(seq > after)) continue;
      if (sessionIds.length === limit) {
        hasMore = true;
        break;
      }
      sessionIds.push(sessionId);
    }
    const last = sessionIds.at(-1);
    return {
      sessionIds,
      totalCount: this.sessions.size,
      nextCursor: hasMore && last !== undefined ? encodeCursor('m:', String(this.seqOf.get(last))) : undefined,
    };
  }

  onlineUsersPage(query: OnlineUsersQuery): Promise<OnlineUsersPage> {
    return pageOnlineUsers([...this.byUser.keys()], (userId) => Promise.resolve(this.recordsOf(userId)), query);
  }

  stats(): Promise<RegistryStats> {
    const byTransport: Record<string, number> = {};
    const perInstance: Record<string, { sessions: number; users: number }> = {};
    const usersPerInstance = new Map<string, Set<string>>();
    for (const record of this.sessions.values()) {
      byTransport[record.transport] = (byTransport[record.transport] ?? 0) + 1;
      const entry = (perInstance[record.instanceId] ??= { sessions: 0, users: 0 });
      entry.sessions++;
      let users = usersPerInstance.get(record.instanceId);
      if (users === undefined) usersPerInstance.set(record.instanceId, (users = new Set()));
      users.add(record.userId);
      entry.users = users.size;
    }
    return Promise.resolve({ totalActiveSessions: this.sessions.size, onlineUsers: this.byUser.size, byTransport, perInstance });
  }

  refreshSession(sessionId: string, now = Date.now()): Promise<{ record: SessionRecord; ttlSeconds: null } | undefined> {
    const record = this.sessions.get(sessionId);
    if (record === undefined) return Promise.resolve(undefined);
    const refreshed = { ...record, lastSeenAt: now };
    this.sessions.set(sessionId, refreshed);
    return Promise.resolve({ record: refreshed, ttlSeconds: null });
  }

  noteSubscriptions(sessionId: string, subscriptions: readonly SubscriptionNote[]): Promise<void> {
    const record = this.sessions.get(sessionId);
    if (record !== undefined) this.sessions.set(sessionId, { ...record, subscriptions });
    return Promise.resolve();
  }

  private recordsOf(userId: string): SessionRecord[] {
    const ids = this.byUser.get(userId);
    return ids === undefined ? [] : [...ids].map((id) => this.sessions.get(id)!);
  }

  private add(record: SessionRecord): void {
    this.sessions.set(record.sessionId, record);
    this.seqOf.set(record.sessionId, ++this.lastSeq);
    let ids = this.byUser.get(record.userId);
    if (ids === undefined) {
      ids = new Set();
      this.byUser.set(record.userId, ids);
    }
    ids.add(record.sessionId);
  }

  private remove(sessionId: string): void {
    const record = this.sessions.get(sessionId);
    if (record === undefined) return;
    this.sessions.delete(sessionId);
    this.seqOf.delete(sessionId);
    const ids = this.byUser.get(record.userId);
    ids?.delete(sessionId);
    if (ids?.size === 0) this.byUser.delete(record.userId);
  }
}
