// Issue 21, point 7: look-alike reserved header names, the API publisher's identity,
// presence companion destinations and the users file's permissions, seen from outside.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { hashPassword } from '../../src/auth/users';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import type { ApiError } from '../helpers/api-shapes';
import { ApiClient } from '../helpers/http';
import { RawClient, clientsOfThisFile, connectedAs, header } from '../helpers/raw-client';

const TOKEN = 'smaller-points-admin-token-0123';
const LOOK_ALIKES = ['uſer-id', 'message-ıd', 'redelıvered', 'x-preſence', 'ｕｓｅｒ-ｉｄ', 'USER-İD', 'Ｘ-Ｄｒｏｐｐｅｄ', 'deſtination'];

let broker: RunningServer;
let api: ApiClient;
const clients = clientsOfThisFile();

before(async () => {
  broker = await startBroker({
    HEARTBEAT: '0,0',
    HTTP_PORT: '0',
    ADMIN_TOKEN: TOKEN,
    PRESENCE_DESTINATIONS: '/topic/room.*',
    PRESENCE_COMPANION_SUFFIX: '.presence',
  });
  api = new ApiClient(broker.httpPort!, TOKEN);
});

after(async () => {
  await broker.stop();
});

async function subscribed(login: string, destination: string): Promise<RawClient> {
  const c = await connectedAs(clients, broker.tcpPort!, login);
  c.sendFrame('SUBSCRIBE', { destination, id: 's', receipt: 'r' });
  await c.expect('RECEIPT');
  return c;
}

describe('reserved header names are compared after Unicode folding', { timeout: 20_000 }, () => {
  it('a SEND with look-alikes of user-id, message-id, redelivered, x-presence… reaches subscribers without them', async () => {
    const receiver = await subscribed('bob', '/topic/lookalike');
    const sender = await connectedAs(clients, broker.tcpPort!, 'mallory');
    sender.sendFrame('SEND', [['destination', '/topic/lookalike'], ...LOOK_ALIKES.map((name): [string, string] => [name, 'forged']), ['x-kept', 'yes']], 'hi');
    const message = await receiver.expect('MESSAGE');
    const names = message.headers.map(([name]) => name);
    for (const name of LOOK_ALIKES) assert.ok(!names.includes(name), `${name} was forwarded`);
    assert.equal(names.filter((n) => n === 'user-id').length, 1);
    assert.equal(header(message, 'user-id'), 'mallory');
    assert.equal(header(message, 'x-kept'), 'yes', 'ordinary user headers still pass');
  });

  it('POST /api/publish refuses a look-alike header name with 400 naming it', async () => {
    for (const name of ['x-preſence', 'uſer-id', 'Content-Type']) {
      const response = await api.post<ApiError>('/api/publish', { destination: '/topic/x', body: 'b', headers: { [name]: 'v' } });
      assert.equal(response.status, 400, name);
      assert.match(response.body.message, /is not a header name a publish may set/);
    }
  });
});

describe('the API publisher cannot be impersonated', { timeout: 20_000 }, () => {
  it('an API publish says user-id api/admin-token, a name no STOMP user can take', async () => {
    const receiver = await subscribed('carol', '/topic/announce');
    const published = await api.post<ApiError>('/api/publish', { destination: '/topic/announce', body: 'from the API' });
    assert.equal(published.status, 200, published.text);
    const message = await receiver.expect('MESSAGE');
    assert.equal(header(message, 'user-id'), 'api/admin-token');

    for (const login of ['api/admin-token', 'api/loopback']) {
      const impostor = await RawClient.tcp(broker.tcpPort!);
      clients.push(impostor);
      impostor.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', login });
      const error = await impostor.expect('ERROR');
      assert.match(header(error, 'message')!, /^UNAUTHENTICATED/);
    }
  });
});

describe("presence companion destinations are the broker's", { timeout: 20_000 }, () => {
  it('a client SEND there is refused with FORBIDDEN; the room itself takes chat', async () => {
    const watcher = await subscribed('dave', '/topic/room.1.presence');
    const member = await subscribed('erin', '/topic/room.1');
    const join = await watcher.expect('MESSAGE');
    assert.equal(header(join, 'x-presence'), 'join');

    member.sendFrame('SEND', { destination: '/topic/room.1', receipt: 'chat' }, 'hello');
    await member.waitUntil(() => member.frames.some((f) => f.command === 'MESSAGE' && f.body.toString() === 'hello'), 5000, 'the chat message');

    const forger = await connectedAs(clients, broker.tcpPort!, 'mallory');
    forger.sendFrame('SEND', { destination: '/topic/room.1.presence', 'content-type': 'application/json' }, JSON.stringify({ type: 'JOIN', userId: 'ceo' }));
    const error = await forger.expect('ERROR');
    assert.match(header(error, 'message')!, /^FORBIDDEN/);
    await forger.waitClosed();
    await watcher.expectSilence(300);
  });

  it('a companion of a destination that is no room is an ordinary topic', async () => {
    const receiver = await subscribed('frank', '/topic/news.presence');
    const sender = await connectedAs(clients, broker.tcpPort!, 'grace');
    sender.sendFrame('SEND', { destination: '/topic/news.presence' }, 'not presence');
    assert.equal((await receiver.expect('MESSAGE')).body.toString(), 'not presence');
  });

  it('POST /api/publish to a companion is refused with 400', async () => {
    const response = await api.post<ApiError>('/api/publish', { destination: '/topic/room.7.presence', body: '{"type":"JOIN"}' });
    assert.equal(response.status, 400);
    assert.match(response.body.message, /only the broker publishes there/);
  });
});

describe('a users file others may read is warned about', { timeout: 30_000 }, () => {
  async function startLogged(file: string): Promise<Record<string, unknown>[]> {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const usersBroker = await startBroker({ AUTH: 'users', USERS_FILE: file, HEARTBEAT: '0,0' }, { logger: pino({ level: 'info' }, stream) });
    await usersBroker.stop();
    return lines;
  }

  it('mode 0644: a warning naming USERS_FILE and the mode; 0600: none', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-users-'));
    const file = path.join(dir, 'users.json');
    fs.writeFileSync(file, JSON.stringify({ users: [{ login: 'alice', passwordHash: await hashPassword('pw', { N: 1024, r: 8, p: 1 }), roles: [] }] }));
    try {
      fs.chmodSync(file, 0o644);
      const warned = (await startLogged(file)).filter((l) => l.level === 40 && String(l.msg).includes('USERS_FILE'));
      assert.equal(warned.length, 1);
      assert.equal(warned[0]!.mode, '0644');
      fs.chmodSync(file, 0o600);
      const quiet = (await startLogged(file)).filter((l) => l.level === 40 && String(l.msg).includes('USERS_FILE'));
      assert.equal(quiet.length, 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
