// Presence across instances on one real redis-server: two in-process instances (so their
// member lists can be read) and, for kill -9, a third as its own process. Each scenario of
// issue 16 with raw clients: a closed tab, a silent client, a killed instance (two survivors
// racing to reap it), a user with two sessions on two instances, a Redis that restarts
// empty; after each step both instances list the same, right members and every watcher was
// told once. The randomized run with @stomp/stompjs is in presence-random.test.ts.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import pino from 'pino';
import { RedisKeys } from '../../src/cluster/keys';
import { RedisPresence } from '../../src/cluster/redis-presence';
import { RoomMatcher } from '../../src/presence/presence';
import type { RunningServer } from '../../src/server';
import { BrokerProcess } from '../helpers/broker-process';
import { startBroker } from '../helpers/broker';
import { until } from '../helpers/until';
import { RawClient, clientsOfThisFile, header } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

const clients = clientsOfThisFile();

interface Event {
  type: string;
  userId: string;
  sessionId: string;
  reason: string | null;
}

async function client(port: number, login: string, extra: Record<string, string> = {}): Promise<RawClient> {
  const c = await RawClient.tcp(port);
  clients.push(c);
  await c.connect({ login, ...extra });
  return c;
}

async function join(c: RawClient, room: string, id = 'r'): Promise<void> {
  c.sendFrame('SUBSCRIBE', { destination: room, id, receipt: `sub-${id}` });
  await c.waitUntil(() => c.frames.some((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === `sub-${id}`));
}

/** The JOIN and LEAVE messages `c` got so far. */
function eventsOf(c: RawClient): Event[] {
  return c.frames.filter((f) => f.command === 'MESSAGE' && (header(f, 'x-presence') === 'join' || header(f, 'x-presence') === 'leave')).map((f) => JSON.parse(f.body.toString()) as Event);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Both instances list exactly `userIds` (once the joins under way are decided: a RECEIPT comes before). */
async function assertMembers(instances: RunningServer[], room: string, userIds: string[]): Promise<void> {
  const expected = [...userIds].sort();
  const listed = async (instance: RunningServer): Promise<string[]> => (await instance.presence.members(room)).map((m) => m.userId).sort();
  await until(
    async () => {
      for (const instance of instances) if (JSON.stringify(await listed(instance)) !== JSON.stringify(expected)) return false;
      return true;
    },
    'the member lists',
    3000,
  ).catch(() => undefined);
  for (const instance of instances) assert.deepEqual(await listed(instance), expected, `members on ${instance.config.instanceId}`);
}

/** Wait until `instances` instances listen on the room's channel (the relay subscribes asynchronously). */
async function untilRelayed(redis: RedisServer, room: string, instances: number): Promise<void> {
  await until(() => Number(redis.cli('pubsub', 'numsub', `ws:dest:${room}`).trim().split('\n')[1]) >= instances, `${instances} instances on ${room}`, 10000);
}

const PRESENCE = { PRESENCE_DESTINATIONS: '/topic/room.*' };

describe('presence across two instances (one redis-server)', { timeout: 60000 }, () => {
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;

  before(async () => {
    redis = await startRedis();
    // The brokers want a heart-beat every 300 ms from clients that offer one (x2 grace).
    const env = { REDIS_URL: redis.url, HEARTBEAT: '0,300', INSTANCE_HEARTBEAT_MS: '300', ...PRESENCE };
    [a, b] = await Promise.all([startBroker({ ...env, INSTANCE_ID: 'inst-a' }), startBroker({ ...env, INSTANCE_ID: 'inst-b' })]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  it('a closed tab on one instance: one LEAVE (socket-closed) to watchers on both, at once; lists agree at each step', async () => {
    const room = '/topic/room.tab';
    const watchA = await client(a.tcpPort!, 'watch-a');
    const watchB = await client(b.tcpPort!, 'watch-b');
    await join(watchA, room);
    await join(watchB, room);
    await untilRelayed(redis, room, 2);
    const tab = await client(b.tcpPort!, 'tabby');
    await join(tab, room);
    for (const w of [watchA, watchB]) await until(() => eventsOf(w).some((e) => e.type === 'JOIN' && e.userId === 'tabby'), 'the JOIN');
    await assertMembers([a, b], room, ['watch-a', 'watch-b', 'tabby']);
    const closedAt = Date.now();
    tab.destroy(); // no DISCONNECT: the socket just goes
    for (const w of [watchA, watchB]) await until(() => eventsOf(w).some((e) => e.type === 'LEAVE' && e.userId === 'tabby'), 'the LEAVE', 2000);
    const toldWithinMs = Date.now() - closedAt;
    await sleep(300);
    for (const w of [watchA, watchB]) {
      const leaves = eventsOf(w).filter((e) => e.userId === 'tabby' && e.type === 'LEAVE');
      assert.equal(leaves.length, 1);
      assert.equal(leaves[0]!.reason, 'socket-closed');
      assert.equal(eventsOf(w).filter((e) => e.userId === 'tabby' && e.type === 'JOIN').length, 1);
    }
    assert.ok(toldWithinMs < 2000, `told within ${toldWithinMs} ms`);
    await assertMembers([a, b], room, ['watch-a', 'watch-b']);
  });

  it('a client that goes silent: one LEAVE (heartbeat-timeout) within the heart-beat bound', async () => {
    const room = '/topic/room.quiet';
    const watchA = await client(a.tcpPort!, 'watch-a');
    await join(watchA, room);
    await untilRelayed(redis, room, 1);
    // Offers a beat every 300 ms, then sends nothing: the bound is 300 ms x grace 2, plus a check tick.
    const silent = await client(b.tcpPort!, 'quiet', { 'heart-beat': '300,0' });
    await join(silent, room);
    await until(() => eventsOf(watchA).some((e) => e.type === 'JOIN' && e.userId === 'quiet'), 'the JOIN');
    const silentFrom = Date.now();
    await until(() => eventsOf(watchA).some((e) => e.type === 'LEAVE' && e.userId === 'quiet'), 'the LEAVE', 3000);
    const afterMs = Date.now() - silentFrom;
    assert.ok(afterMs < 600 + 1000, `LEAVE ${afterMs} ms after the last frame (bound 600 ms + tick)`);
    await sleep(300);
    const leaves = eventsOf(watchA).filter((e) => e.type === 'LEAVE' && e.userId === 'quiet');
    assert.deepEqual(
      leaves.map((e) => e.reason),
      ['heartbeat-timeout'],
    );
    await assertMembers([a, b], room, ['watch-a']);
  });

  it('a user with sessions on both instances joins once and leaves only after the second ends', async () => {
    const room = '/topic/room.twice';
    const watchA = await client(a.tcpPort!, 'watch-a');
    const watchB = await client(b.tcpPort!, 'watch-b');
    await join(watchA, room);
    await join(watchB, room);
    await untilRelayed(redis, room, 2);
    const first = await client(a.tcpPort!, 'duo');
    await join(first, room);
    const second = await client(b.tcpPort!, 'duo');
    await join(second, room);
    await assertMembers([a, b], room, ['watch-a', 'watch-b', 'duo']);
    first.sendFrame('DISCONNECT', { receipt: 'bye' });
    await first.expect('RECEIPT').catch(() => undefined);
    await sleep(500);
    await assertMembers([a, b], room, ['watch-a', 'watch-b', 'duo']);
    for (const w of [watchA, watchB])
      assert.deepEqual(
        eventsOf(w)
          .filter((e) => e.userId === 'duo')
          .map((e) => e.type),
        ['JOIN'],
      );
    second.sendFrame('UNSUBSCRIBE', { id: 'r' });
    for (const w of [watchA, watchB]) await until(() => eventsOf(w).some((e) => e.type === 'LEAVE' && e.userId === 'duo'), 'the LEAVE');
    await sleep(300);
    for (const w of [watchA, watchB]) {
      const duo = eventsOf(w).filter((e) => e.userId === 'duo');
      assert.deepEqual(
        duo.map((e) => `${e.type}:${e.reason}`),
        ['JOIN:null', 'LEAVE:unsubscribe'],
      );
      assert.equal(duo[1]!.sessionId, header(second.frames[0]!, 'session'), 'the LEAVE names the last session');
    }
    await assertMembers([a, b], room, ['watch-a', 'watch-b']);
  });

  it('several sessions of one user ending at once: one LEAVE', async () => {
    const room = '/topic/room.burst';
    const watchA = await client(a.tcpPort!, 'watch-a');
    await join(watchA, room);
    await untilRelayed(redis, room, 1);
    const sessions: RawClient[] = [];
    for (let i = 0; i < 6; i++) {
      const s = await client((i % 2 === 0 ? a : b).tcpPort!, 'many');
      await join(s, room);
      sessions.push(s);
    }
    await until(() => eventsOf(watchA).some((e) => e.userId === 'many'), 'the JOIN');
    for (const s of sessions) s.destroy();
    await until(() => eventsOf(watchA).some((e) => e.type === 'LEAVE' && e.userId === 'many'), 'the LEAVE');
    await sleep(500);
    assert.deepEqual(
      eventsOf(watchA)
        .filter((e) => e.userId === 'many')
        .map((e) => e.type),
      ['JOIN', 'LEAVE'],
      JSON.stringify(eventsOf(watchA).filter((e) => e.userId === 'many')),
    );
    await assertMembers([a, b], room, ['watch-a']);
  });

  it('kill -9 of a third instance: its members leave once (instance-lost), told by a survivor within the reaping bound', async () => {
    const room = '/topic/room.crash';
    const doomed = await BrokerProcess.start({ REDIS_URL: redis.url, HEARTBEAT: '0,0', INSTANCE_HEARTBEAT_MS: '300', ...PRESENCE });
    try {
      const watchA = await client(a.tcpPort!, 'watch-a');
      const watchB = await client(b.tcpPort!, 'watch-b');
      await join(watchA, room);
      await join(watchB, room);
      await untilRelayed(redis, room, 2);
      for (const user of ['gone-1', 'gone-2', 'gone-3']) await join(await client(doomed.tcpPort, user), room);
      // gone-3 also has a session on a survivor: it stays.
      await join(await client(a.tcpPort!, 'gone-3'), room);
      await assertMembers([a, b], room, ['watch-a', 'watch-b', 'gone-1', 'gone-2', 'gone-3']);
      const killedAt = Date.now();
      await doomed.kill();
      // Bound: 3 + 1 instance heart-beats (1.2 s here), plus slack for a loaded machine.
      for (const w of [watchA, watchB]) {
        await until(() => eventsOf(w).filter((e) => e.type === 'LEAVE').length >= 2, 'the LEAVEs', 1200 + 3000);
      }
      const toldAfterMs = Date.now() - killedAt;
      await sleep(1500); // more reaping rounds of both survivors: nothing more
      for (const w of [watchA, watchB]) {
        const leaves = eventsOf(w).filter((e) => e.type === 'LEAVE');
        assert.deepEqual(leaves.map((e) => `${e.userId}:${e.reason}`).sort(), ['gone-1:instance-lost', 'gone-2:instance-lost']);
      }
      assert.ok(toldAfterMs < 4200, `told ${toldAfterMs} ms after the kill`);
      await assertMembers([a, b], room, ['watch-a', 'watch-b', 'gone-3']);
    } finally {
      await doomed.stop().catch(() => undefined);
    }
  });

  it("two survivors both reaping a lost instance's rooms (racing reapers): one LEAVE", async () => {
    const room = '/topic/room.race';
    const c = await startBroker({ REDIS_URL: redis.url, HEARTBEAT: '0,0', INSTANCE_ID: 'inst-c', ...PRESENCE });
    try {
      const watchA = await client(a.tcpPort!, 'watch-a');
      await join(watchA, room);
      await untilRelayed(redis, room, 1);
      const victim = await client(c.tcpPort!, 'victim');
      await join(victim, room);
      await until(() => eventsOf(watchA).some((e) => e.userId === 'victim'), 'the JOIN');
      // What each survivor's reaper does for a dead instance's rooms, both at once.
      const reapers = ['survivor-1', 'survivor-2'].map((id) => {
        const connection = new Redis(redis.url);
        return {
          connection,
          store: new RedisPresence({ redis: connection, keys: new RedisKeys('ws:'), instanceId: id, matcher: new RoomMatcher(['/topic/room.*'], undefined), messageIdPrefix: id, logger: pino({ level: 'silent' }) }),
        };
      });
      await Promise.all(reapers.map((r) => r.store.onInstanceLost('inst-c')));
      for (const r of reapers) r.connection.disconnect();
      await until(() => eventsOf(watchA).some((e) => e.type === 'LEAVE' && e.userId === 'victim'), 'the LEAVE');
      await sleep(500);
      assert.deepEqual(
        eventsOf(watchA)
          .filter((e) => e.userId === 'victim')
          .map((e) => `${e.type}:${e.reason}`),
        ['JOIN:null', 'LEAVE:instance-lost'],
      );
      await assertMembers([a, b, c], room, ['watch-a']);
    } finally {
      await c.stop();
    }
  });

  it('an instance stopped gracefully: its members leave (instance-lost) before it goes', async () => {
    const room = '/topic/room.stop';
    const d = await startBroker({ REDIS_URL: redis.url, HEARTBEAT: '0,0', INSTANCE_ID: 'inst-d', ...PRESENCE });
    const watchA = await client(a.tcpPort!, 'watch-a');
    await join(watchA, room);
    await untilRelayed(redis, room, 1);
    await join(await client(d.tcpPort!, 'leaving-with-d'), room);
    await until(() => eventsOf(watchA).some((e) => e.userId === 'leaving-with-d'), 'the JOIN');
    await d.stop();
    await until(() => eventsOf(watchA).some((e) => e.type === 'LEAVE' && e.userId === 'leaving-with-d'), 'the LEAVE');
    assert.deepEqual(
      eventsOf(watchA)
        .filter((e) => e.userId === 'leaving-with-d')
        .map((e) => `${e.type}:${e.reason}`),
      ['JOIN:null', 'LEAVE:instance-lost'],
    );
    await assertMembers([a, b], room, ['watch-a']);
  });

  it('Redis restarted empty: lists are rebuilt from the live sessions, no phantom members, the missed LEAVE told', async () => {
    const room = '/topic/room.blip';
    const watchA = await client(a.tcpPort!, 'watch-a');
    const watchB = await client(b.tcpPort!, 'watch-b');
    await join(watchA, room);
    await join(watchB, room);
    await untilRelayed(redis, room, 2);
    const stays = await client(a.tcpPort!, 'stays');
    await join(stays, room);
    const goes = await client(b.tcpPort!, 'goes');
    await join(goes, room);
    await assertMembers([a, b], room, ['watch-a', 'watch-b', 'stays', 'goes']);
    await redis.kill();
    await until(() => a.clusterHealth()?.isDegraded === true && b.clusterHealth()?.isDegraded === true, 'both degraded');
    goes.destroy(); // its LEAVE cannot be decided now
    await sleep(300);
    await redis.restart(); // empty
    await until(() => a.clusterHealth()?.isDegraded === false && b.clusterHealth()?.isDegraded === false, 'both healthy again', 10000);
    await until(async () => (await b.presence.members(room)).length === 3, 'the rebuilt list', 5000);
    await assertMembers([a, b], room, ['watch-a', 'watch-b', 'stays']);
    assert.equal(redis.cli('hlen', `ws:presence:{${room}}:sessions`).trim(), '3', 'one entry per live session');
    // The LEAVE the outage held back is told, with the reason the session ended with.
    for (const w of [watchA, watchB]) await until(() => eventsOf(w).some((e) => e.type === 'LEAVE' && e.userId === 'goes'), 'the held-back LEAVE');
    for (const w of [watchA, watchB])
      assert.deepEqual(
        eventsOf(w)
          .filter((e) => e.userId === 'goes')
          .map((e) => `${e.type}:${e.reason}`),
        ['JOIN:null', 'LEAVE:socket-closed'],
      );
    // Live members were restored without a second JOIN.
    await sleep(500);
    for (const w of [watchA, watchB]) assert.equal(eventsOf(w).filter((e) => e.type === 'JOIN' && e.userId === 'stays').length, 1);
  });

  it('kill -9 of an instance, then Redis restarted empty before anyone reaped it: its members leave once (instance-lost, a correction) at every watcher', async () => {
    const room = '/topic/room.forgotten';
    const doomed = await BrokerProcess.start({ REDIS_URL: redis.url, HEARTBEAT: '0,0', INSTANCE_HEARTBEAT_MS: '300', ...PRESENCE });
    try {
      const watchA = await client(a.tcpPort!, 'fw-a');
      await join(watchA, room);
      const snapshotWatcher = await client(b.tcpPort!, 'fw-b');
      snapshotWatcher.sendFrame('SUBSCRIBE', { destination: room, id: 'r', 'x-presence-snapshot': 'true', receipt: 'sub-r' });
      await snapshotWatcher.waitUntil(() => snapshotWatcher.frames.some((f) => header(f, 'x-presence') === 'snapshot'), 5000, 'the snapshot');
      await untilRelayed(redis, room, 2);
      for (const user of ['lost-1', 'lost-2']) await join(await client(doomed.tcpPort, user), room);
      const stays = await client(a.tcpPort!, 'fw-stays');
      await join(stays, room);
      for (const w of [watchA, snapshotWatcher]) await until(() => ['lost-1', 'lost-2', 'fw-stays'].every((u) => eventsOf(w).some((e) => e.type === 'JOIN' && e.userId === u)), 'the JOINs');
      await doomed.kill();
      await redis.kill(); // at once: no survivor reaps the dead instance before Redis forgets it
      await redis.restart();
      await until(() => a.clusterHealth()?.isDegraded === false && b.clusterHealth()?.isDegraded === false, 'both healthy again', 10000);
      for (const w of [watchA, snapshotWatcher]) {
        await until(() => ['lost-1', 'lost-2'].every((u) => eventsOf(w).some((e) => e.type === 'LEAVE' && e.userId === u)), 'the LEAVEs of the forgotten members', 10000);
      }
      await sleep(1500); // more audits: nothing more
      for (const w of [watchA, snapshotWatcher]) {
        const events = eventsOf(w).filter((e) => e.userId !== 'fw-a' && e.userId !== 'fw-b');
        assert.deepEqual(events.map((e) => `${e.type}:${e.userId}:${e.reason}`).sort(), ['JOIN:fw-stays:null', 'JOIN:lost-1:null', 'JOIN:lost-2:null', 'LEAVE:lost-1:instance-lost', 'LEAVE:lost-2:instance-lost']);
        const corrections = w.frames.filter((f) => header(f, 'x-presence') === 'leave' && header(f, 'x-presence-repair') === 'true');
        assert.equal(corrections.length, 2, 'told as corrections');
      }
      await assertMembers([a, b], room, ['fw-a', 'fw-b', 'fw-stays']);
      // A watcher that subscribes now lists what Redis lists, and gets no correction it does not need.
      const late = await client(b.tcpPort!, 'fw-late');
      late.sendFrame('SUBSCRIBE', { destination: room, id: 'r', 'x-presence-snapshot': 'true', receipt: 'sub-r' });
      await late.waitUntil(() => late.frames.some((f) => header(f, 'x-presence') === 'snapshot'), 5000, 'the late snapshot');
      const listed = (JSON.parse(late.frames.find((f) => header(f, 'x-presence') === 'snapshot')!.body.toString()) as { members: { userId: string }[] }).members.map((m) => m.userId).sort();
      assert.deepEqual(listed, ['fw-a', 'fw-b', 'fw-late', 'fw-stays']);
      await sleep(500);
      assert.equal(eventsOf(late).filter((e) => e.type === 'LEAVE').length, 0);
    } finally {
      await doomed.stop().catch(() => undefined);
    }
  });

  it('a watcher that joined by snapshot keeps getting events after Redis restarted empty (the room numbers never go back)', async () => {
    const room = '/topic/room.renumbered';
    const early = [];
    for (const user of ['u1', 'u2', 'u3', 'u4']) {
      const c = await client(a.tcpPort!, user);
      await join(c, room);
      early.push(c);
    }
    const watcher = await client(b.tcpPort!, 'snapshot-watcher');
    watcher.sendFrame('SUBSCRIBE', { destination: room, id: 'w', 'x-presence-snapshot': 'true', receipt: 'w' });
    await watcher.waitUntil(() => watcher.frames.some((f) => header(f, 'x-presence') === 'snapshot'), 5000, 'the snapshot');
    await untilRelayed(redis, room, 2);
    await redis.kill();
    await until(() => a.clusterHealth()?.isDegraded === true && b.clusterHealth()?.isDegraded === true, 'both degraded');
    await redis.restart(); // empty: the room's counter is gone too
    await until(() => a.clusterHealth()?.isDegraded === false && b.clusterHealth()?.isDegraded === false, 'both healthy again', 10000);
    await untilRelayed(redis, room, 2);
    for (const user of ['n1', 'n2', 'n3']) await join(await client(a.tcpPort!, user), room);
    await until(() => ['n1', 'n2', 'n3'].every((u) => eventsOf(watcher).some((e) => e.type === 'JOIN' && e.userId === u)), 'the new JOINs at the snapshot watcher', 5000);
    for (const c of early) c.destroy();
  });
});
