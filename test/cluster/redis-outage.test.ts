// Redis stops (SIGKILL) and comes back empty, mid-traffic, under two stompd processes: no
// instance crashes or stops serving its own clients, CONNECTs follow the stated policy
// (admitted when no session limit needs deciding, UNAVAILABLE when one does), and once
// Redis is back every instance re-subscribes and re-registers its live sessions.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BrokerProcess } from '../helpers/broker-process';
import { startBroker } from '../helpers/broker';
import { SECRET, bearer, mint } from '../helpers/jwt';
import { until as untilWithin } from '../helpers/until';
import { RawClient, clientsOfThisFile, connectedAs, header } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';

const clients = clientsOfThisFile();
const until = (condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10000): Promise<void> => untilWithin(condition, what, timeoutMs);

const client = (port: number, login: string): Promise<RawClient> => connectedAs(clients, port, login);

describe('Redis killed and restarted empty, mid-traffic', { timeout: 120000 }, () => {
  it('local delivery goes on, CONNECTs follow the policy, and relay and registry come back', async () => {
    const redis = await startRedis();
    const env = { REDIS_URL: redis.url, HEARTBEAT: '0,0' };
    const [a, b, strict] = await Promise.all([BrokerProcess.start(env), BrokerProcess.start(env), BrokerProcess.start({ ...env, SINGLE_SESSION: 'reject' })]);
    try {
      const subA = await client(a.tcpPort, 'watcher-a');
      const subB = await client(b.tcpPort, 'watcher-b');
      for (const c of [subA, subB]) {
        c.sendFrame('SUBSCRIBE', { destination: '/topic/live', id: 'live', receipt: 'r' });
        await c.expect('RECEIPT');
      }
      const numsub = (): number => Number(redis.cli('pubsub', 'numsub', 'ws:dest:/topic/live').trim().split('\n')[1]);
      await until(() => numsub() === 2, 'both instances on the channel');
      const pub = await client(a.tcpPort, 'publisher');
      pub.sendFrame('SEND', { destination: '/topic/live' }, 'before');
      for (const c of [subA, subB]) assert.equal((await c.expect('MESSAGE')).body.toString(), 'before');

      await redis.kill();
      await until(() => a.lines.some((l) => l.msg?.startsWith('Redis unavailable')), 'A to say it is degraded');

      // Local delivery never stops; the hop to B is lost (pub/sub is at-most-once).
      pub.sendFrame('SEND', { destination: '/topic/live', receipt: 'during' }, 'during');
      await pub.expect('RECEIPT');
      assert.equal((await subA.expect('MESSAGE')).body.toString(), 'during');
      // No session limit to decide: admitted, registered later. A limit to decide: refused.
      const newcomer = await client(b.tcpPort, 'newcomer');
      assert.equal(newcomer.frames[0]!.command, 'CONNECTED');
      const refused = await RawClient.tcp(strict.tcpPort);
      clients.push(refused);
      refused.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0', login: 'careful' });
      assert.match(header(await refused.expect('ERROR', 5000), 'message') ?? '', /^UNAVAILABLE:/);
      // A session that ends during the outage must not linger in Redis afterwards.
      const leaver = await client(b.tcpPort, 'leaves-during-outage');
      leaver.destroy();
      await new Promise((resolve) => setTimeout(resolve, 200));

      await redis.restart(); // empty: this Redis keeps nothing on disk
      await until(() => numsub() === 2, 'both instances back on the channel');
      await until(() => redis.cli('exists', 'ws:user:{newcomer}').trim() === '1', 'the newcomer registered');
      for (const user of ['watcher-a', 'watcher-b', 'publisher']) assert.equal(redis.cli('exists', `ws:user:{${user}}`).trim(), '1', `${user} re-registered`);
      assert.equal(redis.cli('exists', 'ws:user:{leaves-during-outage}').trim(), '0', 'a session gone during the outage stays gone');
      for (const instance of [a, b, strict]) assert.equal(redis.cli('exists', `ws:instance:{${instance.instanceId}}`).trim(), '1');
      await until(() => b.lines.some((l) => l.msg === 'Redis available again: registry and relay restored'), 'B to say it recovered');

      pub.sendFrame('SEND', { destination: '/topic/live' }, 'after');
      for (const c of [subA, subB]) assert.equal((await c.expect('MESSAGE')).body.toString(), 'after');
      await subB.expectSilence(200); // 'during' never arrives late, nothing twice

      const ok = await client(strict.tcpPort, 'careful');
      assert.equal(ok.frames[0]!.command, 'CONNECTED', 'decisions possible again');
    } finally {
      await Promise.all([a.stop(), b.stop(), strict.stop()]);
      await redis.stop();
    }
  });
});

describe('token CONNECTs while Redis is away', { timeout: 60000 }, () => {
  it('are admitted, and a logout made before the outage still refuses the revoked tokens (also after Redis restarted empty)', async () => {
    const redis = await startRedis();
    const env = { REDIS_URL: redis.url, HEARTBEAT: '0,0', JWT_SECRET: SECRET };
    const local = await startBroker(env);
    const other = await BrokerProcess.start(env);
    try {
      const oldToken = await mint(SECRET, { sub: 'ousted' });
      await local.admin.logoutUser('ousted'); // stored in Redis and told to every instance
      await new Promise((resolve) => setTimeout(resolve, 1100)); // tokens minted from now on are newer
      await redis.kill();
      await until(() => other.lines.some((l) => l.msg?.startsWith('Redis unavailable')), 'the other instance to be degraded');

      const connectWith = async (port: number, token: string) => {
        const c = await RawClient.tcp(port);
        clients.push(c);
        c.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0', ...bearer(token) });
        return c.next(5000);
      };
      assert.equal((await connectWith(other.tcpPort, await mint(SECRET, { sub: 'fresh' }))).command, 'CONNECTED', 'no INTERNAL_ERROR, no refusal for want of Redis');
      assert.match(header(await connectWith(other.tcpPort, oldToken), 'message') ?? '', /^TOKEN_REVOKED:/, 'the other instance remembers the logout');
      assert.match(header(await connectWith(local.tcpPort!, oldToken), 'message') ?? '', /^TOKEN_REVOKED:/);

      await redis.restart(); // empty
      await until(() => redis.cli('exists', `ws:instance:{${other.instanceId}}`).trim() === '1', 'the other instance back');
      assert.match(header(await connectWith(local.tcpPort!, oldToken), 'message') ?? '', /^TOKEN_REVOKED:/, 'remembered though Redis forgot');
      assert.equal((await connectWith(local.tcpPort!, await mint(SECRET, { sub: 'ousted' }))).command, 'CONNECTED', 'a new token works');
    } finally {
      await other.stop();
      await local.stop();
      await redis.stop();
    }
  });
});
