// Where a contract suite runs its Redis implementations: a single real redis-server, and a
// real 3-master Redis Cluster (test/helpers/redis.ts). Each subject a suite makes gets a key
// prefix of its own, so subjects share a server without seeing each other's keys.

import type { RedisConfig } from '../../src/config';
import { startRedis, startRedisCluster } from '../helpers/redis';

export interface RedisEnvironment {
  readonly name: string;
  /** A configuration with a prefix no other subject of this run uses. */
  config(): RedisConfig;
  stop(): Promise<void>;
}

export type EnvironmentKind = 'single' | 'cluster';
export const REDIS_KINDS: readonly EnvironmentKind[] = ['single', 'cluster'];

let prefixSeq = 0;

export async function startEnvironment(kind: EnvironmentKind): Promise<RedisEnvironment> {
  const base = { sessionTtlSeconds: 600, instanceHeartbeatMs: 60_000 };
  if (kind === 'single') {
    const server = await startRedis();
    return {
      name: 'a single Redis',
      config: () => ({ ...base, url: server.url, clusterNodes: undefined, prefix: `c${++prefixSeq}:` }),
      stop: () => server.stop(),
    };
  }
  const cluster = await startRedisCluster();
  return {
    name: 'a 3-master Redis Cluster',
    config: () => ({ ...base, url: undefined, clusterNodes: cluster.servers.map((s) => ({ host: '127.0.0.1', port: s.port })), prefix: `c${++prefixSeq}:` }),
    stop: () => cluster.stop(),
  };
}
