// Revocations in Redis (`auth:{userId}`, a hash with revokedAt in epoch ms), so a logout on
// one instance is honoured by all. The key outlives every token it must refuse: its TTL is
// REVOCATION_TTL_SECONDS, refreshed by each logout. A later logout never moves it back.

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

  constructor(redis: RedisConnection, keys: RedisKeys, ttlSeconds: number) {
    this.redis = redis;
    this.keys = keys;
    this.ttlSeconds = ttlSeconds;
    redis.defineCommand('stompdRevoke', { numberOfKeys: 1, lua: REVOKE_LUA });
  }

  async revoke(userId: string, atMs: number): Promise<void> {
    const revoke = (this.redis as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>).stompdRevoke!.bind(this.redis);
    await revoke(this.keys.auth(userId), atMs, this.ttlSeconds);
  }

  async revokedAt(userId: string): Promise<number | undefined> {
    const value = await this.redis.hget(this.keys.auth(userId), 'revokedAt');
    return value === null ? undefined : Number(value);
  }
}
