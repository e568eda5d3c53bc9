// The in-memory SessionRegistry of a single instance. Every operation completes before it
// returns (the promises are already settled), which makes bind atomic for free.

import type { BindPolicy, BindResult, SessionRecord, SessionRegistry } from './registry';

export class MemoryRegistry implements SessionRegistry {
  private readonly sessions = new Map<string, SessionRecord>();
  /** userId → sessionIds, in binding order (oldest first). */
  private readonly byUser = new Map<string, Set<string>>();

  bind(record: SessionRecord, policy: BindPolicy): Promise<BindResult> {
    const held = this.recordsOf(record.userId);
    if (held.length < policy.maxPerUser) {
      this.add(record);
      return Promise.resolve({ isBound: true, evicted: [] });
    }
    if (policy.mode === 'reject') return Promise.resolve({ isBound: false, holders: held });
    const evicted = held.slice(0, held.length - policy.maxPerUser + 1);
    for (const old of evicted) this.remove(old.sessionId);
    this.add(record);
    return Promise.resolve({ isBound: true, evicted });
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

  private recordsOf(userId: string): SessionRecord[] {
    const ids = this.byUser.get(userId);
    return ids === undefined ? [] : [...ids].map((id) => this.sessions.get(id)!);
  }

  private add(record: SessionRecord): void {
    this.sessions.set(record.sessionId, record);
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
    const ids = this.byUser.get(record.userId);
    ids?.delete(sessionId);
    if (ids?.size === 0) this.byUser.delete(record.userId);
  }
}
