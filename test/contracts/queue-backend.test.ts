// The QueueBackend contract (queue-backend.contract.ts) against each implementation: the
// in-memory queues, RedisQueues on a real redis-server, and RedisQueues on a real 3-master
// Redis Cluster. Each backend is one instance alone: there is no other instance to wake, so
// its wake-up signals go nowhere (test/cluster/queues.test.ts covers several instances).

import { after, before, describe } from 'node:test';
import pino from 'pino';
import { MemoryQueues } from '../../src/broker/memory-queues';
import { RedisKeys } from '../../src/cluster/keys';
import { connectRedis, whenReady } from '../../src/cluster/redis-client';
import { RedisQueues } from '../../src/cluster/redis-queues';
import type { RedisConfig } from '../../src/config';
import { startRedis, startRedisCluster } from '../helpers/redis';
import type { RedisCluster, RedisServer } from '../helpers/redis';
import { queueBackendContract } from './queue-backend.contract';
import type { QueueBackendFactory } from './queue-backend.contract';

queueBackendContract({
  name: 'memory',
  limitsTotalBytes: true,
  create: async (limits) => ({ backend: new MemoryQueues(limits), close: async () => undefined }),
});

const noSignals = { listen: () => undefined, unlisten: () => undefined, signal: () => undefined };
let backendSeq = 0;

function redisFactory(name: string, config: () => RedisConfig): QueueBackendFactory {
  return {
    name,
    limitsTotalBytes: false,
    async create(limits) {
      const id = `contract-${++backendSeq}`;
      const redis = connectRedis(config(), { name: id });
      await whenReady(redis, 10_000);
      const queues = new RedisQueues({
        redis,
        keys: new RedisKeys(`${id}:`),
        instanceId: id,
        maxQueueMessages: limits.maxQueueMessages,
        maxQueues: limits.maxQueues,
        signals: noSignals,
        logger: pino({ level: 'silent' }),
      });
      return {
        backend: queues,
        close: async () => {
          await queues.stop(2000);
          redis.disconnect();
        },
      };
    },
  };
}

const redisConfig = (url: string | undefined, clusterNodes: { host: string; port: number }[] | undefined): RedisConfig => ({ url, clusterNodes, prefix: 'unused:', sessionTtlSeconds: 60, instanceHeartbeatMs: 1000 });

describe('on a single Redis', () => {
  let server: RedisServer;
  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    await server?.stop();
  });
  queueBackendContract(redisFactory('Redis', () => redisConfig(server.url, undefined)));
});

describe('on a 3-master Redis Cluster', () => {
  let cluster: RedisCluster;
  before(async () => {
    cluster = await startRedisCluster();
  });
  after(async () => {
    await cluster?.stop();
  });
  queueBackendContract(
    redisFactory('Redis Cluster', () =>
      redisConfig(
        undefined,
        cluster.servers.map((s) => ({ host: '127.0.0.1', port: s.port })),
      ),
    ),
  );
});
