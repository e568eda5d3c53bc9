// In-band token refresh with unchanged @stomp/stompjs (publish + watchForReceipt, as README
// shows): the session outlives its first token; another user's, an invalid or an expired token
// ends it; roles lost with a subscription that needs them end it with FORBIDDEN.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IFrame } from '@stomp/stompjs';
import WebSocket from 'ws';
import type { RunningServer } from '../../src/server';
import { harness } from '../helpers/harness';
import { SECRET, mint, nowS } from '../helpers/jwt';

const h = harness();
const clients: Client[] = [];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-refresh-'));
after(async () => {
  await Promise.all(clients.map((c) => c.deactivate()));
  fs.rmSync(dir, { recursive: true, force: true });
});

const aclFile = path.join(dir, 'acl.json');
fs.writeFileSync(
  aclFile,
  JSON.stringify({
    default: 'deny',
    rules: [
      { effect: 'allow', roles: ['AGENT'], destinations: ['/topic/agents.**'] },
      { effect: 'allow', destinations: ['/topic/public.**', '/user/{userId}/**'] },
    ],
  }),
);

interface Connected {
  client: Client;
  connected: IFrame;
  error: Promise<IFrame>;
  closed: Promise<void>;
}

function connect(b: RunningServer, token: string): Promise<Connected> {
  return new Promise((resolve, reject) => {
    let failed: (frame: IFrame) => void = () => undefined;
    let wasClosed: () => void = () => undefined;
    const error = new Promise<IFrame>((r) => (failed = r));
    const closed = new Promise<void>((r) => (wasClosed = r));
    const client = new Client({
      webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${b.wsPort}/ws`, ['v12.stomp']),
      connectHeaders: { Authorization: `Bearer ${token}` },
      reconnectDelay: 0,
      onConnect: (frame) => resolve({ client, connected: frame, error, closed }),
      onStompError: (frame) => {
        failed(frame);
        reject(new Error(frame.headers.message));
      },
      onWebSocketClose: () => wasClosed(),
    });
    clients.push(client);
    client.activate();
  });
}

/** What README shows: publish the new token, wait for its receipt. */
function refreshToken(client: Client, token: string, receipt: string): Promise<void> {
  return new Promise((resolve) => {
    client.watchForReceipt(receipt, () => resolve());
    client.publish({ destination: '/stompd/token', headers: { token, receipt } });
  });
}

describe('in-band token refresh', { timeout: 30_000 }, () => {
  it("CONNECTED says x-token-expires; a fresh token for the same user keeps the session past the first one's exp", async () => {
    const b = await h.broker({ JWT_SECRET: SECRET, JWT_CLOCK_TOLERANCE_S: '0', ACL_FILE: aclFile });
    const firstExp = nowS() + 2;
    const { client, connected, closed } = await connect(b, await mint(SECRET, { sub: 'alice', roles: ['AGENT'] }, { exp: firstExp }));
    assert.equal(connected.headers['x-token-expires'], String(firstExp * 1000));
    const messages: string[] = [];
    client.subscribe('/topic/agents.queue', (m) => messages.push(m.body));
    await refreshToken(client, await mint(SECRET, { sub: 'alice', roles: ['AGENT'] }, { exp: nowS() + 60 }), 'refresh-1');
    let isClosed = false;
    void closed.then(() => (isClosed = true));
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstExp * 1000 - Date.now()) + 800));
    assert.equal(isClosed, false, 'still open after the first token expired');
    await new Promise<void>((resolve) => {
      client.watchForReceipt('sent', () => resolve());
      client.publish({ destination: '/topic/agents.queue', body: 'still here', headers: { receipt: 'sent' } });
    });
    assert.deepEqual(messages, ['still here']);
    const session = [...b.sessions()][0]!;
    assert.ok(session.principal!.expiresAtMs! > Date.now() + 30_000);
  });

  it('a token for another user, an invalid one or an expired one: ERROR and close', async () => {
    const b = await h.broker({ JWT_SECRET: SECRET, JWT_CLOCK_TOLERANCE_S: '0' });
    for (const [token, code] of [
      [await mint(SECRET, { sub: 'bob' }), 'UNAUTHENTICATED: the new token is for another user'],
      ['not.a.token', 'UNAUTHENTICATED'],
      [await mint(SECRET, { sub: 'alice' }, { exp: nowS() - 10 }), 'TOKEN_EXPIRED'],
    ] as const) {
      const { client, error, closed } = await connect(b, await mint(SECRET, { sub: 'alice' }));
      client.publish({ destination: '/stompd/token', headers: { token, receipt: 'r' } });
      const frame = await error;
      assert.ok(frame.headers.message!.startsWith(code), `${frame.headers.message} starts with ${code}`);
      assert.equal(frame.headers['receipt-id'], 'r');
      await closed;
    }
  });

  it('roles lost: a subscription the new token no longer allows ends the session with FORBIDDEN', async () => {
    const b = await h.broker({ JWT_SECRET: SECRET, ACL_FILE: aclFile });
    const { client, error, closed } = await connect(b, await mint(SECRET, { sub: 'alice', roles: ['AGENT'] }));
    client.subscribe('/topic/public.news', () => undefined);
    client.subscribe('/topic/agents.queue', () => undefined);
    client.publish({ destination: '/stompd/token', headers: { token: await mint(SECRET, { sub: 'alice', roles: ['CUSTOMER'] }), receipt: 'r' } });
    const frame = await error;
    assert.match(frame.headers.message!, /^FORBIDDEN: after the token refresh, the subscription to \/topic\/agents.queue is no longer allowed/);
    await closed;
  });
});
