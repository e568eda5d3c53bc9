// A token that expires during the session: ERROR TOKEN_EXPIRED, close, and a client that
// reconnects by itself with a fresh token (@stomp/stompjs beforeConnect).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import type { RunningServer } from '../../src/server';
import type { DisconnectEvent } from '../../src/session/events';
import { startBroker } from '../helpers/broker';
import { header } from '../helpers/raw-client';
import { ClientPool, SECRET, accepted, bearer, mint, nowS } from '../helpers/jwt';

const pool = new ClientPool();
const stompClients: Client[] = [];
let b: RunningServer;
const disconnects: DisconnectEvent[] = [];

before(async () => {
  b = await startBroker({ HEARTBEAT: '0,0', JWT_SECRET: SECRET, JWT_CLOCK_TOLERANCE_S: '0' });
  b.events.on('disconnect', (event) => disconnects.push(event));
});

after(async () => {
  await Promise.all(stompClients.map((c) => c.deactivate()));
  pool.destroyAll();
  await b.stop();
});

// The two tests wait for real expiries; they are independent, so they run side by side.
describe('token expiry during a session', { timeout: 15000, concurrency: true }, () => {
  it('exp passes: ERROR TOKEN_EXPIRED, the connection closes, disconnect reason token-expired', async () => {
    const exp = nowS() + 2;
    const client = await pool.tcp(b.tcpPort);
    const connected = await accepted(client, bearer(await mint(SECRET, { sub: 'short-lived' }, { exp })), 'short-lived');
    const sessionId = header(connected, 'session');

    // Still alive before exp: a receipt comes back.
    client.sendFrame('SUBSCRIBE', { id: '0', destination: '/topic/t', receipt: 'alive' });
    const receipt = await client.expect('RECEIPT');
    assert.equal(header(receipt, 'receipt-id'), 'alive');
    assert.ok(Date.now() < exp * 1000);

    const error = await client.expect('ERROR', 4000);
    const at = Date.now();
    assert.ok((header(error, 'message') ?? '').startsWith('TOKEN_EXPIRED'), header(error, 'message'));
    assert.ok(at >= exp * 1000 - 20, `ERROR ${exp * 1000 - at} ms before exp`);
    assert.ok(at <= exp * 1000 + 1000, `ERROR ${at - exp * 1000} ms after exp`);
    await client.waitClosed();

    const event = disconnects.find((e) => e.session.sessionId === sessionId);
    assert.ok(event, 'no disconnect event for the session');
    assert.equal(event.reason, 'token-expired');
    assert.equal(event.errorCode, 'TOKEN_EXPIRED');
    assert.equal(event.session.userId, 'short-lived');
  });

  it('@stomp/stompjs gets TOKEN_EXPIRED and reconnects by itself with a fresh token from beforeConnect', async () => {
    const minted: string[] = [];
    const stompErrors: string[] = [];
    const connectedUsers: string[] = [];
    const startedAt = Date.now();
    await new Promise<void>((resolve, reject) => {
      const client = new Client({
        webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${b.wsPort}/ws`, ['v12.stomp']),
        reconnectDelay: 200,
        heartbeatIncoming: 0,
        heartbeatOutgoing: 0,
        beforeConnect: async () => {
          const token = await mint(SECRET, { sub: 'stompjs-user', n: minted.length }, { exp: nowS() + 2 });
          minted.push(token);
          client.connectHeaders = bearer(token);
        },
        onConnect: (frame) => {
          connectedUsers.push(frame.headers['user-name'] ?? '');
          if (connectedUsers.length === 2) resolve();
        },
        onStompError: (frame) => {
          stompErrors.push(frame.headers.message ?? '');
          if (!(frame.headers.message ?? '').startsWith('TOKEN_EXPIRED')) reject(new Error(`unexpected ERROR ${frame.headers.message}`));
        },
      });
      stompClients.push(client);
      client.activate();
    });
    assert.deepEqual(connectedUsers, ['stompjs-user', 'stompjs-user']);
    assert.equal(stompErrors.length, 1);
    assert.ok(stompErrors[0]!.startsWith('TOKEN_EXPIRED'), stompErrors[0]);
    assert.equal(minted.length, 2, 'one fresh token per (re)connect');
    assert.notEqual(minted[0], minted[1]);
    assert.ok(Date.now() - startedAt < 4000);
    const stompjsDisconnects = disconnects.filter((e) => e.session.userId === 'stompjs-user');
    assert.deepEqual(
      stompjsDisconnects.map((e) => e.reason),
      ['token-expired'],
    );
  });
});
