// The CONNECT hook (fail closed, cookie logins over WebSocket with unchanged stompjs, with JWT
// too, permissions, login refresh), the SUBSCRIBE hook (allow, refuse, cache, fail closed)
// and @SubscribeMapping-style app subscriptions, against a real Fastify backend.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IMessage } from '@stomp/stompjs';
import WebSocket from 'ws';
import { loadConfig } from '../../src/config';
import { harness } from '../helpers/harness';
import { header } from '../helpers/raw-client';
import { SECRET, mint } from '../helpers/jwt';
import { startTestBackend } from '../helpers/backend';
import type { TestBackend } from '../helpers/backend';
import { freePort } from '../helpers/free-port';
import { until } from '../helpers/until';
import { capturedLog } from '../helpers/captured-log';

const h = harness();
const backends: TestBackend[] = [];
const stompClients: Client[] = [];
after(async () => {
  await Promise.all(stompClients.map((c) => c.deactivate()));
  await Promise.all(backends.map((b) => b.close()));
});

async function backend(): Promise<TestBackend> {
  const b = await startTestBackend();
  backends.push(b);
  return b;
}

async function refusedWith(b: Awaited<ReturnType<typeof h.broker>>, headers: Record<string, string>): Promise<string> {
  const c = await h.tcp(b);
  c.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', ...headers });
  const error = await c.expect('ERROR', 5000);
  await c.waitClosed();
  return header(error, 'message') ?? '';
}

describe('CONNECT hook', () => {
  it('fails closed: a refusal, its code, a timeout, a 500, a refused connection, a 204 — never a session', async () => {
    const app = await backend();
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'connect', BACKEND_TIMEOUT_MS: '300' });
    app.on('connect', { error: { message: 'no web session' } });
    assert.match(await refusedWith(b, { login: 'alice' }), /^UNAUTHENTICATED: no web session/);
    app.on('connect', { error: { message: 'expired', code: 'SESSION_EXPIRED' } });
    assert.match(await refusedWith(b, {}), /^SESSION_EXPIRED: expired/);
    app.on('connect', async () => new Promise((resolve) => setTimeout(() => resolve({ userId: 'late' }), 1500)));
    assert.match(await refusedWith(b, {}), /^UNAVAILABLE: /);
    app.on('connect', (_body: unknown, reply: { code(n: number): { send(t: string): unknown } }) => reply.code(500).send('x'));
    assert.match(await refusedWith(b, {}), /^UNAVAILABLE: /);
    app.on('connect', undefined);
    assert.match(await refusedWith(b, {}), /^UNAUTHENTICATED: /);
    app.on('connect', { userId: 'alice', attributes: { blob: 'x'.repeat(17 * 1024) } });
    assert.match(await refusedWith(b, {}), /^UNAVAILABLE: .*attributes must be at most 16384 bytes/);
    app.on('connect', { roles: ['X'] });
    assert.match(await refusedWith(b, {}), /^UNAUTHENTICATED: the application answered no userId/);
    const down = await h.broker({ BACKEND_URL: `http://127.0.0.1:${await freePort()}/stomp`, BACKEND_HOOKS: 'connect' });
    assert.match(await refusedWith(down, { login: 'alice' }), /^UNAVAILABLE: /);
    assert.deepEqual(await b.registry.onlineUsers(), []);
    // The login header is not a user id when the hook decides: its answer is.
    app.on('connect', { userId: 'alice' });
    const c = await h.tcp(b);
    const connected = await c.connect({ login: 'mallory' });
    assert.equal(header(connected, 'user-name'), 'alice');
    assert.deepEqual(await b.registry.onlineUsers(), ['alice'], 'registered as the user the hook named');
    assert.deepEqual(app.callsOf('connect').at(-1)!.body.connectHeaders, { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0', login: 'mallory' });
  });

  it('a Spring-style cookie login over WebSocket with unchanged stompjs; attributes and roles reach later calls', async () => {
    const app = await backend();
    app.on('connect', (body: Record<string, unknown>) => {
      const http = body.http as Record<string, string>;
      return http.cookie === 'JSESSIONID=abc123' ? { userId: 'alice', roles: ['AGENT'], attributes: { tenant: 't1' } } : { error: { message: 'log in first' } };
    });
    app.on('send', { reply: [{ destination: '/queue/reply', body: 'pong' }] });
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'connect,send', BACKEND_FORWARD_HEADERS: 'cookie,origin,user-agent', ALLOWED_ORIGINS: 'http://app.example' });
    // The session cookie is ambient: a page of another origin cannot use it (cross-site WebSocket hijacking).
    await assert.rejects(h.ws(b, { headers: { cookie: 'JSESSIONID=abc123', origin: 'http://evil.example' } }), /HTTP 403/);
    const open = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'connect' });
    await assert.rejects(h.ws(open, { headers: { cookie: 'JSESSIONID=abc123', origin: 'http://evil.example' } }), /HTTP 403/, 'the cookie rule, without ALLOWED_ORIGINS too');
    const sameOrigin = await h.ws(open, { headers: { cookie: 'JSESSIONID=abc123', origin: `http://127.0.0.1:${open.wsPort}` } });
    assert.equal(header(await sameOrigin.connect(), 'user-name'), 'alice', "a page of the broker's own origin may");
    assert.equal(app.callsOf('connect').length, 1);
    app.calls.length = 0;
    const client = new Client({
      webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${b.wsPort}/ws`, ['v12.stomp'], { headers: { cookie: 'JSESSIONID=abc123', origin: 'http://app.example', 'user-agent': 'test-browser' } }),
      reconnectDelay: 0,
    });
    stompClients.push(client);
    const connected = new Promise<string>((resolve) => (client.onConnect = (frame) => resolve(frame.headers['user-name'] ?? '')));
    client.activate();
    assert.equal(await connected, 'alice');
    const reply = new Promise<IMessage>((resolve) => client.subscribe('/user/queue/reply', resolve));
    client.publish({ destination: '/app/ping', body: 'ping' });
    assert.equal((await reply).body, 'pong');
    const connectCall = app.callsOf('connect')[0]!.body;
    assert.deepEqual(connectCall.http, { cookie: 'JSESSIONID=abc123', origin: 'http://app.example', 'user-agent': 'test-browser' });
    assert.equal(connectCall.transport, 'ws');
    assert.equal(connectCall.userId, '');
    const sendCall = app.callsOf('send')[0]!.body;
    assert.equal(sendCall.userId, 'alice');
    assert.deepEqual(sendCall.roles, ['AGENT']);
    assert.deepEqual(sendCall.attributes, { tenant: 't1' });
    await client.deactivate();
  });

  it("the handshake's HTTP Authorization, forwarded to the hook, is ambient like a cookie: a browser attaches its cached Basic or Negotiate credentials to any page's socket", async () => {
    const app = await backend();
    const basic = { authorization: 'Basic YWxpY2U6Y29ycmVjdC1ob3JzZQ==' };
    app.on('connect', (body: Record<string, unknown>) => ((body.http as Record<string, string>).authorization === basic.authorization ? { userId: 'alice' } : { error: { message: 'log in first' } }));
    const log = capturedLog();
    // The default BACKEND_FORWARD_HEADERS forwards authorization.
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'connect' }, { logger: log.logger });
    for (const origin of ['http://evil.example', 'null', `http://127.0.0.1:${b.wsPort! + 1}`]) {
      await assert.rejects(h.ws(b, { headers: { ...basic, origin } }), /HTTP 403/, origin);
    }
    assert.equal(app.callsOf('connect').length, 0, 'the hook never saw them');
    const line = log.lines.find((l) => l.msg === 'connection refused: HTTP authorization from a foreign Origin');
    assert.equal(line?.origin, 'http://evil.example');
    assert.ok(!JSON.stringify(log.lines).includes('YWxpY2U6'), 'the credential is never logged');
    const sameOrigin = await h.ws(b, { headers: { ...basic, origin: `http://127.0.0.1:${b.wsPort}` } });
    assert.equal(header(await sameOrigin.connect(), 'user-name'), 'alice', "a page of the broker's own origin may");
    const node = await h.ws(b, { headers: basic });
    assert.equal(header(await node.connect(), 'user-name'), 'alice', 'no Origin: not a browser, not cross-site');

    const listed = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'connect', ALLOWED_ORIGINS: 'http://app.example' });
    const fromApp = await h.ws(listed, { headers: { ...basic, origin: 'http://app.example' } });
    assert.equal(header(await fromApp.connect(), 'user-name'), 'alice', 'a listed origin may');

    // Not forwarded: the hook never sees it, so it is nobody's credential and a foreign page goes on to CONNECT (and is refused there).
    const notForwarded = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'connect', BACKEND_FORWARD_HEADERS: 'origin' });
    const foreign = await h.ws(notForwarded, { headers: { ...basic, origin: 'http://evil.example' } });
    foreign.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/' });
    assert.match(header(await foreign.expect('ERROR'), 'message')!, /^UNAUTHENTICATED: log in first/);
  });

  it('with JWT auth the hook runs after the token check and sees the user; it cannot name another', async () => {
    const app = await backend();
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'connect', JWT_SECRET: SECRET });
    const token = await mint(SECRET, { sub: 'alice', roles: ['CUSTOMER'] });
    app.on('connect', { userId: 'alice', attributes: { plan: 'gold' } });
    const c = await h.tcp(b);
    assert.equal(header(await c.connect({ passcode: token }), 'user-name'), 'alice');
    const call = app.callsOf('connect')[0]!.body;
    assert.equal(call.userId, 'alice');
    assert.deepEqual(call.roles, ['CUSTOMER']);
    app.on('connect', { userId: 'bob' });
    assert.match(await refusedWith(b, { passcode: token }), /^UNAUTHENTICATED: the application named another user/);
    assert.match(await refusedWith(b, {}), /^UNAUTHENTICATED: no token/);
    assert.equal(app.callsOf('connect').length, 2, 'no token: the hook is not even asked');
  });

  it('permissions from the answer limit SUBSCRIBE and SEND', async () => {
    const app = await backend();
    app.on('connect', { userId: 'alice', permissions: { subscribe: ['/topic/room.*', '/user/{userId}/**'], send: ['/topic/room.*'] } });
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'connect' });
    const c = await h.connected(b);
    c.sendFrame('SUBSCRIBE', { destination: '/topic/room.1', id: '1', receipt: 'a' });
    await c.expect('RECEIPT');
    c.sendFrame('SUBSCRIBE', { destination: '/user/queue/x', id: '2', receipt: 'b' });
    await c.expect('RECEIPT');
    c.sendFrame('SEND', { destination: '/topic/room.1', receipt: 'c' }, 'x');
    await c.expect('MESSAGE');
    await c.expect('RECEIPT');
    c.sendFrame('SUBSCRIBE', { destination: '/topic/admin', id: '3' });
    assert.match(header(await c.expect('ERROR'), 'message') ?? '', /^FORBIDDEN: subscribe to \/topic\/admin/);
    const d = await h.connected(b);
    d.sendFrame('SEND', { destination: '/topic/other' }, 'x');
    assert.match(header(await d.expect('ERROR'), 'message') ?? '', /^FORBIDDEN: send to \/topic\/other/);
  });

  it('expiresAt: CONNECTED says x-token-expires; /refresh extends the login, or its refusal ends it with TOKEN_EXPIRED', async () => {
    const app = await backend();
    let refreshes = 0;
    app.on('connect', (body: Record<string, unknown>) => ({ userId: String((body.connectHeaders as Record<string, string>).login), expiresAt: Date.now() + 1500 }));
    app.on('refresh', (body: Record<string, unknown>) => {
      refreshes++;
      return body.userId === 'alice' ? { expiresAt: Number(body.expiresAt) + 60_000 } : { error: { message: 'web session over' } };
    });
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'connect,refresh' });
    const alice = await h.tcp(b);
    const connected = await alice.connect({ login: 'alice' });
    const expires = Number(header(connected, 'x-token-expires'));
    assert.ok(expires > Date.now() && expires <= Date.now() + 1500, `x-token-expires ${expires}`);
    const bob = await h.tcp(b);
    await bob.connect({ login: 'bob' });
    const ended = await bob.expect('ERROR', 5000);
    assert.match(header(ended, 'message') ?? '', /^TOKEN_EXPIRED: web session over/);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expires - Date.now()) + 500));
    alice.sendFrame('SEND', { destination: '/topic/t', receipt: 'still' }, 'x');
    assert.equal(header(await alice.expect('RECEIPT'), 'receipt-id'), 'still', 'alice outlived her first expiresAt');
    assert.equal(refreshes, 2);
    const refreshCall = app.callsOf('refresh').find((c) => c.body.userId === 'alice')!.body;
    assert.equal(refreshCall.expiresAt, expires);
  });

  it('lets AUTH=none listen beyond loopback only when the CONNECT hook decides', () => {
    assert.throws(() => loadConfig({ HOST: '0.0.0.0' }), /AUTH="none"/);
    assert.throws(() => loadConfig({ HOST: '0.0.0.0', BACKEND_URL: 'http://127.0.0.1:3000/stomp' }), /AUTH="none"/);
    assert.equal(loadConfig({ HOST: '0.0.0.0', BACKEND_URL: 'http://127.0.0.1:3000/stomp', BACKEND_HOOKS: 'connect' }).backend?.hooks.has('connect'), true);
    assert.throws(() => loadConfig({ BACKEND_HOOKS: 'send' }), /^Error|BACKEND_HOOKS="send": expected BACKEND_URL/);
    assert.throws(() => loadConfig({ BACKEND_URL: 'http://x/stomp', BACKEND_HOOKS: 'send,publish' }), /BACKEND_HOOKS/);
    assert.throws(() => loadConfig({ BACKEND_URL: 'http://x/stomp', APP_PREFIXES: '/topic/' }), /APP_PREFIXES/);
    assert.throws(() => loadConfig({ BACKEND_URL: 'ftp://x' }), /BACKEND_URL/);
    assert.throws(() => loadConfig({ BACKEND_URL: 'http://x/stomp', BACKEND_SUBSCRIBE_PATTERNS: '/topic/room.*' }), /BACKEND_SUBSCRIBE_PATTERNS=.*"subscribe" in BACKEND_HOOKS/);
    assert.throws(() => loadConfig({ BACKEND_SECRET: 'short' }), /BACKEND_SECRET="\(hidden\)"/);
    const config = loadConfig({ BACKEND_URL: 'http://127.0.0.1:3000/stomp/' });
    assert.equal(config.backend?.url, 'http://127.0.0.1:3000/stomp');
    assert.deepEqual([...config.backend.hooks], ['send']);
    assert.deepEqual(config.backend.appPrefixes, ['/app/']);
    assert.equal(config.backend.timeoutMs, 2000);
    assert.equal(config.backend.maxResponseBytes, 1048576);
    assert.deepEqual(config.backend.forwardHeaders, ['cookie', 'origin', 'authorization', 'user-agent']);
    assert.deepEqual([...config.backend.events], ['connect', 'disconnect', 'subscribe', 'unsubscribe']);
    assert.equal(loadConfig({}).backend, undefined);
    assert.equal(loadConfig({}).tokenRefreshDestination, '/stompd/token');
  });
});

describe('SUBSCRIBE hook', () => {
  it('decides BACKEND_SUBSCRIBE_PATTERNS: allow (cached per session), error → FORBIDDEN, failure → UNAVAILABLE', async () => {
    const app = await backend();
    app.on('subscribe', (body: Record<string, unknown>) => (body.destination === '/topic/room.1' ? { allow: true } : body.destination === '/topic/room.down' ? undefined : { error: { message: 'not your room' } }));
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'subscribe', BACKEND_SUBSCRIBE_PATTERNS: '/topic/room.*' });
    const c = await h.connected(b, { login: 'alice' });
    c.sendFrame('SUBSCRIBE', { destination: '/topic/room.1', id: 'a', receipt: 'a', 'x-filter': 'f' });
    await c.expect('RECEIPT');
    c.sendFrame('UNSUBSCRIBE', { id: 'a' });
    c.sendFrame('SUBSCRIBE', { destination: '/topic/room.1', id: 'b', receipt: 'b' });
    await c.expect('RECEIPT');
    c.sendFrame('SUBSCRIBE', { destination: '/topic/lobby', id: 'c', receipt: 'c' });
    await c.expect('RECEIPT');
    assert.equal(app.callsOf('subscribe').length, 1, 'cached for the session; /topic/lobby is not a pattern');
    const call = app.callsOf('subscribe')[0]!.body;
    assert.equal(call.destination, '/topic/room.1');
    assert.equal(call.subscriptionId, 'a');
    assert.deepEqual(call.headers, { 'x-filter': 'f' });
    assert.equal(call.userId, 'alice');
    c.sendFrame('SUBSCRIBE', { destination: '/topic/room.2', id: 'd' });
    assert.match(header(await c.expect('ERROR'), 'message') ?? '', /^FORBIDDEN: not your room/);
    const other = await h.connected(b, { login: 'bob' });
    other.sendFrame('SUBSCRIBE', { destination: '/topic/room.down', id: 'e' });
    assert.match(header(await other.expect('ERROR'), 'message') ?? '', /^FORBIDDEN: /, 'no allow: refused');
    await backends.at(-1)!.close();
    const third = await h.connected(b, { login: 'carol' });
    third.sendFrame('SUBSCRIBE', { destination: '/topic/room.1', id: 'f' });
    assert.match(header(await third.expect('ERROR', 5000), 'message') ?? '', /^UNAVAILABLE: /);
  });

  it('a SUBSCRIBE to an app destination is answered once (@SubscribeMapping) and keeps no subscription', async () => {
    const app = await backend();
    app.on('subscribe', (body: Record<string, unknown>) => ({ body: JSON.stringify({ rooms: ['a', 'b'], for: body.userId, lookup: body.lookup }), headers: { 'content-type': 'application/json' } }));
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'send,subscribe' });
    const c = await h.connected(b, { login: 'alice' });
    c.sendFrame('SUBSCRIBE', { destination: '/app/rooms', id: 'init-1', receipt: 'r' });
    const message = await c.expect('MESSAGE');
    assert.equal(header(message, 'subscription'), 'init-1');
    assert.equal(header(message, 'destination'), '/app/rooms');
    assert.equal(header(message, 'content-type'), 'application/json');
    assert.deepEqual(JSON.parse(message.body.toString()), { rooms: ['a', 'b'], for: 'alice', lookup: '/rooms' });
    await c.expect('RECEIPT');
    const session = [...b.sessions()].find((s) => s.userId === 'alice')!;
    assert.equal(session.subscriptions.size, 0);
    // Over stompjs too, as a Spring client calls it.
    const client = new Client({ webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${b.wsPort}/ws`, ['v12.stomp']), connectHeaders: { login: 'bob' }, reconnectDelay: 0 });
    stompClients.push(client);
    const connected = new Promise<void>((resolve) => (client.onConnect = () => resolve()));
    client.activate();
    await connected;
    const once = new Promise<IMessage>((resolve) => client.subscribe('/app/rooms', resolve));
    assert.equal((JSON.parse((await once).body) as { for: string }).for, 'bob');
    await until(() => app.callsOf('subscribe').length === 2, 'the second call');
    await client.deactivate();
  });
});
