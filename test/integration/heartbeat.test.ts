// Heart-beats on the wire and stale-session detection.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DisconnectEvent } from '../../src/session/events';
import type { RunningServer } from '../../src/server';
import { harness } from '../helpers/harness';
import { header } from '../helpers/raw-client';
import type { RawClient } from '../helpers/raw-client';

const h = harness({});
const broker = (overrides: Record<string, string>): Promise<RunningServer> => h.broker(overrides);
const client = (b: RunningServer): Promise<RawClient> => h.tcp(b);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('heart-beats', { timeout: 15000 }, () => {
  it('CONNECTED states the server setting, and the server sends EOLs while idle', async () => {
    const b = await broker({ HEARTBEAT: '100,100' });
    const c = await client(b);
    const connected = await c.connect({ 'heart-beat': '0,100' });
    assert.equal(header(connected, 'heart-beat'), '100,100');
    await sleep(650);
    assert.ok(c.heartbeatsReceived >= 4, `got ${c.heartbeatsReceived} heart-beats in 650 ms at a 100 ms interval`);
    assert.ok(c.heartbeatsReceived <= 14, `got ${c.heartbeatsReceived}: far more than one per interval`);
  });

  it('no EOLs when the client does not want them', async () => {
    const b = await broker({ HEARTBEAT: '100,100' });
    const c = await client(b);
    await c.connect({ 'heart-beat': '0,0' });
    await sleep(350);
    assert.equal(c.heartbeatsReceived, 0);
  });

  it('a peer that keeps sending EOLs stays connected', async () => {
    const b = await broker({ HEARTBEAT: '100,100', HEARTBEAT_GRACE: '1.5' });
    const c = await client(b);
    await c.connect({ 'heart-beat': '100,0' });
    for (let i = 0; i < 8; i++) {
      await sleep(60);
      c.send('\n');
    }
    assert.equal(c.isClosed, false);
  });

  it('a silent peer is declared dead after interval × grace and cleaned up like a DISCONNECT', async () => {
    const b = await broker({ HEARTBEAT: '100,100', HEARTBEAT_GRACE: '2' });
    const disconnects: DisconnectEvent[] = [];
    b.events.on('disconnect', (e) => disconnects.push(e));

    // Listens where the silent peer's open transaction holds a SEND: it must never arrive.
    const listener = await client(b);
    await listener.connect({ 'heart-beat': '0,0' });
    listener.sendFrame('SUBSCRIBE', { id: 'l', destination: '/topic/stale', receipt: 'listening' });
    await listener.expect('RECEIPT');

    const silent = await client(b);
    const connectedAt = Date.now();
    await silent.connect({ 'heart-beat': '100,0', login: 'ghost' });
    silent.sendFrame('SUBSCRIBE', { id: 's', destination: '/queue/stale', ack: 'client-individual' });
    silent.sendFrame('SUBSCRIBE', { id: 't', destination: '/topic/stale' });
    silent.sendFrame('BEGIN', { transaction: 'open' });
    silent.sendFrame('SEND', { destination: '/topic/stale', transaction: 'open', receipt: 'r' }, 'never committed');
    await silent.expect('RECEIPT');
    const pub = await client(b);
    await pub.connect({ 'heart-beat': '0,0' });
    pub.sendFrame('SEND', { destination: '/queue/stale' }, 'unacked');
    await silent.expect('MESSAGE');

    await silent.waitClosed(3000);
    const elapsed = Date.now() - connectedAt;
    assert.ok(elapsed >= 200, `closed after ${elapsed} ms, before 100 ms × 2`);
    const event = disconnects.find((e) => e.session.userId === 'ghost');
    assert.equal(event?.reason, 'heartbeat-timeout');
    await listener.expectSilence(300);
    assert.equal(listener.frames.filter((f) => f.command === 'MESSAGE').length, 0, "the dead session's open transaction was not committed");
    listener.sendFrame('UNSUBSCRIBE', { id: 'l', receipt: 'done' });
    await listener.expect('RECEIPT');

    const heir = await client(b);
    await heir.connect({ 'heart-beat': '0,0' });
    heir.sendFrame('SUBSCRIBE', { id: 'h', destination: '/queue/stale' });
    const redelivered = await heir.expect('MESSAGE');
    assert.equal(redelivered.body.toString(), 'unacked');
    assert.equal(b.router.stats().topics, 0, 'the dead session left no topic subscription behind');
  });

  it('a client asking to hear from us every 300 ms gets a beat about every 300 ms (default HEARTBEAT)', async () => {
    const b = await broker({});
    const c = await client(b);
    const connected = await c.connect({ 'heart-beat': '0,300' });
    assert.equal(header(connected, 'heart-beat'), '300,10000', 'CONNECTED meets the client: max(300, 300) = 300');
    const before = c.heartbeatsReceived;
    await sleep(3000);
    const beats = c.heartbeatsReceived - before;
    // One per interval (10 in 3 s), sent a little early (every ~270 ms): 11; twice the rate would be 20.
    assert.ok(beats >= 8, `got ${beats} heart-beats in 3000 ms at a 300 ms interval: the client would call us dead`);
    assert.ok(beats <= 13, `got ${beats} heart-beats in 3000 ms: more than one per interval`);
  });

  it('a client beating every 500 ms stays while it beats, and is dropped within about 3 intervals once silent', async () => {
    const b = await broker({});
    const disconnects: DisconnectEvent[] = [];
    b.events.on('disconnect', (e) => disconnects.push(e));
    const c = await client(b);
    const connected = await c.connect({ 'heart-beat': '500,0', login: 'beats-500' });
    assert.equal(header(connected, 'heart-beat'), '10000,500');
    for (let i = 0; i < 8; i++) {
      await sleep(200);
      c.send('\n');
    }
    assert.equal(c.isClosed, false, 'dropped while beating');
    const silentSince = Date.now();
    // 500 ms × HEARTBEAT_GRACE (2) plus a 250 ms check tick: well within 3 intervals (1500 ms);
    // the wait allows for a loaded machine, and is still far below our own 10 s setting.
    await c.waitClosed(3000);
    const silentMs = Date.now() - silentSince;
    assert.ok(silentMs >= 900, `dropped after ${silentMs} ms of silence, before 500 ms × 2`);
    assert.equal(disconnects.find((e) => e.session.userId === 'beats-500')?.reason, 'heartbeat-timeout');
  });

  it('stompjs defaults (10000,10000) get 10 s both ways, as the setting says', async () => {
    const b = await broker({});
    const c = await client(b);
    const connected = await c.connect({ 'heart-beat': '10000,10000' });
    assert.equal(header(connected, 'heart-beat'), '10000,10000');
    await sleep(600);
    assert.equal(c.heartbeatsReceived, 0, 'no beat long before 10 s');
    assert.equal(c.isClosed, false);
  });

  it('no faster than HEARTBEAT_MIN_MS', async () => {
    const b = await broker({ HEARTBEAT_MIN_MS: '250' });
    const c = await client(b);
    const connected = await c.connect({ 'heart-beat': '10,10' });
    assert.equal(header(connected, 'heart-beat'), '250,250');
  });

  it('a connection that sends no CONNECT in time is closed', async () => {
    const b = await broker({ CONNECT_TIMEOUT_MS: '150' });
    const c = await client(b);
    const error = await c.expect('ERROR', 2000);
    assert.match(header(error, 'message') ?? '', /^CONNECT_TIMEOUT/);
    await c.waitClosed();
  });
});
