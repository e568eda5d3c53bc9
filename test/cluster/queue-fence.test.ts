// RedisQueues alone on a real redis-server: an instance whose generation was reaped (it
// stalled past its liveness TTL and a survivor gave back what it held) takes nothing and
// registers no consumer until it has joined again — a take in that window would leave entries
// pending on a consumer whose reap is over, for good if the instance then died.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import pino from 'pino';
import { Message } from '../../src/broker/message';
import { Subscription } from '../../src/broker/subscription';
import type { Subscriber } from '../../src/broker/subscription';
import { RedisKeys } from '../../src/cluster/keys';
import { connectRedis, whenReady } from '../../src/cluster/redis-client';
import type { RedisConnection } from '../../src/cluster/redis-client';
import { QUEUE_GROUP, RedisQueues } from '../../src/cluster/redis-queues';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { until } from '../helpers/until';

const noSignals = { listen: () => undefined, unlisten: () => undefined, signal: () => undefined };

/** A session that takes whatever it is written (deliveries are counted on the subscription). */
class QuietSubscriber implements Subscriber {
  readonly userId = 'fence';
  readonly version = '1.2' as const;
  isWritable = true;
  readonly isBehind = false;
  readonly acceptedBytes = 0;
  isFlowStalled = false;
  private ackSeq = 0;
  constructor(readonly sessionId: string) {}
  write(): void {}
  nextAckId(): string {
    return `${this.sessionId}-${++this.ackSeq}`;
  }
  onSlowConsumer(): boolean {
    return true;
  }
}

describe('RedisQueues: takes and registrations are fenced by the generation', { timeout: 60000 }, () => {
  let server: RedisServer;
  let redis: Redis;
  const connections: RedisConnection[] = [];
  const all: RedisQueues[] = [];
  const keys = new RedisKeys('qf:');

  before(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
  });

  after(async () => {
    await Promise.all(all.map((q) => q.stop(2000)));
    for (const c of connections) c.disconnect();
    redis?.disconnect();
    await server?.stop();
  });

  const queuesFor = async (instanceId: string, generation: () => string): Promise<RedisQueues> => {
    const connection = connectRedis({ url: server.url, clusterNodes: undefined, prefix: 'qf:', sessionTtlSeconds: 60, instanceHeartbeatMs: 1000 }, { name: instanceId });
    connections.push(connection);
    await whenReady(connection, 10_000);
    const queues = new RedisQueues({
      redis: connection,
      keys,
      instanceId,
      maxQueueMessages: 1000,
      maxQueues: 100,
      signals: noSignals,
      logger: pino({ level: 'silent' }),
      fence: () => ({ key: keys.instance(instanceId), generation: generation() }),
    });
    all.push(queues);
    return queues;
  };
  const publish = async (queues: RedisQueues, body: string): Promise<void> => {
    const m = new Message(`m-${body}`, '/queue/fenced', '/queue/fenced', [], Buffer.from(body));
    assert.equal(await queues.admit([m]), undefined);
    assert.equal(await queues.publish(m), undefined);
  };
  const pendingOn = async (consumer: string): Promise<number> => {
    const summary = (await redis.xpending(keys.queue('/queue/fenced'), QUEUE_GROUP)) as [number, string, string, [string, string][] | null];
    return summary[3]?.find(([name]) => name === consumer)?.[1] === undefined ? 0 : Number(summary[3].find(([name]) => name === consumer)![1]);
  };

  it('after the reap the stalled generation takes nothing and lists nothing; once it joined again it takes', async () => {
    let generation = '1';
    await redis.set(keys.instance('i1'), '1');
    const stalled = await queuesFor('i1', () => generation);
    const publisher = await queuesFor('p', () => '');
    const subscription = new Subscription(new QuietSubscriber('s1'), 'sub', '/queue/fenced', 'client-individual', 100);
    const second = new Subscription(new QuietSubscriber('s2'), 'sub', '/queue/fenced', 'client-individual', 100);
    const delivered = (): number => subscription.pending.size + second.pending.size; // nothing is acknowledged here
    stalled.subscribe(subscription);
    await publish(publisher, 'before');
    await until(() => delivered() === 1, 'the message taken by the live generation');
    assert.deepEqual(await redis.smembers(keys.instanceQueues('i1')), ['/queue/fenced'], 'listed for the reaper by the registration');

    // The instance stalls: its liveness key expires and a survivor reaps generation 1.
    await redis.del(keys.instance('i1'));
    const reaper = await queuesFor('r', () => '');
    assert.equal(await reaper.reapInstance('i1'), 1, 'the held message is given back');
    await publish(publisher, 'during');
    // The resumed instance has not checked yet: its polls and a new consumer's registration go out.
    stalled.subscribe(second);
    await new Promise((resolve) => setTimeout(resolve, 1500)); // three polls
    assert.equal(delivered(), 1, 'nothing more delivered by the reaped generation');
    assert.equal(await pendingOn('i1'), 1, 'only the entry the reap gave back is still under its name (until a survivor claims it): "during" was not taken');
    assert.equal(await redis.llen(keys.queueRedeliver('/queue/fenced')), 1, 'and that entry waits on the redeliver list, not claimed back by the reaped generation');
    assert.equal(await redis.hexists(keys.queueConsumers('/queue/fenced'), 'i1'), 0, 'its consumers are not counted again');
    assert.equal(await redis.exists(keys.instanceQueues('i1')), 0, 'its list does not come back');

    // It joins again under generation 2: it registers and takes.
    generation = '2';
    await redis.set(keys.instance('i1'), '2');
    await until(async () => (await redis.hexists(keys.queueConsumers('/queue/fenced'), 'i1')) === 1, 'registered again');
    await until(() => delivered() === 2, 'a message taken by the new generation');
  });
});
