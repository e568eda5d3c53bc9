// The Relay contract, one suite run against every implementation: the in-process hub
// (MemoryRelayHub), and RedisRelay on a single real Redis and on a real 3-master Redis
// Cluster (three instances each, every one with its own connections), so the implementations
// cannot drift. A message reaches every other interested instance unchanged (binary body,
// odd header names and values, empty fields), never its own instance nor an uninterested
// one; one instance's messages arrive in the order it published them; interest is in place
// once setInterest resolves, and can be lost and gained again.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { MemoryRelayHub } from '../../src/broker/memory-relay';
import { Message } from '../../src/broker/message';
import type { Relay } from '../../src/broker/relay';
import { RedisKeys } from '../../src/cluster/keys';
import { connectRedis, isCluster, whenReady } from '../../src/cluster/redis-client';
import type { RedisConnection } from '../../src/cluster/redis-client';
import { RedisRelay } from '../../src/cluster/redis-relay';
import type { Header } from '../../src/codec';
import { until } from '../helpers/until';
import { REDIS_KINDS, startEnvironment } from './environments';
import type { RedisEnvironment } from './environments';

/** A message as it arrived: what the receiving router would build. */
interface Received {
  id: string;
  destination: string;
  routeKey: string;
  headers: Header[];
  body: number[];
}

interface Instance {
  relay: Relay;
  received: Received[];
}

interface Subject {
  instances: [Instance, Instance, Instance];
  close(): Promise<void>;
}

let seq = 0;
const fresh = (what: string): string => `${what}-${++seq}`;

function received(id: string, destination: string, routeKey: string, headers: readonly Header[], body: Buffer): Received {
  return { id, destination, routeKey, headers: headers.map(([n, v]) => [n, v]), body: [...body] };
}

function relayContract(name: string, make: () => Promise<Subject>): void {
  describe(`Relay contract: ${name}`, { timeout: 60000 }, () => {
    let s: Subject;
    before(async () => {
      s = await make();
    });
    after(() => s?.close());

    const idsOf = (instance: Instance, routeKey: string): string[] => instance.received.filter((m) => m.routeKey === routeKey).map((m) => m.id);

    it('reaches every other interested instance unchanged; never its own, nor an uninterested one', async () => {
      const [a, b, c] = s.instances;
      const topic = `/topic/${fresh('t')}`;
      const other = `/topic/${fresh('other')}`;
      await a.relay.setInterest(topic, true);
      await b.relay.setInterest(topic, true);
      await c.relay.setInterest(other, true);
      const headers: Header[] = [
        ['content-type', 'application/octet-stream'],
        ['x-odd: name', 'line\nbreak\\and:colon'],
        ['é€😀', ''],
        ['', 'empty name'],
        ['x-dup', '1'],
        ['x-dup', '2'],
      ];
      const body = Buffer.from([0, 1, 2, 0xff, 0xfe, 0, 10, 13, 0]);
      const id = fresh('m');
      a.relay.publish(new Message(id, topic, topic, headers, body));
      const marker = fresh('m');
      a.relay.publish(new Message(marker, other, other, [], Buffer.alloc(0)));
      await until(() => idsOf(b, topic).length === 1 && idsOf(c, other).length === 1, 'the message at b and the marker at c');
      assert.deepEqual(
        b.received.find((m) => m.id === id),
        received(id, topic, topic, headers, body),
      );
      assert.deepEqual(
        c.received.find((m) => m.id === marker),
        received(marker, other, other, [], Buffer.alloc(0)),
      );
      assert.deepEqual(idsOf(a, topic), [], 'not its own');
      assert.deepEqual(idsOf(c, topic), [], 'not an uninterested instance');
    });

    it('delivers under its route key with its destination intact (a user destination)', async () => {
      const [a, b] = s.instances;
      const routeKey = `/user/${fresh('u')}/queue/inbox`;
      await b.relay.setInterest(routeKey, true);
      const id = fresh('m');
      a.relay.publish(new Message(id, '/user/queue/inbox', routeKey, [['k', 'v']], Buffer.from('hi')));
      await until(() => idsOf(b, routeKey).length === 1, 'the user message');
      assert.deepEqual(
        b.received.find((m) => m.id === id),
        received(id, '/user/queue/inbox', routeKey, [['k', 'v']], Buffer.from('hi')),
      );
    });

    it("one instance's messages arrive in the order it published them", async () => {
      const [a, b, c] = s.instances;
      const topic = `/topic/${fresh('order')}`;
      await b.relay.setInterest(topic, true);
      await c.relay.setInterest(topic, true);
      const sent = Array.from({ length: 200 }, () => fresh('m'));
      for (const id of sent) a.relay.publish(new Message(id, topic, topic, [], Buffer.from(id)));
      await until(() => idsOf(b, topic).length === sent.length && idsOf(c, topic).length === sent.length, 'every message at b and c');
      assert.deepEqual(idsOf(b, topic), sent);
      assert.deepEqual(idsOf(c, topic), sent);
    });

    it('interest lost and gained again: what is published once it is back arrives', async () => {
      const [a, b] = s.instances;
      const topic = `/topic/${fresh('again')}`;
      await b.relay.setInterest(topic, true);
      await b.relay.setInterest(topic, false);
      await b.relay.setInterest(topic, true);
      const id = fresh('m');
      a.relay.publish(new Message(id, topic, topic, [], Buffer.from('back')));
      await until(() => idsOf(b, topic).includes(id), 'the message after interest came back');
      assert.equal(idsOf(b, topic).filter((m) => m === id).length, 1, 'once');
    });
  });
}

relayContract('MemoryRelayHub', async () => {
  const hub = new MemoryRelayHub();
  const instances = ['a', 'b', 'c'].map((id): Instance => {
    const instance: Instance = { relay: undefined as unknown as Relay, received: [] };
    instance.relay = hub.join(id, (m) => instance.received.push(received(m.id, m.destination, m.routeKey, m.headers, m.body)));
    return instance;
  }) as [Instance, Instance, Instance];
  return { instances, close: async () => undefined };
});

for (const kind of REDIS_KINDS) {
  let environment: RedisEnvironment | undefined;
  const started = (async () => (environment = await startEnvironment(kind)))();
  after(async () => {
    await started.catch(() => undefined);
    await environment?.stop();
  });
  relayContract(`RedisRelay on ${kind === 'single' ? 'a single Redis' : 'a 3-master Redis Cluster'}`, async () => {
    const config = (await started).config();
    const keys = new RedisKeys(config.prefix);
    const connections: RedisConnection[] = [];
    const instance = async (): Promise<Instance> => {
      const instanceId = fresh('i');
      const publisher = connectRedis(config, { name: `stompd:${instanceId}` });
      const subscriber = isCluster(publisher) ? connectRedis(config, { name: `stompd:${instanceId}:sub`, isSubscriber: true }) : publisher.duplicate({ connectionName: `stompd:${instanceId}:sub` });
      connections.push(publisher, subscriber);
      await Promise.all([whenReady(publisher, 10000), whenReady(subscriber, 10000)]);
      const made: Instance = { relay: undefined as unknown as Relay, received: [] };
      const relay = new RedisRelay({
        publisher,
        subscriber,
        keys,
        instanceId,
        logger: pino({ level: 'silent' }),
        deliver: (e) => made.received.push(received(e.messageId, e.destination, e.routeKey, e.headers, e.body)),
        onControl: () => undefined,
      });
      await relay.start();
      made.relay = relay;
      return made;
    };
    const instances: [Instance, Instance, Instance] = [await instance(), await instance(), await instance()];
    return {
      instances,
      close: async () => {
        for (const c of connections) c.disconnect();
      },
    };
  });
}
