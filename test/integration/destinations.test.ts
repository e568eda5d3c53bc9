// Topics, queues and destination prefixes as clients observe them.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { harness } from '../helpers/harness';
import { header } from '../helpers/raw-client';
import type { RawClient } from '../helpers/raw-client';

const h = harness();
const broker = (overrides: Record<string, string> = {}): Promise<RunningServer> => h.broker(overrides);
const connected = (b: RunningServer): Promise<RawClient> => h.connected(b);

async function subscribe(c: RawClient, id: string, destination: string, ack = 'auto'): Promise<void> {
  c.sendFrame('SUBSCRIBE', { id, destination, ack, receipt: `sub-${id}` });
  await c.expect('RECEIPT');
}

describe('topics', { timeout: 10000 }, () => {
  it('every subscriber gets a copy; a topic without subscribers drops the message', async () => {
    const b = await broker();
    const subs = await Promise.all([1, 2, 3].map(() => connected(b)));
    for (const [i, s] of subs.entries()) await subscribe(s, `t${i}`, '/topic/news');
    const other = await connected(b);
    await subscribe(other, 'o', '/topic/sport');
    const pub = await connected(b);
    pub.sendFrame('SEND', { destination: '/topic/empty' }, 'lost');
    pub.sendFrame('SEND', { destination: '/topic/news' }, 'headline');
    for (const [i, s] of subs.entries()) {
      const message = await s.expect('MESSAGE');
      assert.equal(message.body.toString(), 'headline');
      assert.equal(header(message, 'subscription'), `t${i}`);
    }
    await other.expectSilence(100);
    const late = await connected(b);
    await subscribe(late, 'l', '/topic/empty');
    await late.expectSilence(100);
  });

  it('two subscriptions of one session each get a copy', async () => {
    const b = await broker();
    const s = await connected(b);
    await subscribe(s, 'a', '/topic/twice');
    await subscribe(s, 'b', '/topic/twice');
    const pub = await connected(b);
    pub.sendFrame('SEND', { destination: '/topic/twice' }, 'x');
    const ids = [await s.expect('MESSAGE'), await s.expect('MESSAGE')].map((m) => header(m, 'subscription')).sort();
    assert.deepEqual(ids, ['a', 'b']);
  });

  it('after UNSUBSCRIBE nothing more arrives', async () => {
    const b = await broker();
    const s = await connected(b);
    await subscribe(s, 'u', '/topic/unsub');
    s.sendFrame('UNSUBSCRIBE', { id: 'u', receipt: 'gone' });
    await s.expect('RECEIPT');
    const pub = await connected(b);
    pub.sendFrame('SEND', { destination: '/topic/unsub' }, 'x');
    await s.expectSilence(150);
  });
});

describe('queues', { timeout: 10000 }, () => {
  it('each message goes to one consumer, round robin', async () => {
    const b = await broker();
    const consumers = await Promise.all([1, 2, 3].map(() => connected(b)));
    for (const [i, c] of consumers.entries()) await subscribe(c, `q${i}`, '/queue/work');
    const pub = await connected(b);
    for (let n = 0; n < 9; n++) pub.sendFrame('SEND', { destination: '/queue/work' }, `job${n}`);
    for (const c of consumers) await c.waitUntil(() => c.frames.length >= 1 + 3, 3000, 'three jobs');
    const seen = consumers.flatMap((c) => c.frames.filter((f) => f.command === 'MESSAGE').map((f) => f.body.toString()));
    assert.equal(seen.length, 9);
    assert.deepEqual([...seen].sort(), Array.from({ length: 9 }, (_, n) => `job${n}`).sort());
    for (const c of consumers) await c.expectSilence(50);
  });

  it('messages sent without subscribers are kept until one subscribes, bounded, oldest dropped and counted', async () => {
    const b = await broker({ MAX_QUEUE_MESSAGES: '3' });
    const pub = await connected(b);
    for (let n = 1; n <= 5; n++) pub.sendFrame('SEND', { destination: '/queue/kept' }, `m${n}`);
    pub.sendFrame('SEND', { destination: '/queue/kept', receipt: 'sent' }, 'm6');
    await pub.expect('RECEIPT');
    assert.equal(b.router.queueDepth('/queue/kept'), 3);
    assert.equal(b.router.stats().droppedFromQueues, 3);
    const late = await connected(b);
    await subscribe(late, 'k', '/queue/kept');
    const bodies = [await late.expect('MESSAGE'), await late.expect('MESSAGE'), await late.expect('MESSAGE')].map((m) => m.body.toString());
    assert.deepEqual(bodies, ['m4', 'm5', 'm6']);
    assert.equal(b.router.queueDepth('/queue/kept'), 0);
  });

  it('unacked messages go to another consumer when theirs unsubscribes', async () => {
    const b = await broker();
    const first = await connected(b);
    await subscribe(first, 'f', '/queue/handover', 'client');
    const pub = await connected(b);
    pub.sendFrame('SEND', { destination: '/queue/handover' }, 'pending');
    await first.expect('MESSAGE');
    const second = await connected(b);
    await subscribe(second, 's', '/queue/handover', 'client');
    first.sendFrame('UNSUBSCRIBE', { id: 'f' });
    const message = await second.expect('MESSAGE');
    assert.equal(message.body.toString(), 'pending');
    assert.equal(header(message, 'redelivered'), 'true');
  });

  it('a NACK by the only consumer comes back to it', async () => {
    const b = await broker();
    const only = await connected(b);
    await subscribe(only, 'o', '/queue/alone', 'client-individual');
    const pub = await connected(b);
    pub.sendFrame('SEND', { destination: '/queue/alone' }, 'retry me');
    const first = await only.expect('MESSAGE');
    only.sendFrame('NACK', { id: header(first, 'ack')! });
    const again = await only.expect('MESSAGE');
    assert.equal(again.body.toString(), 'retry me');
    assert.notEqual(header(again, 'ack'), header(first, 'ack'));
  });
});

describe('destination prefixes', { timeout: 10000 }, () => {
  it('are configurable', async () => {
    const b = await broker({ TOPIC_PREFIX: '/exchange/', QUEUE_PREFIX: '/amq/queue/' });
    const s = await connected(b);
    await subscribe(s, 'e', '/exchange/prices');
    await subscribe(s, 'q', '/amq/queue/orders');
    const pub = await connected(b);
    pub.sendFrame('SEND', { destination: '/exchange/prices' }, 'p');
    pub.sendFrame('SEND', { destination: '/amq/queue/orders' }, 'o');
    assert.equal((await s.expect('MESSAGE')).body.toString(), 'p');
    assert.equal((await s.expect('MESSAGE')).body.toString(), 'o');
    pub.sendFrame('SEND', { destination: '/topic/prices' }, 'x');
    assert.match(header(await pub.expect('ERROR'), 'message') ?? '', /^UNKNOWN_DESTINATION/);
  });

  it('a bare prefix is no destination', async () => {
    const b = await broker();
    const c = await connected(b);
    c.sendFrame('SEND', { destination: '/queue/' }, 'x');
    assert.match(header(await c.expect('ERROR'), 'message') ?? '', /^UNKNOWN_DESTINATION/);
  });
});
