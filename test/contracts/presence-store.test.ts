// The PresenceStore contract, one suite run against every implementation: the memory store,
// and the Redis store on a single real Redis and on a real 3-master Redis Cluster (two
// instances each, hearing the events as subscribers do: over the destination's channel), so
// the implementations cannot drift. Exactly one JOIN and one LEAVE per user per room (also
// across instances and under a race), the companion told the same, the member list numbered
// with the last decision it includes, numbers that never go back, the rooms listed.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import type { Message } from '../../src/broker/message';
import { decodeEnvelope } from '../../src/cluster/envelope';
import { RedisKeys } from '../../src/cluster/keys';
import { connectRedis, isCluster, whenReady } from '../../src/cluster/redis-client';
import type { RedisConnection } from '../../src/cluster/redis-client';
import { RedisPresence } from '../../src/cluster/redis-presence';
import { MemoryPresenceStore } from '../../src/presence/memory-presence';
import { RoomMatcher } from '../../src/presence/presence';
import type { PresenceEventBody, PresenceStore, SessionEntry } from '../../src/presence/presence';
import { until } from '../helpers/until';
import { REDIS_KINDS, startEnvironment } from './environments';
import type { RedisEnvironment } from './environments';

interface Subject {
  /** Two instances' stores (memory: the same store twice). */
  a: PresenceStore;
  b: PresenceStore;
  /** Start hearing `destination`'s events (before acting on it). */
  hear(destination: string): Promise<void>;
  /** What `destination` was told so far, in the order it arrived. */
  told(destination: string): PresenceEventBody[];
  close(): Promise<void>;
}

const SUFFIX = '.presence';
const matcher = new RoomMatcher(['/topic/room.*'], SUFFIX);
let seq = 0;
const fresh = (what: string): string => `${what}-${++seq}`;
const entry = (sessionId: string, userId: string, joinedAt = 1000, roles: string[] = ['AGENT']): SessionEntry => ({ sessionId, userId, roles, joinedAt });
const summary = (events: readonly PresenceEventBody[]): string[] => events.map((e) => `${e.type} ${e.userId} ${e.reason}`);

function presenceContract(name: string, make: () => Promise<Subject>): void {
  describe(`PresenceStore contract: ${name}`, { timeout: 60000 }, () => {
    let s: Subject;
    before(async () => {
      s = await make();
    });
    after(() => s?.close());

    /** A fresh room, heard on itself and on its companion. */
    const room = async (): Promise<string> => {
      const name = `/topic/room.${fresh('r')}`;
      await s.hear(name);
      await s.hear(name + SUFFIX);
      return name;
    };
    const heard = (destination: string, count: number): Promise<void> => until(() => s.told(destination).length >= count, `${count} events on ${destination}`, 10000);

    it("one JOIN for a user's first session, none for its second or a repeat; one LEAVE, with its reason, when its last goes; the companion is told the same", async () => {
      const r = await room();
      const [ann, bob] = [fresh('ann'), fresh('bob')];
      await s.a.join(r, entry('s1', ann, 1000, ['AGENT', 'ADMIN']));
      await s.a.join(r, entry('s2', ann, 2000));
      await s.a.join(r, entry('s1', ann, 1000));
      await s.a.leave(r, entry('s1', ann), 'unsubscribe');
      await s.a.leave(r, entry('s-not-in', ann), 'disconnect');
      await s.a.join(r, entry('s3', bob));
      await s.a.leave(r, entry('s2', ann), 'heartbeat-timeout');
      await heard(r, 3);
      await heard(r + SUFFIX, 3);
      const events = s.told(r);
      assert.deepEqual(summary(events), [`JOIN ${ann} null`, `JOIN ${bob} null`, `LEAVE ${ann} heartbeat-timeout`]);
      assert.deepEqual(Object.keys(events[0]!), ['type', 'userId', 'roles', 'sessionId', 'reason', 'at', 'seq']);
      assert.deepEqual([events[0]!.sessionId, events[0]!.roles], ['s1', ['AGENT', 'ADMIN']]);
      assert.equal(events[2]!.sessionId, 's2', 'the last session to go');
      assert.equal(typeof events[0]!.at, 'number');
      assert.deepEqual(s.told(r + SUFFIX), events);
    });

    it("the member list: one entry per user with its first session's joinedAt, numbered with the last decision it includes", async () => {
      const r = await room();
      const [ann, bob] = [fresh('ann'), fresh('bob')];
      await s.a.join(r, entry('s1', ann, 1000));
      await s.b.join(r, entry('s2', ann, 3000));
      await s.b.join(r, entry('s3', bob, 2000, ['CUSTOMER']));
      await heard(r, 2);
      const snapshot = await s.b.snapshot(r);
      assert.deepEqual(
        snapshot.members.map((m) => ({ ...m, roles: [...m.roles] })).sort((x, y) => x.joinedAt - y.joinedAt),
        [
          { userId: ann, roles: ['AGENT'], joinedAt: 1000 },
          { userId: bob, roles: ['CUSTOMER'], joinedAt: 2000 },
        ],
      );
      assert.equal(snapshot.seq, s.told(r)[1]!.seq);
      for (const [id, user] of [
        ['s1', ann],
        ['s2', ann],
        ['s3', bob],
      ] as const)
        await s.a.leave(r, entry(id, user), 'disconnect');
      await heard(r, 4);
      assert.deepEqual((await s.a.snapshot(r)).members, []);
    });

    it("numbers only grow, also after the room empties and fills again; an empty room's list is numbered below its next decision", async () => {
      const r = await room();
      const listed = (await s.a.snapshot(r)).seq;
      for (let round = 0; round < 3; round++) {
        const user = fresh('u');
        await s.a.join(r, entry(`s${round}`, user));
        await s.a.leave(r, entry(`s${round}`, user), 'disconnect');
      }
      await heard(r, 6);
      const numbers = s.told(r).map((e) => e.seq);
      assert.ok(numbers[0]! > listed, `${numbers[0]} after a list numbered ${listed}`);
      for (let i = 1; i < numbers.length; i++) assert.ok(numbers[i]! > numbers[i - 1]!, `numbers ${numbers.join(',')} grow`);
    });

    it("one user's sessions on two instances, ten joining at once: one JOIN; one LEAVE when the last goes", async () => {
      const r = await room();
      const user = fresh('u');
      await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? s.a : s.b).join(r, entry(`s${i}`, user))));
      await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? s.b : s.a).leave(r, entry(`s${i}`, user), 'kicked')));
      const marker = fresh('marker');
      await s.a.join(r, entry('s-marker', marker));
      await heard(r, 3);
      assert.deepEqual(summary(s.told(r)), [`JOIN ${user} null`, `LEAVE ${user} kicked`, `JOIN ${marker} null`]);
    });

    it('lists every room with members, in name order', async () => {
      const rooms = [await room(), await room()];
      for (const [i, r] of rooms.entries()) await s.b.join(r, entry(`s${i}`, fresh('u')));
      const listed = await s.a.rooms();
      for (const r of rooms) assert.ok(listed.includes(r), r);
      assert.deepEqual(listed, [...listed].sort());
    });
  });
}

presenceContract('MemoryPresenceStore', async () => {
  const told = new Map<string, PresenceEventBody[]>();
  const store = new MemoryPresenceStore((message: Message) => told.get(message.destination)?.push(JSON.parse(message.body.toString()) as PresenceEventBody), matcher, 'm');
  return {
    a: store,
    b: store,
    hear: async (destination) => void told.set(destination, []),
    told: (destination) => told.get(destination) ?? [],
    close: async () => undefined,
  };
});

for (const kind of REDIS_KINDS) {
  let environment: RedisEnvironment | undefined;
  const started = (async () => (environment = await startEnvironment(kind)))();
  after(async () => {
    await started.catch(() => undefined);
    await environment?.stop();
  });
  presenceContract(`RedisPresence on ${kind === 'single' ? 'a single Redis' : 'a 3-master Redis Cluster'}`, async () => {
    const config = (await started).config();
    const keys = new RedisKeys(config.prefix);
    const connections: RedisConnection[] = [];
    const store = async (): Promise<RedisPresence> => {
      const instanceId = fresh('i');
      const redis = connectRedis(config, { name: `stompd:${instanceId}` });
      connections.push(redis);
      await whenReady(redis, 10000);
      await redis.sadd(keys.instances, instanceId); // listed, as its membership would (rooms() reads the listed instances')
      return new RedisPresence({ redis, keys, instanceId, matcher, messageIdPrefix: instanceId, logger: pino({ level: 'silent' }) });
    };
    const subscriber = connectRedis(config, { name: fresh('tap'), isSubscriber: true });
    connections.push(subscriber);
    await whenReady(subscriber, 10000);
    const told = new Map<string, PresenceEventBody[]>();
    const onMessage = (_channel: Buffer, bytes: Buffer): void => {
      const envelope = decodeEnvelope(bytes);
      told.get(envelope.destination)?.push(JSON.parse(envelope.body.toString()) as PresenceEventBody);
    };
    subscriber.on(isCluster(subscriber) ? 'smessageBuffer' : 'messageBuffer', onMessage);
    return {
      a: await store(),
      b: await store(),
      hear: async (destination) => {
        told.set(destination, []);
        const channel = keys.destinationChannel(destination);
        if (isCluster(subscriber)) await subscriber.ssubscribe(channel);
        else await subscriber.subscribe(channel);
      },
      told: (destination) => told.get(destination) ?? [],
      close: async () => {
        for (const c of connections) c.disconnect();
      },
    };
  });
}
