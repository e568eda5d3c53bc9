// ALLOWED_ORIGINS: a WebSocket handshake from an origin not listed gets 403, before STOMP.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
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
