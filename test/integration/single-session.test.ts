// Session binding and the single-session policy: off, reject, replace, per-user limits,
// the simultaneous-connect race, and a vanished client that must not lock its user out.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import type { DisconnectEvent } from '../../src/session/events';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { RawClient, header } from '../helpers/raw-client';

const brokers: RunningServer[] = [];
const clients: RawClient[] = [];

async function broker(overrides: Record<string, string>): Promise<RunningServer & { disconnects: DisconnectEvent[] }> {
  const b = await startBroker({ HEARTBEAT: '0,0', ...overrides });
  brokers.push(b);
  const disconnects: DisconnectEvent[] = [];
  b.events.on('disconnect', (e) => disconnects.push(e));
  return Object.assign(b, { disconnects });
}

async function client(b: RunningServer): Promise<RawClient> {
  const c = await RawClient.tcp(b.tcpPort!);
  clients.push(c);
  return c;
}

/** CONNECT as `login`; resolves with CONNECTED or ERROR, whichever comes. */
async function attempt(b: RunningServer, headers: Record<string, string>): Promise<{ c: RawClient; frame: Awaited<ReturnType<RawClient['next']>> }> {
  const c = await client(b);
  c.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0', ...headers });
  return { c, frame: await c.next() };
}

after(async () => {
  for (const c of clients) c.destroy();
  await Promise.all(brokers.map((b) => b.stop()));
});

describe('single-session policy', { timeout: 20000 }, () => {
  it('off (default): one user may hold several sessions', async () => {
    const b = await broker({});
    const first = await attempt(b, { login: 'pc-and-phone' });
    const second = await attempt(b, { login: 'pc-and-phone' });
    assert.equal(first.frame.command, 'CONNECTED');
    assert.equal(second.frame.command, 'CONNECTED');
    assert.equal((await b.registry.sessionsOf('pc-and-phone')).length, 2);
  });

  it('off with MAX_SESSIONS_PER_USER: beyond the limit is TOO_MANY_SESSIONS', async () => {
    const b = await broker({ MAX_SESSIONS_PER_USER: '2' });
    for (let i = 0; i < 2; i++) assert.equal((await attempt(b, { login: 'two' })).frame.command, 'CONNECTED');
    const third = await attempt(b, { login: 'two' });
    assert.match(header(third.frame, 'message') ?? '', /^TOO_MANY_SESSIONS/);
    await third.c.waitClosed();
  });

  it('reject: the second session gets DUPLICATE_SESSION and the first is untouched', async () => {
    const b = await broker({ SINGLE_SESSION: 'reject' });
    const first = await attempt(b, { login: 'solo' });
    first.c.sendFrame('SUBSCRIBE', { id: 's', destination: '/topic/solo', receipt: 'r' });
    await first.c.expect('RECEIPT');
    const second = await attempt(b, { login: 'solo' });
    assert.equal(second.frame.command, 'ERROR');
    assert.match(header(second.frame, 'message') ?? '', /^DUPLICATE_SESSION/);
    await second.c.waitClosed();
    const pub = await attempt(b, { login: 'publisher' });
    pub.c.sendFrame('SEND', { destination: '/topic/solo' }, 'still yours');
    assert.equal((await first.c.expect('MESSAGE')).body.toString(), 'still yours');
    assert.deepEqual(
      (await b.registry.sessionsOf('solo')).map((s) => s.sessionId),
      [header(first.frame, 'session')],
    );
  });

  it('reject: after a DISCONNECT the user may connect again', async () => {
    const b = await broker({ SINGLE_SESSION: 'reject' });
    const first = await attempt(b, { login: 'again' });
    first.c.sendFrame('DISCONNECT', { receipt: 'bye' });
    await first.c.expect('RECEIPT');
    await first.c.waitClosed();
    assert.equal((await attempt(b, { login: 'again' })).frame.command, 'CONNECTED');
  });

  it('reject: of simultaneous CONNECTs of one user exactly one wins', async () => {
    const b = await broker({ SINGLE_SESSION: 'reject' });
    for (let round = 0; round < 10; round++) {
      const racers = await Promise.all([1, 2, 3, 4].map(() => client(b)));
      for (const c of racers) c.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', login: `racer-${round}` });
      const frames = await Promise.all(racers.map((c) => c.next()));
      assert.equal(frames.filter((f) => f.command === 'CONNECTED').length, 1, `round ${round}`);
      assert.equal(frames.filter((f) => f.command === 'ERROR' && /^DUPLICATE_SESSION/.test(header(f, 'message') ?? '')).length, 3);
    }
  });

  it('reject with JWT: simultaneous CONNECTs with the same token, exactly one wins', async () => {
    const secret = 'a-secret-of-at-least-thirty-two-bytes!';
    const b = await broker({ SINGLE_SESSION: 'reject', JWT_SECRET: secret });
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('jwt-racer').setExpirationTime('1h').sign(Buffer.from(secret));
    const racers = await Promise.all([1, 2, 3, 4, 5].map(() => client(b)));
    for (const c of racers) c.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', Authorization: `Bearer ${token}` });
    const frames = await Promise.all(racers.map((c) => c.next()));
    assert.deepEqual(frames.map((f) => f.command).sort(), ['CONNECTED', 'ERROR', 'ERROR', 'ERROR', 'ERROR']);
  });

  it('replace: the newcomer wins, the old session gets SESSION_REPLACED and is closed', async () => {
    const b = await broker({ SINGLE_SESSION: 'replace' });
    const old = await attempt(b, { login: 'mover' });
    const oldId = header(old.frame, 'session');
    const newer = await attempt(b, { login: 'mover' });
    assert.equal(newer.frame.command, 'CONNECTED');
    const error = await old.c.expect('ERROR');
    assert.match(header(error, 'message') ?? '', /^SESSION_REPLACED/);
    await old.c.waitClosed();
    const event = b.disconnects.find((e) => e.session.sessionId === oldId);
    assert.equal(event?.reason, 'kicked');
    assert.equal(event?.errorCode, 'SESSION_REPLACED');
    assert.deepEqual(
      (await b.registry.sessionsOf('mover')).map((s) => s.sessionId),
      [header(newer.frame, 'session')],
    );
  });

  it('replace with MAX_SESSIONS_PER_USER=2: the oldest of three goes', async () => {
    const b = await broker({ SINGLE_SESSION: 'replace', MAX_SESSIONS_PER_USER: '2' });
    const [one, two] = [await attempt(b, { login: 'trio' }), await attempt(b, { login: 'trio' })];
    const three = await attempt(b, { login: 'trio' });
    assert.equal(three.frame.command, 'CONNECTED');
    assert.match(header(await one.c.expect('ERROR'), 'message') ?? '', /^SESSION_REPLACED/);
    await two.c.expectSilence(100);
    assert.equal((await b.registry.sessionsOf('trio')).length, 2);
  });

  it('anonymous sessions are never limited', async () => {
    const b = await broker({ SINGLE_SESSION: 'reject' });
    assert.equal((await attempt(b, {})).frame.command, 'CONNECTED');
    assert.equal((await attempt(b, {})).frame.command, 'CONNECTED');
  });

  it('a client that vanished without DISCONNECT does not lock its user out beyond the heart-beat bound', async () => {
    // Server wants to hear every 100 ms; grace 2: dead after 200 ms of silence.
    const b = await broker({ SINGLE_SESSION: 'reject', HEARTBEAT: '100,100', HEARTBEAT_GRACE: '2' });
    const ghost = await attempt(b, { login: 'vanisher', 'heart-beat': '100,0' });
    assert.equal(ghost.frame.command, 'CONNECTED');
    const lastHeardAt = Date.now(); // the ghost never sends another byte: a dead network looks like this
    const blocked = await attempt(b, { login: 'vanisher' });
    assert.match(header(blocked.frame, 'message') ?? '', /^DUPLICATE_SESSION/, 'while the old session may be alive, reject holds');

    let connectedAfterMs = -1;
    while (Date.now() - lastHeardAt < 3000) {
      const retry = await attempt(b, { login: 'vanisher' });
      if (retry.frame.command === 'CONNECTED') {
        connectedAfterMs = Date.now() - lastHeardAt;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    assert.ok(connectedAfterMs >= 200, `reconnected after ${connectedAfterMs} ms: before the heart-beat bound`);
    // bound: 100 ms × grace 2, plus one check tick (50 ms) and scheduling slack
    assert.ok(connectedAfterMs <= 800, `reconnected after ${connectedAfterMs} ms: the vanished session held the user too long`);
    assert.equal(b.disconnects.find((e) => e.session.userId === 'vanisher')?.reason, 'heartbeat-timeout');
  });

  it('a frozen client that asked for 1000,1000 locks its user out for under 3 s on the default HEARTBEAT', async () => {
    // HEARTBEAT at its default (10000,10000): the client's faster wish is what counts.
    const b = await broker({ SINGLE_SESSION: 'reject', HEARTBEAT: '10000,10000' });
    const frozen = await attempt(b, { login: 'freezer', 'heart-beat': '1000,1000' });
    assert.equal(frozen.frame.command, 'CONNECTED');
    assert.equal(header(frozen.frame, 'heart-beat'), '1000,1000');
    // Frozen: the socket stays open (no FIN) and reads, but nothing is sent any more.
    const frozenAt = Date.now();
    const blocked = await attempt(b, { login: 'freezer' });
    assert.match(header(blocked.frame, 'message') ?? '', /^DUPLICATE_SESSION/);

    let connectedAfterMs = -1;
    while (Date.now() - frozenAt < 6000) {
      const retry = await attempt(b, { login: 'freezer' });
      if (retry.frame.command === 'CONNECTED') {
        connectedAfterMs = Date.now() - frozenAt;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(connectedAfterMs >= 1500, `reconnected after ${connectedAfterMs} ms: before 1000 ms × grace 2`);
    // bound: 1000 ms × HEARTBEAT_GRACE 2, plus one check tick (500 ms)
    assert.ok(connectedAfterMs < 3000, `reconnected after ${connectedAfterMs} ms: the frozen session held the user too long`);
    assert.equal(frozen.c.isClosed, true, 'the frozen session was closed');
    assert.equal(b.disconnects.find((e) => e.session.userId === 'freezer')?.reason, 'heartbeat-timeout');
  });
});
