// ALLOWED_ORIGINS: a WebSocket handshake from an origin not listed gets 403, before STOMP.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { RawClient } from '../helpers/raw-client';

let broker: RunningServer;
const clients: RawClient[] = [];

before(async () => {
  broker = await startBroker({ HEARTBEAT: '0,0', ALLOWED_ORIGINS: 'https://app.example.com, https://admin.example.com' });
});

after(async () => {
  for (const c of clients) c.destroy();
  await broker.stop();
});

describe('WebSocket Origin check', { timeout: 10000 }, () => {
  it('refuses an origin not listed with 403, and no session is created', async () => {
    let connects = 0;
    broker.events.on('connect', () => connects++);
    await assert.rejects(RawClient.ws(broker.wsPort!, { headers: { Origin: 'https://evil.example.com' } }), /HTTP 403/);
    assert.equal([...broker.sessions()].length, 0);
    assert.equal(connects, 0);
  });

  it('accepts listed origins, in any case', async () => {
    for (const origin of ['https://app.example.com', 'https://ADMIN.example.com']) {
      const c = await RawClient.ws(broker.wsPort!, { headers: { Origin: origin } });
      clients.push(c);
      await c.connect();
    }
  });

  it('accepts handshakes without Origin (not from a browser)', async () => {
    const c = await RawClient.ws(broker.wsPort!);
    clients.push(c);
    await c.connect();
  });

  it('TCP is not affected', async () => {
    const c = await RawClient.tcp(broker.tcpPort!);
    clients.push(c);
    await c.connect();
  });
});

describe('Origin refusals are logged', { timeout: 10000 }, () => {
  it('at info, with the remote address and the origin, at most one line a second', async () => {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const logged = await startBroker({ HEARTBEAT: '0,0', ALLOWED_ORIGINS: 'https://app.example.com' }, { logger: pino({ level: 'info' }, stream) });
    try {
      for (let i = 0; i < 5; i++) await assert.rejects(RawClient.ws(logged.wsPort!, { headers: { Origin: 'https://evil.example.com' } }), /HTTP 403/);
      const refusals = lines.filter((l) => l.msg === 'connection refused: Origin not allowed');
      assert.equal(refusals.length, 1, 'five refusals within a second: one line');
      assert.equal(refusals[0]!.origin, 'https://evil.example.com');
      assert.match(String(refusals[0]!.remoteAddress), /^127\.0\.0\.1:\d+$/);
      assert.equal(refusals[0]!.level, 30);
    } finally {
      await logged.stop();
    }
  });
});
