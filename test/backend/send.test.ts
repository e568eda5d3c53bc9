// SEND to an app destination → POST /send → the answer routed: every answer shape, the call's
// fields and signature, errors told on /user/queue/errors, failures of the backend, order per
// session, and a broker without BACKEND_URL loading none of it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { harness } from '../helpers/harness';
import { header } from '../helpers/raw-client';
import type { RawClient } from '../helpers/raw-client';
import { startTestBackend } from '../helpers/backend';
import type { TestBackend } from '../helpers/backend';
import { capturedLog } from '../helpers/captured-log';
import { freePort } from '../helpers/free-port';
import { until } from '../helpers/until';

const h = harness();
const backends: TestBackend[] = [];
after(() => Promise.all(backends.map((b) => b.close())));

async function backend(): Promise<TestBackend> {
  const b = await startTestBackend();
  backends.push(b);
  return b;
}

const SECRET = 'backend-secret-0123456789';

async function subscribed(c: RawClient, destination: string, id = 's1'): Promise<void> {
  c.sendFrame('SUBSCRIBE', { destination, id, receipt: `sub-${id}` });
  await c.expect('RECEIPT');
}

describe('SEND to an app destination', () => {
  it('posts the documented fields, signed, and routes publish; a backend cannot forge reserved headers', async () => {
    const app = await backend();
    app.on('send', { publish: [{ destination: '/topic/chat', headers: { 'x-b': '2', 'user-id': 'mallory', 'x-presence': 'JOIN', redelivered: 'true', 'x-dropped': '3' }, body: 'HI' }] });
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_SECRET: SECRET });
    const listener = await h.connected(b, { login: 'bob' });
    await subscribed(listener, '/topic/chat');
    const alice = await h.connected(b, { login: 'alice' });
    alice.sendFrame('SEND', { destination: '/app/chat.send', 'x-a': '1', receipt: 'r1', 'content-type': 'text/plain' }, 'hi');
    const message = await listener.expect('MESSAGE');
    assert.equal(message.body.toString(), 'HI');
    assert.equal(header(message, 'x-b'), '2');
    assert.equal(header(message, 'user-id'), 'alice', 'the sender is named, not who the backend claims');
    for (const reserved of ['x-presence', 'redelivered', 'x-dropped']) assert.equal(header(message, reserved), undefined, reserved);
    const receipt = await alice.expect('RECEIPT');
    assert.equal(header(receipt, 'receipt-id'), 'r1');

    const [call] = app.callsOf('send');
    assert.ok(call);
    const body = call.body;
    assert.equal(typeof body.id, 'string');
    assert.equal(body.instanceId, b.config.instanceId);
    assert.equal(typeof body.sessionId, 'string');
    assert.equal(body.userId, 'alice');
    assert.deepEqual(body.roles, []);
    assert.deepEqual(body.attributes, {});
    assert.equal(body.transport, 'tcp');
    assert.match(String(body.remoteAddress), /^127\.0\.0\.1:\d+$/);
    assert.equal(body.destination, '/app/chat.send');
    assert.equal(body.lookup, '/chat.send');
    assert.deepEqual(body.headers, { 'x-a': '1', 'content-type': 'text/plain' });
    assert.equal(body.body, 'hi');
    assert.equal(body.receipt, 'r1');
    assert.equal(call.headers['x-stompd-signature'], `sha256=${createHmac('sha256', SECRET).update(call.raw).digest('hex')}`);
  });

  it('toUser reaches every session of the user, reply only the sender, a bare body goes to /topic + lookup', async () => {
    const app = await backend();
    app.on('send', { toUser: [{ userId: 'bob', destination: '/queue/notify', body: 'n' }], reply: [{ destination: '/queue/reply', body: 'r', headers: { 'x-r': '1' } }], body: 'ret', headers: { 'x-ret': 'y' } });
    const b = await h.broker({ BACKEND_URL: app.url });
    const bob1 = await h.connected(b, { login: 'bob' });
    const bob2 = await h.connected(b, { login: 'bob' });
    for (const c of [bob1, bob2]) await subscribed(c, '/user/queue/notify');
    const alice = await h.connected(b, { login: 'alice' });
    const aliceOther = await h.connected(b, { login: 'alice' });
    for (const c of [alice, aliceOther]) await subscribed(c, '/user/queue/reply');
    const topic = await h.connected(b, { login: 'carol' });
    await subscribed(topic, '/topic/chat.send');

    alice.sendFrame('SEND', { destination: '/app/chat.send', receipt: 'r' }, 'x');
    for (const c of [bob1, bob2]) {
      const m = await c.expect('MESSAGE');
      assert.equal(m.body.toString(), 'n');
      assert.equal(header(m, 'destination'), '/user/queue/notify');
    }
    const reply = await alice.expect('MESSAGE');
    assert.equal(reply.body.toString(), 'r');
    assert.equal(header(reply, 'x-r'), '1');
    assert.equal(header(reply, 'destination'), '/user/queue/reply');
    await alice.expect('RECEIPT');
    const returned = await topic.expect('MESSAGE');
    assert.equal(returned.body.toString(), 'ret');
    assert.equal(header(returned, 'x-ret'), 'y');
    await aliceOther.expectSilence(200);
  });

  it('binary bodies travel as bodyBase64 both ways', async () => {
    const app = await backend();
    const bytes = Buffer.from([0, 1, 2, 255, 254, 0, 10]);
    app.on('send', (body: Record<string, unknown>) => ({ publish: [{ destination: '/topic/bin', bodyBase64: body.bodyBase64, headers: { 'content-type': 'application/octet-stream' } }] }));
    const b = await h.broker({ BACKEND_URL: app.url });
    const listener = await h.connected(b, { login: 'bob' });
    await subscribed(listener, '/topic/bin');
    const alice = await h.connected(b, { login: 'alice' });
    alice.sendFrame('SEND', { destination: '/app/upload', 'content-type': 'application/octet-stream', receipt: 'r' }, bytes);
    const m = await listener.expect('MESSAGE');
    assert.deepEqual(m.body, bytes);
    assert.equal(app.callsOf('send')[0]!.body.bodyBase64, bytes.toString('base64'));
    assert.equal(app.callsOf('send')[0]!.body.body, undefined);
  });

  it('a queue destination through publish, and 204 means nothing to send but still a RECEIPT', async () => {
    const app = await backend();
    const b = await h.broker({ BACKEND_URL: app.url });
    const alice = await h.connected(b, { login: 'alice' });
    alice.sendFrame('SEND', { destination: '/app/noop', receipt: 'r0' }, 'x');
    assert.equal(header(await alice.expect('RECEIPT'), 'receipt-id'), 'r0');
    app.on('send', { publish: [{ destination: '/queue/work', body: 'job' }] });
    alice.sendFrame('SEND', { destination: '/app/job', receipt: 'r1' }, 'x');
    await alice.expect('RECEIPT');
    const worker = await h.connected(b, { login: 'w' });
    await subscribed(worker, '/queue/work');
    assert.equal((await worker.expect('MESSAGE')).body.toString(), 'job');
  });

  it('a non-fatal error is a MESSAGE on /user/queue/errors and the session stays; a fatal one is ERROR and close', async () => {
    const app = await backend();
    app.on('send', (body: Record<string, unknown>) => (body.lookup === '/fatal' ? { error: { message: 'go away', code: 'BANNED', fatal: true } } : { error: { message: 'name is required', code: 'VALIDATION' } }));
    const b = await h.broker({ BACKEND_URL: app.url });
    const alice = await h.connected(b, { login: 'alice' });
    await subscribed(alice, '/user/queue/errors');
    alice.sendFrame('SEND', { destination: '/app/form', receipt: 'r1' }, '{}');
    const error = await alice.expect('MESSAGE');
    assert.equal(header(error, 'x-error-code'), 'VALIDATION');
    assert.equal(header(error, 'message'), 'name is required');
    assert.equal(header(error, 'destination'), '/user/queue/errors');
    await alice.expect('RECEIPT'); // the backend answered 2xx: the frame was handled
    alice.sendFrame('SEND', { destination: '/app/fatal', receipt: 'r2' }, '{}');
    const fatal = await alice.expect('ERROR');
    assert.equal(header(fatal, 'message'), 'BANNED: go away');
    assert.equal(header(fatal, 'receipt-id'), 'r2');
    await alice.waitClosed();
  });

  for (const [what, setup] of [
    ['a timeout', (app: TestBackend) => app.on('send', async () => new Promise((resolve) => setTimeout(() => resolve({ body: 'late' }), 1500)))],
    ['HTTP 500', (app: TestBackend) => app.on('send', (_b: unknown, reply: { code(n: number): { send(t: string): unknown } }) => reply.code(500).send('boom'))],
    ['invalid JSON', (app: TestBackend) => app.on('send', (_b: unknown, reply: { type(t: string): { send(t: string): unknown } }) => reply.type('application/json').send('{"publish": ['))],
    ['an answer over BACKEND_MAX_RESPONSE_BYTES', (app: TestBackend) => app.on('send', { body: 'x'.repeat(5000) })],
    [
      'an answer over BACKEND_MAX_RESPONSE_BYTES without a content-length (chunked)',
      (app: TestBackend) =>
        app.on('send', (_b: unknown, reply: { type(t: string): { send(t: unknown): unknown } }) =>
          reply.type('application/json').send(Readable.from([Buffer.from('{"body":"'), Buffer.alloc(4000, 'x'), Buffer.from('"}')])),
        ),
    ],
    ['an answer breaking the contract', (app: TestBackend) => app.on('send', { publish: [{ destination: '/nowhere/x', body: 'x' }] })],
  ] as const) {
    it(`${what}: BACKEND_UNAVAILABLE to the sender, no RECEIPT, the connection stays, counted`, async () => {
      const app = await backend();
      setup(app);
      const b = await h.broker({ BACKEND_URL: app.url, BACKEND_TIMEOUT_MS: '300', BACKEND_MAX_RESPONSE_BYTES: '1024', HTTP_PORT: '0' });
      const alice = await h.connected(b, { login: 'alice' });
      await subscribed(alice, '/user/queue/errors');
      alice.sendFrame('SEND', { destination: '/app/x', receipt: 'r1' }, 'x');
      const error = await alice.expect('MESSAGE', 5000);
      assert.equal(header(error, 'x-error-code'), 'BACKEND_UNAVAILABLE');
      assert.equal(header(error, 'receipt-id'), 'r1');
      alice.sendFrame('SUBSCRIBE', { destination: '/topic/still-here', id: 's2', receipt: 'alive' });
      const next = await alice.expect('RECEIPT');
      assert.equal(header(next, 'receipt-id'), 'alive', 'no RECEIPT for the failed SEND came first');
      const metrics = await (await fetch(`http://127.0.0.1:${b.httpPort}/metrics`)).text();
      assert.match(metrics, /stompd_backend_calls_total\{hook="send",result="(timeout|status|invalid|too-large|ok)"\} 1/);
      assert.match(metrics, /stompd_backend_errors_total\{code="BACKEND_UNAVAILABLE"\} 1/);
      assert.match(metrics, /stompd_backend_call_seconds_count\{hook="send"\} 1/);
      assert.equal(app.callsOf('send').length, 1, 'no retry');
    });
  }

  it('app SENDs in a transaction are posted at COMMIT, one after another, in order', async () => {
    const app = await backend();
    let inFlight = 0;
    let overlaps = 0;
    app.on('send', async () => {
      if (++inFlight > 1) overlaps++;
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight--;
      return undefined;
    });
    const b = await h.broker({ BACKEND_URL: app.url });
    const alice = await h.connected(b, { login: 'alice' });
    alice.sendFrame('BEGIN', { transaction: 't' });
    for (let n = 0; n < 5; n++) alice.sendFrame('SEND', { destination: '/app/step', transaction: 't', 'x-n': String(n) }, '');
    alice.sendFrame('SEND', { destination: '/topic/t', receipt: 'before-commit' }, '');
    await alice.expect('RECEIPT');
    assert.equal(app.callsOf('send').length, 0, 'held until COMMIT');
    alice.sendFrame('COMMIT', { transaction: 't', receipt: 'c' });
    assert.equal(header(await alice.expect('RECEIPT'), 'receipt-id'), 'c');
    assert.deepEqual(
      app.callsOf('send').map((c) => (c.body.headers as Record<string, string>)['x-n']),
      ['0', '1', '2', '3', '4'],
    );
    assert.equal(overlaps, 0);
  });

  it('connection refused: BACKEND_UNAVAILABLE, the session stays, a warning is logged', async () => {
    const port = await freePort();
    const { logger, lines } = capturedLog();
    const b = await h.broker({ BACKEND_URL: `http://127.0.0.1:${port}/stomp` }, { logger });
    const alice = await h.connected(b, { login: 'alice' });
    await subscribed(alice, '/user/queue/errors');
    alice.sendFrame('SEND', { destination: '/app/x', receipt: 'r1' }, 'x');
    assert.equal(header(await alice.expect('MESSAGE'), 'x-error-code'), 'BACKEND_UNAVAILABLE');
    alice.sendFrame('SEND', { destination: '/topic/t', receipt: 'r2' }, 'x');
    assert.equal(header(await alice.expect('RECEIPT'), 'receipt-id'), 'r2');
    const warning = lines.find((l) => l.msg === 'backend hook failed: BACKEND_UNAVAILABLE to the sender');
    assert.ok(warning, 'the failure is logged');
    assert.match(String(warning.detail), /unreachable for \/send \(ECONNREFUSED\)/);
  });

  it("one session's SENDs reach the backend in order, one at a time, under load from many sessions", async () => {
    const app = await backend();
    const inFlight = new Map<string, number>();
    let overlaps = 0;
    app.on('send', async (body: Record<string, unknown>) => {
      const sessionId = String(body.sessionId);
      const now = (inFlight.get(sessionId) ?? 0) + 1;
      inFlight.set(sessionId, now);
      if (now > 1) overlaps++;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
      inFlight.set(sessionId, (inFlight.get(sessionId) ?? 1) - 1);
      return undefined;
    });
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_MAX_IN_FLIGHT: '4' });
    const senders = await Promise.all(Array.from({ length: 6 }, (_, i) => h.connected(b, { login: `u${i}` })));
    const perSession = 150;
    for (let n = 0; n < perSession; n++) for (const c of senders) c.sendFrame('SEND', { destination: '/app/seq', 'x-n': String(n) }, '');
    for (const c of senders) c.sendFrame('SEND', { destination: '/topic/done', receipt: 'done' }, '');
    for (const c of senders) await c.expect('RECEIPT', 30000);
    await until(() => app.callsOf('send').length === perSession * senders.length, 'every call', 10000);
    assert.equal(overlaps, 0, 'no session had two calls under way');
    const bySession = new Map<string, number[]>();
    for (const call of app.callsOf('send')) {
      const list = bySession.get(String(call.body.sessionId)) ?? [];
      list.push(Number((call.body.headers as Record<string, string>)['x-n']));
      bySession.set(String(call.body.sessionId), list);
    }
    assert.equal(bySession.size, senders.length);
    for (const list of bySession.values())
      assert.deepEqual(
        list,
        Array.from({ length: perSession }, (_, i) => i),
      );
  });

  it('calls reuse keep-alive connections of one pool, never one per call, and each has an id of its own', async () => {
    const app = await backend();
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_CONNECTIONS: '2' });
    const alice = await h.connected(b, { login: 'alice' });
    for (let n = 0; n < 30; n++) alice.sendFrame('SEND', { destination: '/app/step', receipt: `r${n}` }, String(n));
    await until(() => alice.frames.filter((f) => f.command === 'RECEIPT').length === 30, '30 receipts');
    const ports = new Set(app.callsOf('send').map((c) => c.remotePort));
    // undici may hand the next call to the pool's other connection while the last one settles: two at most.
    assert.ok(ports.size <= 2, `one session's 30 calls, one after another, over reused connections, not ${ports.size}`);
    const senders = await Promise.all(Array.from({ length: 8 }, (_, i) => h.connected(b, { login: `u${i}` })));
    for (let n = 0; n < 20; n++) for (const c of senders) c.sendFrame('SEND', { destination: '/app/step', receipt: `r${n}` }, String(n));
    for (const c of senders) await until(() => c.frames.filter((f) => f.command === 'RECEIPT').length === 20, '20 receipts each');
    const calls = app.callsOf('send');
    assert.equal(calls.length, 30 + 8 * 20);
    const allPorts = new Set(calls.map((c) => c.remotePort));
    assert.ok(allPorts.size <= 2, `190 calls from 9 sessions over at most BACKEND_CONNECTIONS=2 connections, not ${allPorts.size}`);
    assert.equal(new Set(calls.map((c) => c.body.id)).size, calls.length, 'every call has an id of its own');
  });

  it('at most BACKEND_MAX_IN_FLIGHT calls are under way on an instance; the others wait and all are answered', async () => {
    const app = await backend();
    let inFlight = 0;
    let most = 0;
    app.on('send', async () => {
      most = Math.max(most, ++inFlight);
      await new Promise((resolve) => setTimeout(resolve, 100));
      inFlight--;
      return undefined;
    });
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_MAX_IN_FLIGHT: '2' });
    const senders = await Promise.all(Array.from({ length: 6 }, (_, i) => h.connected(b, { login: `u${i}` })));
    for (const c of senders) c.sendFrame('SEND', { destination: '/app/slow', receipt: 'r' }, 'x');
    for (const c of senders) assert.equal(header(await c.expect('RECEIPT', 5000), 'receipt-id'), 'r');
    assert.equal(app.callsOf('send').length, 6);
    assert.equal(most, 2, 'the cap held, and was reached');
  });

  it('publish to /user/<id>/queue/…; no answer shape can forge reserved headers (publish, toUser, reply, a return value)', async () => {
    const app = await backend();
    const forged = { 'user-id': 'mallory', 'x-presence': 'JOIN', redelivered: 'true', 'x-dropped': '3', 'x-ok': 'kept' };
    app.on('send', {
      publish: [{ destination: '/user/bob/queue/direct', headers: forged, body: 'p' }],
      toUser: [{ userId: 'bob', destination: '/queue/notify', headers: forged, body: 't' }],
      reply: [{ destination: '/queue/reply', headers: forged, body: 'r' }],
      body: 'ret',
      headers: forged,
    });
    const b = await h.broker({ BACKEND_URL: app.url });
    const bob = await h.connected(b, { login: 'bob' });
    await subscribed(bob, '/user/queue/direct', 'd');
    await subscribed(bob, '/user/queue/notify', 'n');
    const topic = await h.connected(b, { login: 'carol' });
    await subscribed(topic, '/topic/forge');
    const alice = await h.connected(b, { login: 'alice' });
    await subscribed(alice, '/user/queue/reply');
    alice.sendFrame('SEND', { destination: '/app/forge', receipt: 'r' }, 'x');
    const received = [await bob.expect('MESSAGE'), await bob.expect('MESSAGE'), await alice.expect('MESSAGE'), await topic.expect('MESSAGE')];
    assert.deepEqual(received.map((m) => [header(m, 'destination'), m.body.toString()]).sort(), [
      ['/topic/forge', 'ret'],
      ['/user/queue/direct', 'p'],
      ['/user/queue/notify', 't'],
      ['/user/queue/reply', 'r'],
    ]);
    for (const m of received) {
      const where = header(m, 'destination');
      assert.equal(header(m, 'user-id'), 'alice', `${where}: the sender is named`);
      for (const reserved of ['x-presence', 'redelivered', 'x-dropped']) assert.equal(header(m, reserved), undefined, `${where}: ${reserved}`);
      assert.equal(header(m, 'x-ok'), 'kept', `${where}: other headers pass`);
    }
    await alice.expect('RECEIPT');
  });

  it('without BACKEND_URL, /app/ is unknown and neither undici nor src/backend/ is loaded', async () => {
    const b = await h.broker();
    const alice = await h.connected(b, { login: 'alice' });
    alice.sendFrame('SEND', { destination: '/app/x' }, 'x');
    assert.match(header(await alice.expect('ERROR'), 'message') ?? '', /^UNKNOWN_DESTINATION/);
    const script = `
      const { startBroker } = require(${JSON.stringify(path.resolve(__dirname, '../helpers/broker.js'))});
      startBroker({ HEARTBEAT: '0,0' }).then(async (b) => {
        const loaded = Object.keys(require.cache).filter((f) => f.includes('/node_modules/undici/') || f.includes('/src/backend/'));
        await b.stop();
        process.stdout.write(JSON.stringify(loaded));
      });`;
    const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 15000 });
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), []);
    const withBackend = spawnSync(process.execPath, ['-e', script.replace("{ HEARTBEAT: '0,0' }", "{ HEARTBEAT: '0,0', BACKEND_URL: 'http://127.0.0.1:9/stomp' }")], { encoding: 'utf8', timeout: 15000 });
    assert.ok(
      (JSON.parse(withBackend.stdout) as string[]).some((f) => f.includes('/node_modules/undici/')),
      'the check can fail: with BACKEND_URL undici is loaded',
    );
  });
});
