// Lifecycle events: what the registry, presence and metrics will be fed.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import type { DisconnectEvent, SessionInfo, SubscriptionEvent } from '../../src/session/events';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { RawClient } from '../helpers/raw-client';

const brokers: RunningServer[] = [];
const clients: RawClient[] = [];

interface Recorded {
  log: string[];
  disconnects: DisconnectEvent[];
}

async function broker(overrides: Record<string, string> = {}): Promise<RunningServer & { recorded: Recorded }> {
  const b = await startBroker({ HEARTBEAT: '0,0', ...overrides });
  brokers.push(b);
  const recorded: Recorded = { log: [], disconnects: [] };
  b.events.on('connect', (s: SessionInfo) => recorded.log.push(`connect ${s.userId}`));
  b.events.on('subscribe', (e: SubscriptionEvent) => recorded.log.push(`subscribe ${e.session.userId} ${e.destination}`));
  b.events.on('unsubscribe', (e: SubscriptionEvent) => recorded.log.push(`unsubscribe ${e.session.userId} ${e.destination}`));
  b.events.on('disconnect', (e: DisconnectEvent) => {
    recorded.log.push(`disconnect ${e.session.userId} ${e.reason}`);
    recorded.disconnects.push(e);
  });
  return Object.assign(b, { recorded });
}

async function connected(b: RunningServer, login: string): Promise<RawClient> {
  const c = await RawClient.tcp(b.tcpPort!);
  clients.push(c);
  await c.connect({ login });
  return c;
}

async function reasonFor(b: { recorded: Recorded }, userId: string): Promise<DisconnectEvent> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const found = b.recorded.disconnects.find((e) => e.session.userId === userId);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no disconnect event for ${userId}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

after(async () => {
  for (const c of clients) c.destroy();
  await Promise.all(brokers.map((b) => b.stop()));
});

describe('lifecycle events', { timeout: 10000 }, () => {
  it('connect, subscribe, unsubscribe and disconnect arrive in order with the session info', async () => {
    const b = await broker();
    let info: SessionInfo | undefined;
    b.events.once('connect', (s) => (info = s));
    const c = await connected(b, 'ann');
    c.sendFrame('SUBSCRIBE', { id: '1', destination: '/topic/a' });
    c.sendFrame('SUBSCRIBE', { id: '2', destination: '/queue/b' });
    c.sendFrame('UNSUBSCRIBE', { id: '1' });
    c.sendFrame('DISCONNECT', { receipt: 'r' });
    await c.waitClosed();
    assert.equal((await reasonFor(b, 'ann')).reason, 'client');
    assert.deepEqual(b.recorded.log, ['connect ann', 'subscribe ann /topic/a', 'subscribe ann /queue/b', 'unsubscribe ann /topic/a', 'unsubscribe ann /queue/b', 'disconnect ann client']);
    assert.equal(info?.transport, 'tcp');
    assert.equal(info?.version, '1.2');
    assert.equal(info?.isAnonymous, false);
    assert.ok((info?.connectedAt ?? 0) > 0);
    assert.match(info?.remoteAddress ?? '', /^127\.0\.0\.1:\d+$/);
  });

  it('a socket closed without DISCONNECT: socket-closed', async () => {
    const b = await broker();
    const c = await connected(b, 'tab');
    c.close();
    assert.equal((await reasonFor(b, 'tab')).reason, 'socket-closed');
  });

  it('a reset socket: socket-error', async () => {
    const b = await broker();
    const socket = net.connect(b.tcpPort!, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('CONNECT\naccept-version:1.2\nhost:/\nlogin:reset\n\n\0');
    await new Promise((resolve) => socket.once('data', resolve));
    socket.resetAndDestroy();
    assert.equal((await reasonFor(b, 'reset')).reason, 'socket-error');
  });

  it('a refused frame: error-sent, with the code', async () => {
    const b = await broker();
    const c = await connected(b, 'bad');
    c.sendFrame('SEND', {}, 'no destination');
    const event = await reasonFor(b, 'bad');
    assert.equal(event.reason, 'error-sent');
    assert.equal(event.errorCode, 'MISSING_HEADER');
  });

  it('kicked by the broker: kicked, and the client gets an ERROR', async () => {
    const b = await broker();
    const c = await connected(b, 'kickme');
    const session = [...b.sessions()].find((s) => s.principal?.userId === 'kickme');
    session?.kick('KICKED', 'removed by an administrator');
    assert.match((await c.expect('ERROR')).headers.find(([n]) => n === 'message')?.[1] ?? '', /^KICKED/);
    assert.equal((await reasonFor(b, 'kickme')).reason, 'kicked');
  });

  it('shutdown: every session gets an ERROR and a shutdown event; the ports close', async () => {
    const b = await broker();
    const c = await connected(b, 'late');
    await b.stop();
    assert.match((await c.expect('ERROR')).headers.find(([n]) => n === 'message')?.[1] ?? '', /^SERVER_SHUTDOWN/);
    assert.equal((await reasonFor(b, 'late')).reason, 'shutdown');
    await assert.rejects(RawClient.tcp(b.tcpPort!));
    assert.equal([...b.sessions()].length, 0);
  });

  it('a session that never connected emits nothing', async () => {
    const b = await broker();
    const c = await RawClient.tcp(b.tcpPort!);
    clients.push(c);
    c.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(b.recorded.log, []);
  });
});
