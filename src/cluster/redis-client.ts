// ioredis connections for one instance: a single Redis (REDIS_URL) or a Redis Cluster
// (REDIS_CLUSTER_NODES). Commands fail fast while Redis is away (no offline queue: a
// publish during an outage is dropped and counted, not buffered without bound), and the
// client reconnects by itself with a short capped back-off.

import Redis, { Cluster } from 'ioredis';
import type { ClusterOptions, RedisOptions } from 'ioredis';
import type { RedisConfig } from '../config';

export type RedisConnection = Redis | Cluster;

/** Reconnect quickly: a broker that waits long after Redis returns stays degraded for nothing. */
const retryStrategy = (times: number): number => Math.min(50 * 2 ** Math.min(times, 5), 1000);

/** How long a command may go unanswered before it fails. */
const COMMAND_TIMEOUT_MS = 3000;

export interface ConnectionOptions {
  /** CLIENT SETNAME, to find an instance's connections in CLIENT LIST. */
  name: string;
  /** Sharded pub/sub (SSUBSCRIBE) on a Cluster: one subscriber connection per master. */
  isSubscriber?: boolean;
}

export function isCluster(connection: RedisConnection): connection is Cluster {
  return connection instanceof Cluster;
}

export function connectRedis(config: RedisConfig, options: ConnectionOptions): RedisConnection {
  const common: RedisOptions = {
    connectionName: options.name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResubscribe: true,
    // A command sent but unanswered when the connection dropped may have run: sending it
    // again could store a queue message twice. It fails instead; callers reconcile.
    autoResendUnfulfilledCommands: false,
    lazyConnect: false,
    // A connection cut without a reset (a black hole) answers nothing: a command fails after
    // this instead of holding a CONNECT (or a reap) forever.
    commandTimeout: COMMAND_TIMEOUT_MS,
  };
  if (config.clusterNodes !== undefined) {
    const clusterOptions: ClusterOptions = {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      shardedSubscribers: options.isSubscriber === true,
      clusterRetryStrategy: retryStrategy,
      clusterNodeRetryStrategy: retryStrategy,
      redisOptions: { connectionName: options.name, maxRetriesPerRequest: 0, autoResubscribe: true, autoResendUnfulfilledCommands: false, commandTimeout: COMMAND_TIMEOUT_MS },
    };
    return new Cluster(config.clusterNodes, clusterOptions);
  }
  return new Redis(config.url!, { ...common, retryStrategy, enableAutoPipelining: true });
}

/** Resolves once the connection can take commands (or rejects after `timeoutMs`). */
export function whenReady(connection: RedisConnection, timeoutMs: number): Promise<void> {
  if (connection.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      connection.off('ready', onReady);
      reject(new Error(`Redis not ready within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    connection.once('ready', onReady);
  });
}
