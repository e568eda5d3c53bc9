// Revocations in Redis (`auth:{userId}`, a hash with revokedAt in epoch ms), so a logout on
// one instance is honoured by all. The key outlives every token it must refuse: its TTL is
// REVOCATION_TTL_SECONDS, refreshed by each logout. A later logout never moves it back.
//
// Each instance also remembers the revocations it made or heard of (the logout's control
// message carries revokedAt): while Redis is unreachable, or after it restarted empty, those
// still refuse the revoked tokens, and a token CONNECT is not refused for want of Redis.

import { MemoryRevocations } from '../auth/revocation';
import type { RevocationStore } from '../auth/revocation';
import type { RedisKeys } from './keys';
import { LuaScript } from './lua';
import type { RedisConnection } from './redis-client';

export class RedisRevocations implements RevocationStore {
  private readonly redis: RedisConnection;
  private readonly keys: RedisKeys;
  private readonly ttlSeconds: number;

  private readonly known: MemoryRevocations;
  private readonly revokeScript: LuaScript;

  constructor(redis: RedisConnection, keys: RedisKeys, ttlSeconds: number) {
    this.redis = redis;
    this.keys = keys;
    this.ttlSeconds = ttlSeconds;
    this.known = new MemoryRevocations(ttlSeconds * 1000);
    this.revokeScript = new LuaScript(redis, 'revocation-revoke', [1]);
  }

  /** A revocation another instance made (heard on the control channel). */
  remember(userId: string, atMs: number): void {
    void this.known.revoke(userId, atMs);
  }

  async revoke(userId: string, atMs: number): Promise<void> {
    this.remember(userId, atMs);
    await this.revokeScript.run([this.keys.auth(userId)], [atMs, this.ttlSeconds]);
  }

  async revokedAt(userId: string): Promise<number | undefined> {
    const known = await this.known.revokedAt(userId);
    let stored: string | null;
    try {
      stored = await this.redis.hget(this.keys.auth(userId), 'revokedAt');
    } catch {
      return known; // Redis unreachable: what this instance knows still applies
    }
    const storedMs = stored === null ? NaN : Number(stored);
    if (!Number.isFinite(storedMs)) return known; // none, or not a number this code wrote
    return Math.max(storedMs, known ?? 0);
  }
}
