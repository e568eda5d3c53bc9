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
import type { RedisConnection } from './redis-client';

const REVOKE_LUA = `
local current = tonumber(redis.call('HGET', KEYS[1], 'revokedAt') or '0')
if tonumber(ARGV[1]) > current then redis.call('HSET', KEYS[1], 'revokedAt', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
`;

export class RedisRevocations implements RevocationStore {
  private readonly redis: RedisConnection;
  private readonly keys: RedisKeys;
  private readonly ttlSeconds: number;

  private readonly known: MemoryRevocations;

  constructor(redis: RedisConnection, keys: RedisKeys, ttlSeconds: number) {
    this.redis = redis;
    this.keys = keys;
    this.ttlSeconds = ttlSeconds;
    this.known = new MemoryRevocations(ttlSeconds * 1000);
    redis.defineCommand('stompdRevoke', { numberOfKeys: 1, lua: REVOKE_LUA });
  }

  /** A revocation another instance made (heard on the control channel). */
  remember(userId: string, atMs: number): void {
    void this.known.revoke(userId, atMs);
  }

  async revoke(userId: string, atMs: number): Promise<void> {
    this.remember(userId, atMs);
    const revoke = (this.redis as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>).stompdRevoke!.bind(this.redis);
    await revoke(this.keys.auth(userId), atMs, this.ttlSeconds);
  }

  async revokedAt(userId: string): Promise<number | undefined> {
    const known = await this.known.revokedAt(userId);
    let stored: string | null;
    try {
      stored = await this.redis.hget(this.keys.auth(userId), 'revokedAt');
    } catch {
      return known; // Redis unreachable: what this instance knows still applies
    }
    if (stored === null) return known;
    return Math.max(Number(stored), known ?? 0);
  }
}
