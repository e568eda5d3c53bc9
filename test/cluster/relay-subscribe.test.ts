// The relay's channel subscriptions on a real redis-server: a SUBSCRIBE that fails while the
// subscriber connection stays up (a command timeout under load, a reply lost in a reconnect
// race) is retried until it holds, so a destination is never left silently unsubscribed until
// the next reconnect. The failure is injected by making the connection's first subscribe
// call reject; Redis and the connection are real.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import pino from 'pino';
import { Message } from '../../src/broker/message';
import { RedisKeys } from '../../src/cluster/keys';
import { RedisRelay } from '../../src/cluster/redis-relay';
import type { Envelope } from '../../src/cluster/envelope';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { until } from '../helpers/until';

describe('relay subscriptions (one redis-server)', () => {
  let redis: RedisServer;
  const connections: Redis[] = [];

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    for (const c of connections) c.disconnect();
    await redis.stop();
  });

  it('a subscribe that fails on a live connection is retried until the channel is subscribed', async () => {
    const publisher = new Redis(redis.url, { lazyConnect: false });
    const subscriber = new Redis(redis.url, { lazyConnect: false });
    connections.push(publisher, subscriber);
    await until(() => publisher.status === 'ready' && subscriber.status === 'ready', 'both connections');
    let failuresLeft = 2;
    const realSubscribe = subscriber.subscribe.bind(subscriber) as (...channels: string[]) => Promise<unknown>;
    (subscriber as unknown as { subscribe: (...channels: string[]) => Promise<unknown> }).subscribe = (...channels: string[]) => {
      if (failuresLeft > 0) {
        failuresLeft--;
        return Promise.reject(new Error('Command timed out'));
      }
      return realSubscribe(...channels);
    };
    const heard: Envelope[] = [];
    const keys = new RedisKeys('t:');
    const relay = new RedisRelay({
      publisher,
      subscriber,
      keys,
      instanceId: 'listener',
      logger: pino({ level: 'silent' }),
      deliver: (e) => heard.push(e),
      onControl: () => undefined,
    });
    await relay.setInterest('/topic/retried', true); // resolves on the first (failed) attempt
    const channel = keys.destinationChannel('/topic/retried');
    await until(async () => Number((await publisher.pubsub('NUMSUB', channel))[1]) === 1, 'the channel subscribed after the retries');
    assert.equal(failuresLeft, 0, 'both injected failures were met');
    // And it carries messages from other instances.
    const sender = new RedisRelay({ publisher, subscriber: publisher, keys, instanceId: 'sender', logger: pino({ level: 'silent' }), deliver: () => undefined, onControl: () => undefined });
    sender.publish(new Message('m1', '/topic/retried', '/topic/retried', [], Buffer.from('hi')));
    await until(() => heard.length === 1, 'the message through the retried subscription');
    assert.equal(heard[0]!.body.toString(), 'hi');
  });

  it('a channel no longer wanted is not subscribed by a retry', async () => {
    const publisher = new Redis(redis.url);
    const subscriber = new Redis(redis.url);
    connections.push(publisher, subscriber);
    await until(() => publisher.status === 'ready' && subscriber.status === 'ready', 'both connections');
    let failuresLeft = 1;
    const realSubscribe = subscriber.subscribe.bind(subscriber) as (...channels: string[]) => Promise<unknown>;
    (subscriber as unknown as { subscribe: (...channels: string[]) => Promise<unknown> }).subscribe = (...channels: string[]) => {
      if (failuresLeft > 0) {
        failuresLeft--;
        return Promise.reject(new Error('Command timed out'));
      }
      return realSubscribe(...channels);
    };
    const keys = new RedisKeys('u:');
    const relay = new RedisRelay({ publisher, subscriber, keys, instanceId: 'l', logger: pino({ level: 'silent' }), deliver: () => undefined, onControl: () => undefined });
    await relay.setInterest('/topic/gone', true);
    void relay.setInterest('/topic/gone', false); // a loss of interest returns nothing to wait for
    await new Promise((resolve) => setTimeout(resolve, 500)); // past the first retry's delay
    assert.equal(Number((await publisher.pubsub('NUMSUB', keys.destinationChannel('/topic/gone')))[1]), 0);
  });
});
