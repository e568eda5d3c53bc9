// Where the token comes from, over the transport that can carry it, and which one wins.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { ClientPool, OTHER_SECRET, SECRET, WS_REFUSAL_CLOSE_MS, accepted, bearer, mint, refused } from '../helpers/jwt';

const pool = new ClientPool();
let b: RunningServer;
let alice: string;
let bob: string;
let carol: string;
let forged: string;

before(async () => {
  b = await startBroker({ HEARTBEAT: '0,0', JWT_SECRET: SECRET });
  [alice, bob, carol, forged] = await Promise.all([mint(SECRET, { sub: 'alice' }), mint(SECRET, { sub: 'bob' }), mint(SECRET, { sub: 'carol' }), mint(OTHER_SECRET, { sub: 'mallory' })]);
});

after(async () => {
  pool.destroyAll();
  await b.stop();
});

const wsWithQuery = (token: string): { path: string } => ({ path: `/ws?access_token=${encodeURIComponent(token)}` });
const wsWithCookie = (token: string): { headers: Record<string, string> } => ({ headers: { cookie: `theme=dark; access_token=${token}; lang=en` } });

// Independent tests on one broker, all run concurrently: a WebSocket refusal currently takes ~5 s to close.
describe('where the token comes from', { timeout: 15000, concurrency: true }, () => {
  describe('token sources', { timeout: 15000, concurrency: true }, () => {
    it('CONNECT `Authorization: Bearer` over TCP', async () => {
      await accepted(await pool.tcp(b.tcpPort), bearer(alice), 'alice');
    });

    it('CONNECT `Authorization: Bearer` over WebSocket', async () => {
      await accepted(await pool.ws(b.wsPort), bearer(alice), 'alice');
    });

    it('the Bearer scheme is case-insensitive, and `authorization` in lower case works too', async () => {
      await accepted(await pool.tcp(b.tcpPort), { Authorization: `bearer ${bob}` }, 'bob');
      await accepted(await pool.tcp(b.tcpPort), { authorization: `Bearer ${bob}` }, 'bob');
    });

    it('CONNECT `passcode` over TCP (login is not the user id)', async () => {
      await accepted(await pool.tcp(b.tcpPort), { login: 'someone-else', passcode: bob }, 'bob');
    });

    it('CONNECT `passcode` over WebSocket', async () => {
      await accepted(await pool.ws(b.wsPort), { passcode: bob }, 'bob');
    });

    it('the WebSocket URL query `access_token`', async () => {
      await accepted(await pool.ws(b.wsPort, wsWithQuery(carol)), {}, 'carol');
    });

    it('the `access_token` cookie of the WebSocket handshake', async () => {
      await accepted(await pool.ws(b.wsPort, wsWithCookie(carol)), {}, 'carol');
    });

    it('a bad token in the query → UNAUTHENTICATED', async () => {
      await refused(await pool.ws(b.wsPort, wsWithQuery(forged)), {}, 'UNAUTHENTICATED', WS_REFUSAL_CLOSE_MS);
    });

    it('a bad token in the cookie → UNAUTHENTICATED', async () => {
      await refused(await pool.ws(b.wsPort, wsWithCookie(forged)), {}, 'UNAUTHENTICATED', WS_REFUSAL_CLOSE_MS);
    });

    it('a WebSocket without any token → UNAUTHENTICATED', async () => {
      await refused(await pool.ws(b.wsPort, { headers: { cookie: 'session=abc' } }), {}, 'UNAUTHENTICATED', WS_REFUSAL_CLOSE_MS);
    });
  });

  describe('token source precedence', { timeout: 15000, concurrency: true }, () => {
    it('Authorization (bad) wins over the query (good) → UNAUTHENTICATED', async () => {
      await refused(await pool.ws(b.wsPort, wsWithQuery(alice)), bearer(forged), 'UNAUTHENTICATED', WS_REFUSAL_CLOSE_MS);
    });

    it('Authorization (user A) wins over passcode (user B) → A, over TCP and WebSocket', async () => {
      await accepted(await pool.tcp(b.tcpPort), { ...bearer(alice), passcode: bob }, 'alice');
      await accepted(await pool.ws(b.wsPort), { ...bearer(alice), passcode: bob }, 'alice');
    });

    it('Authorization (bad) wins over passcode (good) → UNAUTHENTICATED', async () => {
      await refused(await pool.tcp(b.tcpPort), { ...bearer(forged), passcode: bob }, 'UNAUTHENTICATED');
    });

    it('passcode wins over the query, and the query over the cookie', async () => {
      await accepted(await pool.ws(b.wsPort, wsWithQuery(carol)), { passcode: bob }, 'bob');
      await accepted(await pool.ws(b.wsPort, { ...wsWithQuery(alice), ...wsWithCookie(carol) }), {}, 'alice');
    });

    it('the query (bad) wins over the cookie (good) → UNAUTHENTICATED', async () => {
      await refused(await pool.ws(b.wsPort, { ...wsWithQuery(forged), ...wsWithCookie(carol) }), {}, 'UNAUTHENTICATED', WS_REFUSAL_CLOSE_MS);
    });

    it('Authorization wins over the cookie', async () => {
      await accepted(await pool.ws(b.wsPort, wsWithCookie(carol)), bearer(bob), 'bob');
    });
  });

  describe('closing after a refusal', { timeout: 15000, concurrency: true }, () => {
    it('a refused CONNECT over TCP is closed promptly', async () => {
      const startedAt = Date.now();
      await refused(await pool.tcp(b.tcpPort), bearer(forged), 'UNAUTHENTICATED', 1000);
      assert.ok(Date.now() - startedAt < 1000);
    });

    it('a refused CONNECT over WebSocket is closed as promptly as over TCP', async () => {
      const startedAt = Date.now();
      await refused(await pool.ws(b.wsPort), bearer(forged), 'UNAUTHENTICATED', 1000);
      assert.ok(Date.now() - startedAt < 1000);
    });
  });
});
