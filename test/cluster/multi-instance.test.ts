// Several stompd processes against one real redis-server behave as one broker: topic and
// user-destination delivery across instances (exactly once each, in each publisher's
// order, binary-safe, every protocol version), the registry's contents through a session's
// life, single-session policies decided across instances, kick and logout everywhere, and
// the reaping of an instance killed with SIGKILL.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { BrokerProcess } from '../helpers/broker-process';
import { startBroker } from '../helpers/broker';
import { SECRET, bearer, mint, nowS } from '../helpers/jwt';
import { until } from '../helpers/until';
import { RawClient, clientsOfThisFile, header } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

const clients = clientsOfThisFile();

async function client(port: number, headers: Record<string, string> = {}): Promise<RawClient> {
  const c = await RawClient.tcp(port);
  clients.push(c);
  await c.connect(headers);
  return c;
}

async function subscribe(c: RawClient, destination: string, id = 'sub'): Promise<void> {
  c.sendFrame('SUBSCRIBE', { destination, id, receipt: `sub-${id}` });
  await c.expect('RECEIPT');
}

/** Wait until every instance listed has subscribed to the destination's channel. */
async function untilRelayed(redis: RedisServer, routeKey: string, instances: number): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const [, count] = redis.cli('pubsub', 'numsub', `ws:dest:${routeKey}`).trim().split('\n');
    if (Number(count) >= instances) return;
    if (Date.now() > deadline) throw new Error(`${routeKey}: ${count} instances subscribed, expected ${instances}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('several instances, one broker (processes on one redis-server)', { timeout: 120000 }, () => {
  let redis: RedisServer;
  let a: BrokerProcess;
  let b: BrokerProcess;

  before(async () => {
    redis = await startRedis();
    [a, b] = await Promise.all([BrokerProcess.start({ REDIS_URL: redis.url, HEARTBEAT: '0,0' }), BrokerProcess.start({ REDIS_URL: redis.url, HEARTBEAT: '0,0' })]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  it("a topic message reaches subscribers on both instances exactly once, in each publisher's order", async () => {
    const onA = await client(a.tcpPort, { login: 'sub-a' });
    const onB = await client(b.tcpPort, { login: 'sub-b' });
    await subscribe(onA, '/topic/scores');
    await subscribe(onB, '/topic/scores');
    await untilRelayed(redis, '/topic/scores', 2);
    const pubA = await client(a.tcpPort, { login: 'pub-a' });
    const pubB = await client(b.tcpPort, { login: 'pub-b' });
    const count = 200;
    for (let i = 0; i < count; i++) {
      pubA.sendFrame('SEND', { destination: '/topic/scores', seq: String(i), from: 'A' }, `A${i}`);
      pubB.sendFrame('SEND', { destination: '/topic/scores', seq: String(i), from: 'B' }, `B${i}`);
    }
    for (const subscriber of [onA, onB]) {
      const seen = { A: [] as number[], B: [] as number[] };
      for (let i = 0; i < 2 * count; i++) {
        const message = await subscriber.expect('MESSAGE');
        seen[header(message, 'from') as 'A' | 'B'].push(Number(header(message, 'seq')));
      }
      const inOrder = Array.from({ length: count }, (_, i) => i);
      assert.deepEqual(seen.A, inOrder, "A's messages once each, in order");
      assert.deepEqual(seen.B, inOrder, "B's messages once each, in order");
      await subscriber.expectSilence(300); // nothing twice
    }
  });

  it('binary bodies and user headers cross instances intact, for 1.0, 1.1 and 1.2 receivers', async () => {
    const body = Buffer.from([0, 1, 2, 0xff, 0xfe, 0, 10, 13, 0x5c, 0x3a, 0]);
    const receivers: [RawClient, string][] = [];
    for (const version of ['1.0', '1.1', '1.2']) {
      const c = await client(b.tcpPort, { 'accept-version': version, login: `r-${version}` });
      await subscribe(c, '/topic/binary');
      receivers.push([c, version]);
    }
    await untilRelayed(redis, '/topic/binary', 1);
    const sender = await client(a.tcpPort, { login: 'binary-sender' });
    sender.sendFrame(
      'SEND',
      [
        ['destination', '/topic/binary'],
        ['x-plain', 'value:with\\backslash'],
        ['key:one', 'v'],
        ['content-type', 'application/octet-stream'],
      ],
      body,
    );
    for (const [receiver, version] of receivers) {
      const message = await receiver.expect('MESSAGE');
      assert.deepEqual(message.body, body, `${version} body`);
      assert.equal(header(message, 'x-plain'), version === '1.0' ? 'value:with\\backslash' : 'value:with\\backslash');
      assert.equal(header(message, 'user-id'), 'binary-sender');
      assert.equal(header(message, 'content-type'), 'application/octet-stream');
      if (version !== '1.0') assert.equal(header(message, 'key:one'), 'v');
    }
  });

  it("an instance listens on a destination's channel only while it has subscribers there", async () => {
    const c = await client(b.tcpPort, { login: 'transient' });
    await subscribe(c, '/topic/transient');
    await untilRelayed(redis, '/topic/transient', 1);
    c.sendFrame('UNSUBSCRIBE', { id: 'sub', receipt: 'unsub' });
    await c.expect('RECEIPT');
    await until(() => redis.cli('pubsub', 'numsub', 'ws:dest:/topic/transient').trim().endsWith('\n0'), 'the channel to be dropped');
    assert.ok(!redis.cli('pubsub', 'channels', 'ws:dest:*').includes('/topic/transient'));
  });

  it('user destinations reach every session of the user, on every instance, once each', async () => {
    const aliceA = await client(a.tcpPort, { login: 'alice' });
    const aliceB = await client(b.tcpPort, { login: 'alice' });
    const carol = await client(b.tcpPort, { login: 'carol' });
    for (const c of [aliceA, aliceB, carol]) await subscribe(c, '/user/queue/inbox');
    await untilRelayed(redis, '/user/alice/queue/inbox', 2);
    const bob = await client(b.tcpPort, { login: 'bob' });
    bob.sendFrame('SEND', { destination: '/user/alice/queue/inbox' }, 'hi alice');
    for (const c of [aliceA, aliceB]) {
      const message = await c.expect('MESSAGE');
      assert.equal(message.body.toString(), 'hi alice');
      assert.equal(header(message, 'destination'), '/user/queue/inbox');
    }
    // For oneself: /user/queue/x from alice's session on A reaches her session on B too.
    aliceA.sendFrame('SEND', { destination: '/user/queue/inbox' }, 'note to self');
    for (const c of [aliceA, aliceB]) assert.equal((await c.expect('MESSAGE')).body.toString(), 'note to self');
    for (const c of [aliceA, aliceB, carol]) await c.expectSilence(300);
  });

  it('the registry follows a session: connect, DISCONNECT, socket destroyed', async () => {
    const sessionKeyOf = async (c: RawClient): Promise<string> => `ws:session:{${header(c.frames[0]!, 'session')}}`;
    const one = await client(a.tcpPort, { login: 'registry-user' });
    const key = await sessionKeyOf(one);
    const sessionId = header(one.frames[0]!, 'session')!;
    const hash = redis.cli('hgetall', key);
    for (const expected of ['registry-user', a.instanceId, 'tcp', 'connectedAt', 'lastSeenAt']) assert.ok(hash.includes(expected), `${expected} in ${hash}`);
    assert.ok(Number(redis.cli('ttl', key)) > 80000, 'TTL of about SESSION_TTL_SECONDS');
    assert.ok(redis.cli('zrange', 'ws:user:{registry-user}', '0', '-1').includes(sessionId));
    assert.ok(redis.cli('smembers', 'ws:sessions:all').includes(sessionId));
    assert.ok(redis.cli('smembers', `ws:instance:{${a.instanceId}}:sessions`).includes(sessionId));

    one.sendFrame('DISCONNECT', { receipt: 'bye' });
    await one.expect('RECEIPT');
    await until(() => redis.cli('exists', key).trim() === '0', 'the session key to go');
    assert.equal(redis.cli('exists', 'ws:user:{registry-user}').trim(), '0', 'an empty user set is deleted');
    assert.ok(!redis.cli('smembers', 'ws:sessions:all').includes(sessionId));

    const two = await client(b.tcpPort, { login: 'registry-user' });
    const key2 = await sessionKeyOf(two);
    assert.equal(redis.cli('exists', key2).trim(), '1');
    two.destroy(); // the tab closed: no DISCONNECT
    await until(() => redis.cli('exists', key2).trim() === '0', "the destroyed session's key to go");
    assert.equal(redis.cli('exists', 'ws:user:{registry-user}').trim(), '0');
  });
});

describe('policies, kicks and logouts across instances', { timeout: 120000 }, () => {
  let redis: RedisServer;
  let a: BrokerProcess;
  let b: BrokerProcess;

  before(async () => {
    redis = await startRedis();
    const env = { REDIS_URL: redis.url, HEARTBEAT: '0,0', SINGLE_SESSION: 'reject', JWT_SECRET: SECRET };
    [a, b] = await Promise.all([BrokerProcess.start(env), BrokerProcess.start(env)]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  it('20 simultaneous CONNECTs of one user over two instances under reject: exactly one wins', async () => {
    const token = await mint(SECRET, { sub: 'racer' });
    const sockets = await Promise.all(Array.from({ length: 20 }, (_, i) => RawClient.tcp(i % 2 === 0 ? a.tcpPort : b.tcpPort)));
    clients.push(...sockets);
    for (const s of sockets) s.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0', ...bearer(token) });
    const answers = await Promise.all(sockets.map((s) => s.next(5000)));
    assert.equal(answers.filter((f) => f.command === 'CONNECTED').length, 1);
    const refusals = answers.filter((f) => f.command === 'ERROR');
    assert.equal(refusals.length, 19);
    for (const refusal of refusals) assert.match(header(refusal, 'message') ?? '', /^DUPLICATE_SESSION:/);
  });

  it('replace: the older session on the other instance gets SESSION_REPLACED', async () => {
    const c = await BrokerProcess.start({ REDIS_URL: redis.url, HEARTBEAT: '0,0', SINGLE_SESSION: 'replace', JWT_SECRET: SECRET });
    try {
      const old = await client(a.tcpPort, bearer(await mint(SECRET, { sub: 'replaced-user' })));
      const newer = await client(c.tcpPort, bearer(await mint(SECRET, { sub: 'replaced-user' })));
      const error = await old.expect('ERROR', 3000);
      assert.match(header(error, 'message') ?? '', /^SESSION_REPLACED:/);
      await old.waitClosed();
      newer.sendFrame('SEND', { destination: '/topic/x', receipt: 'still' }, 'x');
      await newer.expect('RECEIPT');
    } finally {
      await c.stop();
    }
  });

  describe('with an instance in this process (the library calls)', () => {
    let local: RunningServer;
    before(async () => {
      local = await startBroker({ REDIS_URL: redis.url, HEARTBEAT: '0,0', SINGLE_SESSION: 'reject', JWT_SECRET: SECRET });
    });
    after(() => local.stop());

    it('kick closes a session on another instance with ERROR KICKED within a second', async () => {
      const victim = await client(b.tcpPort, bearer(await mint(SECRET, { sub: 'kick-me' })));
      const sessionId = header(victim.frames[0]!, 'session')!;
      const startedAt = Date.now();
      const outcome = await local.admin.kickSession(sessionId);
      assert.deepEqual(outcome, { sessionsClosed: 1, instancesReached: 3 });
      const error = await victim.expect('ERROR', 1000);
      assert.ok(Date.now() - startedAt < 1000);
      assert.match(header(error, 'message') ?? '', /^KICKED:/);
      await victim.waitClosed();
    });

    it('logout closes every session of the user everywhere (LOGGED_OUT) and revokes earlier tokens (TOKEN_REVOKED)', async () => {
      const token = await mint(SECRET, { sub: 'leaver', iat: nowS() - 5 });
      const onA = await client(a.tcpPort, bearer(token));
      const unrelated = await client(b.tcpPort, bearer(await mint(SECRET, { sub: 'stays' })));
      const outcome = await local.admin.logoutUser('leaver');
      assert.equal(outcome.sessionsClosed, 1);
      assert.match(header(await onA.expect('ERROR', 1000), 'message') ?? '', /^LOGGED_OUT:/);
      await onA.waitClosed();
      for (const port of [a.tcpPort, b.tcpPort, local.tcpPort!]) {
        const again = await RawClient.tcp(port);
        clients.push(again);
        again.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0', ...bearer(token) });
        assert.match(header(await again.expect('ERROR'), 'message') ?? '', /^TOKEN_REVOKED:/, `old token refused on port ${port}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 1100)); // iat has one-second resolution
      await client(b.tcpPort, bearer(await mint(SECRET, { sub: 'leaver' })));
      unrelated.sendFrame('SEND', { destination: '/topic/x', receipt: 'alive' }, 'x');
      await unrelated.expect('RECEIPT');
    });
  });
});

describe('an instance killed with SIGKILL', { timeout: 120000 }, () => {
  it('its sessions are reaped once by one of two survivors within 10 s; its users reconnect at once under reject', async () => {
    const redis = await startRedis();
    const env = { REDIS_URL: redis.url, HEARTBEAT: '0,0', SINGLE_SESSION: 'reject' };
    const [doomed, survivor1, survivor2] = await Promise.all([BrokerProcess.start(env), BrokerProcess.start(env), BrokerProcess.start(env)]);
    try {
      for (const user of ['dana', 'eli', 'fay']) await client(doomed.tcpPort, { login: user });
      assert.equal(redis.cli('scard', `ws:instance:{${doomed.instanceId}}:sessions`).trim(), '3');
      const killedAt = Date.now();
      await doomed.kill();
      // At once: no waiting for the liveness key, no DUPLICATE_SESSION.
      const back = await client(survivor1.tcpPort, { login: 'dana' });
      assert.equal(back.frames[0]!.command, 'CONNECTED');
      const reapedLine = (line: { msg?: string; deadInstance?: unknown }) => line.msg === 'reaped a dead instance' && line.deadInstance === doomed.instanceId;
      await until(() => survivor1.lines.some(reapedLine) || survivor2.lines.some(reapedLine), 'a survivor to reap the dead instance', 10000);
      assert.ok(Date.now() - killedAt < 10000);
      await new Promise((resolve) => setTimeout(resolve, 2500)); // the other survivor's next rounds
      const reports = [...survivor1.lines, ...survivor2.lines].filter(reapedLine);
      assert.equal(reports.length, 1, 'reaped by one survivor');
      assert.equal(reports[0]!.sessions, 3, 'each session reported once');
      const lostLines = [...survivor1.lines, ...survivor2.lines].filter((l) => l.msg === 'session lost with its instance');
      assert.deepEqual(lostLines.map((l) => l.userId).sort(), ['dana', 'eli', 'fay']);
      assert.equal(redis.cli('exists', 'ws:user:{eli}').trim(), '0');
      assert.equal(redis.cli('sismember', 'ws:instances', doomed.instanceId).trim(), '0');
    } finally {
      await Promise.all([survivor1.stop(), survivor2.stop()]);
      await redis.stop();
    }
  });
});

describe('a client that goes silent', { timeout: 60000 }, () => {
  it('is dropped on heart-beat timeout and leaves the registry', async () => {
    const redis = await startRedis();
    const broker = await BrokerProcess.start({ REDIS_URL: redis.url });
    try {
      const silent = await RawClient.tcp(broker.tcpPort);
      clients.push(silent);
      const connected = await silent.connect({ login: 'goes-quiet', 'heart-beat': '200,0' });
      const key = `ws:session:{${header(connected, 'session')}}`;
      assert.equal(redis.cli('exists', key).trim(), '1');
      // It promised a beat every 200 ms and sends nothing more (a frozen tab): gone within 200 ms × grace plus a tick.
      await until(() => redis.cli('exists', key).trim() === '0', 'the silent session to leave the registry', 3000);
      assert.equal(redis.cli('exists', 'ws:user:{goes-quiet}').trim(), '0');
      await silent.waitClosed();
    } finally {
      await broker.stop();
      await redis.stop();
    }
  });
});
