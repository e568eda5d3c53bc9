// Membership under faults, with broker processes on one real redis-server: an instance paused
// (SIGSTOP) past the reaping bound is fenced when it resumes (its sessions get ERROR
// UNAVAILABLE, no ghost member comes back, it joins again under a new generation); a
// session that lost its place under `reject` while its instance was paused is closed when
// the instance resumes; a replace whose pub/sub kick is lost still closes the old session
// (the inbox); a SUBSCRIBE's RECEIPT means the relay subscription is in place.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BrokerProcess } from '../helpers/broker-process';
import { RawClient, clientsOfThisFile, header } from '../helpers/raw-client';
import type { Frame } from '../../src/codec';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { until } from '../helpers/until';

const clients = clientsOfThisFile();
const HEARTBEAT_MS = 200; // liveness TTL 600 ms: the reaping bound is about 0.8 s
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function client(port: number, login: string): Promise<RawClient> {
  const c = await RawClient.tcp(port);
  clients.push(c);
  const connected = await c.connect({ login, passcode: 'x' });
  assert.equal(connected.command, 'CONNECTED', `${login}: ${header(connected, 'message') ?? ''}`);
  return c;
}

async function subscribe(c: RawClient, destination: string, id: string): Promise<void> {
  c.sendFrame('SUBSCRIBE', { destination, id, receipt: `r-${id}` });
  for (;;) {
    const frame = await c.next();
    if (frame.command === 'RECEIPT') return;
  }
}

/** The next presence event on the watcher about someone else (the watcher's own JOIN skipped). */
async function presenceEvent(watcher: RawClient, timeoutMs = 10000): Promise<{ type: string; userId: string; reason: string | null }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const frame: Frame = await watcher.expect('MESSAGE', Math.max(1, deadline - Date.now()));
    if (header(frame, 'x-presence') === undefined) continue;
    const event = JSON.parse(frame.body.toString()) as { type: string; userId: string; reason: string | null };
    if (event.userId !== 'watcher') return event;
  }
}

/** The ERROR frame that ends `c` (messages before it skipped). */
async function errorOf(c: RawClient, timeoutMs = 10000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const frame = await c.next(Math.max(1, deadline - Date.now()));
    if (frame.command === 'ERROR') return header(frame, 'message') ?? '';
    assert.equal(frame.command, 'MESSAGE', `only messages before the ERROR, got ${frame.command}`);
  }
}

/** Run `cut` every 5 ms for as long as `during` runs. */
async function whileCutting(cut: () => void, during: () => Promise<void>): Promise<void> {
  let isCutting = true;
  const cutting = (async () => {
    while (isCutting) {
      cut();
      await sleep(5);
    }
  })();
  try {
    await during();
  } finally {
    isCutting = false;
    await cutting;
  }
}

function pick(event: { type: string; userId: string }): { type: string; userId: string } {
  return { type: event.type, userId: event.userId };
}

function pause(broker: BrokerProcess): void {
  broker.child.kill('SIGSTOP');
}

function resume(broker: BrokerProcess): void {
  broker.child.kill('SIGCONT');
}

describe('membership under faults (processes on one redis-server)', { timeout: 120000 }, () => {
  let redis: RedisServer;
  const brokers: BrokerProcess[] = [];

  before(async () => {
    redis = await startRedis();
  });

  after(async () => {
    for (const b of brokers) resume(b);
    await Promise.all(brokers.map((b) => b.stop()));
    await redis?.stop();
  });

  async function broker(env: Record<string, string>): Promise<BrokerProcess> {
    const b = await BrokerProcess.start({ REDIS_URL: redis.url, HEARTBEAT: '0,0', INSTANCE_HEARTBEAT_MS: String(HEARTBEAT_MS), ...env });
    brokers.push(b);
    return b;
  }

  it('an instance paused past the reaping bound is fenced when it resumes: ERROR UNAVAILABLE, one LEAVE, no ghost, a new generation', async () => {
    const env = { PRESENCE_DESTINATIONS: '/topic/room.*', REDIS_PREFIX: 'f1:' };
    const [a, b] = await Promise.all([broker(env), broker(env)]);
    const watcher = await client(b.tcpPort, 'watcher');
    await subscribe(watcher, '/topic/room.1', 'w');
    const member = await client(a.tcpPort, 'sleeper');
    await subscribe(member, '/topic/room.1', 'm');
    assert.deepEqual(Object.values(pick(await presenceEvent(watcher))), ['JOIN', 'sleeper']);
    const generation = Number(redis.cli('get', `f1:instance:{${a.instanceId}}`).trim());
    assert.ok(generation > 0, 'the liveness key holds the generation');

    pause(a);
    const leave = await presenceEvent(watcher);
    assert.deepEqual([leave.type, leave.userId, leave.reason], ['LEAVE', 'sleeper', 'instance-lost']);
    resume(a);

    assert.match(await errorOf(member), /UNAVAILABLE/);
    await member.waitClosed();
    await until(() => Number(redis.cli('get', `f1:instance:{${a.instanceId}}`).trim()) > generation, 'A joined again under a newer generation', 10000);
    await until(() => redis.cli('sismember', 'f1:instances', a.instanceId).trim() === '1', 'A listed again', 10000);
    // No ghost: the member list stays without the fenced session, and no JOIN comes for it.
    await sleep(6 * HEARTBEAT_MS);
    assert.equal(redis.cli('hget', 'f1:presence:{/topic/room.1}:members', 'sleeper').trim(), '');
    // A serves again: a new member on it is announced once.
    const next = await client(a.tcpPort, 'newcomer');
    await subscribe(next, '/topic/room.1', 'n');
    const join = await presenceEvent(watcher);
    assert.deepEqual([join.type, join.userId], ['JOIN', 'newcomer'], "the next event is the newcomer's JOIN (no JOIN or LEAVE of the fenced session before it)");
  });

  it('reject: a session whose place was taken while its instance was paused is closed when the instance resumes', async () => {
    const env = { SINGLE_SESSION: 'reject', REDIS_PREFIX: 'f2:' };
    const [a, b] = await Promise.all([broker(env), broker(env)]);
    const old = await client(a.tcpPort, 'zed');
    pause(a);
    await sleep(4 * HEARTBEAT_MS); // past the liveness TTL
    const fresh = await client(b.tcpPort, 'zed'); // A's holder counts as dead: admitted
    resume(a);
    assert.match(await errorOf(old), /UNAVAILABLE/);
    // The new session lives on and is the only one registered.
    await until(() => redis.cli('zcard', 'f2:user:{zed}').trim() === '1', 'one session of zed registered', 10000);
    fresh.sendFrame('SEND', { destination: '/topic/ping', receipt: 'p' }, 'x');
    await fresh.expect('RECEIPT');
  });

  it('replace: the old session is closed even when the kick over pub/sub is lost (the inbox carries it)', async () => {
    const env = { SINGLE_SESSION: 'replace', REDIS_PREFIX: 'f3:' };
    const [a, b] = await Promise.all([broker(env), broker(env)]);
    const old = await client(a.tcpPort, 'kay');
    // Keep every pub/sub connection down while the replace happens: its kick cannot arrive that way.
    await whileCutting(
      () => redis.cli('client', 'kill', 'type', 'pubsub'),
      async () => {
        const fresh = await client(b.tcpPort, 'kay');
        assert.match(await errorOf(old), /SESSION_REPLACED/);
        fresh.sendFrame('SEND', { destination: '/topic/ping', receipt: 'p' }, 'x');
        await fresh.expect('RECEIPT');
      },
    );
  });

  it("presence events missed while the watcher's pub/sub connection was down arrive after it reconnects: in order, once each", async () => {
    const env = { PRESENCE_DESTINATIONS: '/topic/room.*', REDIS_PREFIX: 'f5:' };
    const [a, b] = await Promise.all([broker(env), broker(env)]);
    const watcher = await client(a.tcpPort, 'watcher');
    await subscribe(watcher, '/topic/room.9', 'w');
    const killSubscriber = (): void => {
      for (const line of redis.cli('client', 'list').split('\n')) {
        if (line.includes(` name=stompd:${a.instanceId}:sub `)) redis.cli('client', 'kill', 'id', /id=(\d+)/.exec(line)![1]!);
      }
    };
    await whileCutting(killSubscriber, async () => {
      await sleep(100);
      const visitor = await client(b.tcpPort, 'visitor');
      await subscribe(visitor, '/topic/room.9', 'v');
      visitor.sendFrame('DISCONNECT', { receipt: 'bye' });
      while ((await visitor.next()).command !== 'RECEIPT'); // its own JOIN may come first
      await sleep(300);
    });
    const seen: string[] = [];
    for (let i = 0; i < 2; i++) {
      const e = await presenceEvent(watcher);
      seen.push(`${e.type} ${e.userId}`);
    }
    assert.deepEqual(seen, ['JOIN visitor', 'LEAVE visitor']);
    await assert.rejects(presenceEvent(watcher, 1500), /timed out/, 'no event twice');
  });

  it('a SUBSCRIBE RECEIPT means the relay subscription is in place: a message sent elsewhere right after it arrives', async () => {
    const env = { REDIS_PREFIX: 'f4:' };
    const [a, b] = await Promise.all([broker(env), broker(env)]);
    const subscriber = await client(a.tcpPort, 'listener');
    const publisher = await client(b.tcpPort, 'talker');
    for (let i = 0; i < 30; i++) {
      await subscribe(subscriber, `/topic/fresh.${i}`, `s${i}`);
      publisher.sendFrame('SEND', { destination: `/topic/fresh.${i}` }, `m${i}`);
      const message = await subscriber.expect('MESSAGE', 5000);
      assert.equal(message.body.toString(), `m${i}`);
    }
  });
});
