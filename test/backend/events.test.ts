// Session events to /events in embedded mode: exactly the documented events and fields, in
// order, batched by at most 100, delivered at least once after the backend was down, bounded
// with the oldest dropped and counted.

import assert from 'node:assert/strict';
import type { SessionEvent } from '../../src/backend/contract';
import { after, describe, it } from 'node:test';
import stompit from 'stompit';
import { harness } from '../helpers/harness';
import { header } from '../helpers/raw-client';
import { SECRET, mint, nowS } from '../helpers/jwt';
import { startTestBackend } from '../helpers/backend';
import type { TestBackend } from '../helpers/backend';
import { until } from '../helpers/until';

const h = harness();
const backends: TestBackend[] = [];
after(() => Promise.all(backends.map((b) => b.close())));

async function backend(): Promise<TestBackend> {
  const b = await startTestBackend();
  backends.push(b);
  return b;
}

/** An event as the backend receives it: the contract's own type. */
type Event = SessionEvent;

/** Every event delivered with a 2xx, in delivery order (a failed call's events are not counted). */
function delivered(app: TestBackend, accepted: Set<unknown>): Event[] {
  return app
    .callsOf('events')
    .filter((c) => accepted.has(c.body))
    .flatMap((c) => c.body.events as Event[]);
}

/** Answer /events with `status` while `isDown()`, else 200; remember which calls were accepted. */
function eventsEndpoint(app: TestBackend, isDown: () => boolean): Set<unknown> {
  const accepted = new Set<unknown>();
  app.on('events', (body: unknown, reply: { code(n: number): { send(t: string): unknown } }) => {
    if (isDown()) return reply.code(503).send('down');
    accepted.add(body);
    return {};
  });
  return accepted;
}

function stompitConnect(port: number, login: string): Promise<stompit.Client> {
  return new Promise((resolve, reject) => {
    stompit.connect({ host: '127.0.0.1', port, connectHeaders: { host: '/', login, 'heart-beat': '0,0' } }, (error, client) => (error ? reject(error) : resolve(client)));
  });
}

describe('session events', () => {
  it("CONNECT, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT with the documented fields, in order, with presence's reasons", async () => {
    const app = await backend();
    const accepted = eventsEndpoint(app, () => false);
    app.on('connect', (body: Record<string, unknown>) => ({ userId: String((body.connectHeaders as Record<string, string>).login), roles: ['AGENT'], attributes: { desk: 7 } }));
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'connect,events' });
    const client = await stompitConnect(b.tcpPort!, 'alice');
    const subscription = client.subscribe({ destination: '/topic/room.1', ack: 'auto' }, () => undefined);
    await until(() => [...b.sessions()].some((s) => s.subscriptions.size === 1), 'the subscription');
    subscription.unsubscribe();
    await until(() => [...b.sessions()].every((s) => s.subscriptions.size === 0), 'the unsubscription');
    await new Promise<void>((resolve) => client.disconnect(() => resolve()));
    const raw = await h.connected(b, { login: 'bob' });
    raw.sendFrame('SUBSCRIBE', { destination: '/topic/room.2', id: 's' });
    raw.destroy(); // a closed tab: socket-closed, and no UNSUBSCRIBE for what the session's end implies

    await until(() => delivered(app, accepted).length === 7, '7 events', 10000);
    const events = delivered(app, accepted);
    const alice = events.filter((e) => e.userId === 'alice');
    assert.deepEqual(
      alice.map((e) => [e.type, e.destination, e.reason]),
      [
        ['CONNECT', undefined, undefined],
        ['SUBSCRIBE', '/topic/room.1', undefined],
        ['UNSUBSCRIBE', '/topic/room.1', undefined],
        ['DISCONNECT', undefined, 'disconnect'],
      ],
    );
    const bob = events.filter((e) => e.userId === 'bob');
    assert.deepEqual(
      bob.map((e) => [e.type, e.destination, e.reason]),
      [
        ['CONNECT', undefined, undefined],
        ['SUBSCRIBE', '/topic/room.2', undefined],
        ['DISCONNECT', undefined, 'socket-closed'],
      ],
    );
    const first = alice[0]!;
    assert.deepEqual(Object.keys(first).sort(), ['at', 'attributes', 'id', 'instanceId', 'roles', 'sessionId', 'type', 'userId']);
    assert.deepEqual(first.roles, ['AGENT']);
    assert.deepEqual(alice.at(-1)!.attributes, { desk: 7 }, 'the DISCONNECT still carries the attributes');
    assert.equal(first.instanceId, b.config.instanceId);
    assert.ok(Math.abs(first.at - Date.now()) < 60_000);
    assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'ids are unique');
    assert.equal(new Set(alice.map((e) => e.sessionId)).size, 1);
  });

  it("DISCONNECT's reason is presence's: heartbeat-timeout, kicked, logged-out, token-expired", async () => {
    const app = await backend();
    const accepted = eventsEndpoint(app, () => false);
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'events', BACKEND_EVENTS: 'disconnect', HEARTBEAT: '100,100', JWT_SECRET: SECRET, JWT_CLOCK_TOLERANCE_S: '0' });
    const login = async (user: string, headers: Record<string, string> = {}, exp = nowS() + 600): Promise<string> => {
      const c = await h.tcp(b);
      const connected = await c.connect({ passcode: await mint(SECRET, { sub: user }, { exp }), ...headers });
      return header(connected, 'session')!;
    };
    await login('silent', { 'heart-beat': '100,0' }); // promises heart-beats, sends none
    await b.admin.kickSession(await login('kicked'));
    await login('leaver');
    await b.admin.logoutUser('leaver');
    // Valid for 2-3 s: long enough to be CONNECTED on a busy machine (nowS() + 1 could lapse first), short enough to expire here.
    await login('expiring', {}, nowS() + 3);
    await until(() => delivered(app, accepted).length === 4, 'four disconnects', 15000);
    assert.deepEqual(
      delivered(app, accepted)
        .map((e) => [e.userId, e.type, e.reason])
        .sort(),
      [
        ['expiring', 'DISCONNECT', 'token-expired'],
        ['kicked', 'DISCONNECT', 'kicked'],
        ['leaver', 'DISCONNECT', 'logged-out'],
        ['silent', 'DISCONNECT', 'heartbeat-timeout'],
      ],
    );
  });

  it('BACKEND_EVENTS chooses which: disconnects only', async () => {
    const app = await backend();
    const accepted = eventsEndpoint(app, () => false);
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'events', BACKEND_EVENTS: 'disconnect' });
    const c = await h.connected(b, { login: 'alice' });
    c.sendFrame('SUBSCRIBE', { destination: '/topic/x', id: '1' });
    c.sendFrame('DISCONNECT', { receipt: 'bye' });
    await c.expect('RECEIPT');
    await until(() => delivered(app, accepted).length === 1, 'the disconnect');
    assert.deepEqual(
      delivered(app, accepted).map((e) => [e.type, e.reason]),
      [['DISCONNECT', 'disconnect']],
    );
  });

  it('delivered in order, at most 100 a call, after the backend was down for a while', async () => {
    const app = await backend();
    let isDown = true;
    const accepted = eventsEndpoint(app, () => isDown);
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'events', HTTP_PORT: '0' });
    const c = await h.connected(b, { login: 'alice' });
    for (let i = 0; i < 80; i++) {
      c.sendFrame('SUBSCRIBE', { destination: `/topic/t.${i}`, id: String(i) });
      c.sendFrame('UNSUBSCRIBE', { id: String(i) });
    }
    c.sendFrame('DISCONNECT', { receipt: 'bye' });
    await c.expect('RECEIPT');
    await until(() => app.callsOf('events').length >= 3, 'a few failed attempts', 10000);
    const metrics = await (await fetch(`http://127.0.0.1:${b.httpPort}/metrics`)).text();
    assert.match(metrics, /stompd_backend_pending_events 162/);
    assert.match(metrics, /stompd_backend_calls_total\{hook="events",result="status"\} [1-9]/);
    isDown = false;
    await until(() => delivered(app, accepted).length >= 162, 'every event', 15000);
    const events = delivered(app, accepted);
    assert.equal(events.length, 162, 'each delivered once after the 2xx');
    assert.deepEqual(
      events.slice(1, 5).map((e) => [e.type, e.destination]),
      [
        ['SUBSCRIBE', '/topic/t.0'],
        ['UNSUBSCRIBE', '/topic/t.0'],
        ['SUBSCRIBE', '/topic/t.1'],
        ['UNSUBSCRIBE', '/topic/t.1'],
      ],
    );
    assert.equal(events[0]!.type, 'CONNECT');
    assert.equal(events.at(-1)!.type, 'DISCONNECT');
    for (const call of app.callsOf('events')) assert.ok((call.body.events as unknown[]).length <= 100);
    // A failed call is sent again with the same events and ids.
    const firstFailed = app.callsOf('events')[0]!.body.events as Event[];
    assert.deepEqual(
      firstFailed.map((e) => e.id),
      events.slice(0, firstFailed.length).map((e) => e.id),
    );
  });

  it('bounded: past BACKEND_MAX_PENDING_EVENTS the oldest are dropped and counted', async () => {
    const app = await backend();
    let isDown = true;
    const accepted = eventsEndpoint(app, () => isDown);
    const b = await h.broker({ BACKEND_URL: app.url, BACKEND_HOOKS: 'events', BACKEND_MAX_PENDING_EVENTS: '100', HTTP_PORT: '0' });
    const c = await h.connected(b, { login: 'alice' });
    for (let i = 0; i < 75; i++) {
      c.sendFrame('SUBSCRIBE', { destination: `/topic/t.${i}`, id: String(i) });
      c.sendFrame('UNSUBSCRIBE', { id: String(i), receipt: i === 74 ? 'last' : `u${i}` });
    }
    await until(() => c.frames.filter((f) => f.command === 'RECEIPT').length === 75, 'the receipts');
    const metrics = await (await fetch(`http://127.0.0.1:${b.httpPort}/metrics`)).text();
    assert.match(metrics, /stompd_backend_pending_events 100/);
    assert.match(metrics, /stompd_backend_dropped_events_total 51/);
    isDown = false;
    await until(() => delivered(app, accepted).length === 100, 'the kept events', 15000);
    const events = delivered(app, accepted);
    assert.deepEqual([events[0]!.type, events[0]!.destination], ['SUBSCRIBE', '/topic/t.25'], 'the newest 100 were kept');
    assert.deepEqual([events.at(-1)!.type, events.at(-1)!.destination], ['UNSUBSCRIBE', '/topic/t.74']);
  });
});
