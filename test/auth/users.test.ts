// AUTH=users: login and passcode against a file of scrypt hashes, seen by real clients
// (@stomp/stompjs over ws, raw TCP), plus what the file may and may not contain.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, mock } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IFrame } from '@stomp/stompjs';
import WebSocket from 'ws';
import { DEFAULT_SCRYPT_PARAMS, UsersFile, hashPassword, parsePasswordHash, parseUsers } from '../../src/auth/users';
import { ConfigError, loadConfig } from '../../src/config';
import type { RunningServer } from '../../src/server';
import { harness } from '../helpers/harness';
import { ClientPool, accepted, recordConnects, refused, sessionOf } from '../helpers/jwt';

/** Cheaper than the default so the suite stays quick; the file's parameters are what counts. */
const TEST_PARAMS = { N: 2048, r: 8, p: 1 };

const pool = new ClientPool();
const h = harness();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-users-'));
const stompClients: Client[] = [];
after(async () => {
  pool.destroyAll();
  await Promise.all(stompClients.map((c) => c.deactivate()));
  fs.rmSync(dir, { recursive: true, force: true });
});

let usersPath: string;
let broker: RunningServer;

async function writeUsers(file: string, users: { login: string; password: string; roles?: string[] }[]): Promise<void> {
  const entries = await Promise.all(users.map(async (u) => ({ login: u.login, passwordHash: await hashPassword(u.password, TEST_PARAMS), roles: u.roles ?? [] })));
  fs.writeFileSync(file, JSON.stringify({ users: entries }));
}

before(async () => {
  usersPath = path.join(dir, 'users.json');
  await writeUsers(usersPath, [
    { login: 'alice', password: 'correct horse', roles: ['AGENT'] },
    { login: 'carol', password: 'battery staple' },
  ]);
  broker = await h.broker({ AUTH: 'users', USERS_FILE: usersPath });
});

/** What stompjs's own spec does: connect, and report whichever of onConnect / onStompError comes. */
function stompjsAttempt(connectHeaders: Record<string, string>): Promise<{ connected?: IFrame; error?: IFrame; closed: Promise<void> }> {
  return new Promise((resolve) => {
    let closedResolve!: () => void;
    const closed = new Promise<void>((r) => (closedResolve = r));
    const client = new Client({
      webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${broker.wsPort}/ws`, ['v12.stomp']),
      connectHeaders,
      reconnectDelay: 0,
      onConnect: (frame) => resolve({ connected: frame, closed }),
      onStompError: (frame) => resolve({ error: frame, closed }),
      onWebSocketClose: () => closedResolve(),
    });
    stompClients.push(client);
    client.activate();
  });
}

describe('AUTH=users with @stomp/stompjs', { timeout: 20000 }, () => {
  // stompjs spec/unit/connection.spec: "Should not connect with invalid credentials".
  it('should not connect with invalid credentials: onStompError with a string body, never onConnect; the broker closes', async () => {
    const attempt = await stompjsAttempt({ login: 'alice', passcode: 'bad-passcode' });
    assert.equal(attempt.connected, undefined, 'onConnect must not be called');
    assert.ok(attempt.error, 'onStompError is called');
    assert.equal(typeof attempt.error.body, 'string');
    assert.match(attempt.error.headers.message ?? '', /^UNAUTHENTICATED: wrong login or passcode/);
    await attempt.closed;
  });

  it('connects with the right passcode: the login is the user id', async () => {
    const attempt = await stompjsAttempt({ login: 'alice', passcode: 'correct horse' });
    assert.ok(attempt.connected, `refused: ${attempt.error?.headers.message}`);
    assert.equal(attempt.connected.headers['user-name'], 'alice');
  });
});

describe('AUTH=users over TCP', { timeout: 20000 }, () => {
  it("the entry's roles become the session's; an entry without roles has none", async () => {
    const connects = recordConnects(broker);
    const alice = sessionOf(connects, await accepted(await pool.tcp(broker.tcpPort), { login: 'alice', passcode: 'correct horse' }, 'alice'));
    assert.deepEqual(alice.roles, ['AGENT']);
    assert.equal(alice.isAnonymous, false);
    const carol = sessionOf(connects, await accepted(await pool.tcp(broker.tcpPort), { login: 'carol', passcode: 'battery staple' }, 'carol'));
    assert.deepEqual(carol.roles, []);
  });

  it("a wrong passcode, another user's passcode, an unknown login: the same refusal", async () => {
    const messages: string[] = [];
    const attempts: Record<string, string>[] = [
      { login: 'alice', passcode: 'wrong' },
      { login: 'alice', passcode: 'battery staple' },
      { login: 'mallory', passcode: 'correct horse' },
      { login: 'alice' },
      { login: 'alice', passcode: '' },
      { login: 'ALICE', passcode: 'correct horse' },
    ];
    for (const headers of attempts) {
      const frame = await refused(await pool.tcp(broker.tcpPort), headers, 'UNAUTHENTICATED');
      messages.push(frame.headers.find(([name]) => name === 'message')![1]);
    }
    assert.equal(new Set(messages).size, 1, `one message for all: ${messages.join(' | ')}`);
  });

  it('no login → UNAUTHENTICATED and a close', async () => {
    await refused(await pool.tcp(broker.tcpPort), {}, 'UNAUTHENTICATED');
    await refused(await pool.tcp(broker.tcpPort), { login: '', passcode: 'correct horse' }, 'UNAUTHENTICATED');
  });

  it("an unknown login costs what a known one does: one asynchronous scrypt with the file's parameters", async () => {
    const scrypt = mock.method(crypto, 'scrypt');
    try {
      await refused(await pool.tcp(broker.tcpPort), { login: 'alice', passcode: 'wrong' }, 'UNAUTHENTICATED');
      await refused(await pool.tcp(broker.tcpPort), { login: 'nobody', passcode: 'wrong' }, 'UNAUTHENTICATED');
      assert.equal(scrypt.mock.callCount(), 2, 'one derivation per CONNECT, known login or not');
      const [known, unknown] = scrypt.mock.calls.map((call) => ({ keyBytes: call.arguments[2], options: call.arguments[3] }));
      assert.equal(unknown!.keyBytes, known!.keyBytes);
      assert.deepEqual({ N: unknown!.options.N, r: unknown!.options.r, p: unknown!.options.p }, { N: known!.options.N, r: known!.options.r, p: known!.options.p });
      assert.deepEqual({ N: known!.options.N, r: known!.options.r, p: known!.options.p }, TEST_PARAMS);
    } finally {
      scrypt.mock.restore();
    }
  });

  it('a flood of password checks is bounded: 4 run at once, 256 wait, the rest get SERVER_BUSY', async () => {
    const file = path.join(dir, 'flood.json');
    await writeUsers(file, [{ login: 'alice', password: 'right' }]);
    const users = new UsersFile(file);
    let running = 0;
    let most = 0;
    const real = crypto.scrypt;
    const spy = mock.method(crypto, 'scrypt', (...args: unknown[]) => {
      running++;
      most = Math.max(most, running);
      const callback = args[args.length - 1] as (error: Error | null, key: Buffer) => void;
      (real as (...a: unknown[]) => void)(...args.slice(0, -1), (error: Error | null, key: Buffer) => {
        running--;
        callback(error, key);
      });
    });
    try {
      // 300 from each of 10 clients: each has 32 waiting at most, the waiting room 256 in all.
      const outcomes = await Promise.allSettled(Array.from({ length: 3000 }, (_, i) => users.verify('alice', 'wrong', `10.0.0.${i % 10}`)));
      const codes = outcomes.map((o) => (o.status === 'rejected' ? (o.reason as { code: string }).code : 'OK'));
      assert.equal(codes.filter((c) => c === 'UNAUTHENTICATED').length, 4 + 256);
      assert.equal(codes.filter((c) => c === 'SERVER_BUSY').length, 3000 - 4 - 256);
      assert.ok(most <= 4, `at most 4 checks at once, saw ${most}`);
    } finally {
      spy.mock.restore();
    }
    await users.verify('alice', 'right'); // the slots were all given back
  });

  it('reloadUsers: new users for later CONNECTs; a bad file keeps the previous ones', async () => {
    const file = path.join(dir, 'reload.json');
    await writeUsers(file, [{ login: 'alice', password: 'first' }]);
    const b = await h.broker({ AUTH: 'users', USERS_FILE: file });
    await accepted(await pool.tcp(b.tcpPort), { login: 'alice', passcode: 'first' }, 'alice');

    await writeUsers(file, [{ login: 'bob', password: 'second' }]);
    assert.equal(await b.reloadUsers(), 1);
    await accepted(await pool.tcp(b.tcpPort), { login: 'bob', passcode: 'second' }, 'bob');
    await refused(await pool.tcp(b.tcpPort), { login: 'alice', passcode: 'first' }, 'UNAUTHENTICATED');

    fs.writeFileSync(file, '{ "users": [ { "login": "eve", "passwordHash": "plain-text" } ] }');
    await assert.rejects(b.reloadUsers(), (e: unknown) => e instanceof ConfigError && e.variable === 'USERS_FILE');
    fs.rmSync(file);
    await assert.rejects(b.reloadUsers(), (e: unknown) => e instanceof ConfigError && e.variable === 'USERS_FILE');
    await accepted(await pool.tcp(b.tcpPort), { login: 'bob', passcode: 'second' }, 'bob');
  });
});

describe('the users file and its hashes', () => {
  it('hashPassword: scrypt$N$r$p$salt$hash with N=16384 r=8 p=1 by default, a fresh salt each time', async () => {
    const one = await hashPassword('same password');
    const two = await hashPassword('same password');
    assert.match(one, /^scrypt\$16384\$8\$1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/);
    assert.notEqual(one, two, 'salted');
    assert.ok(!one.includes('same password'));
    const parsed = parsePasswordHash(one);
    assert.ok(typeof parsed !== 'string');
    assert.deepEqual({ N: parsed.N, r: parsed.r, p: parsed.p }, DEFAULT_SCRYPT_PARAMS);
    assert.equal(parsed.salt.length, 16);
    assert.equal(parsed.hash.length, 32);
  });

  it('refuses what is not a scrypt hash, and parameters out of bounds', async () => {
    const good = await hashPassword('x', TEST_PARAMS);
    const [, , , , salt, hash] = good.split('$');
    for (const bad of ['hunter2', `bcrypt$10$${salt}$${hash}`, `scrypt$1000$8$1$${salt}$${hash}`, `scrypt$4194304$8$1$${salt}$${hash}`, `scrypt$2048$0$1$${salt}$${hash}`, `scrypt$2048$8$1$$${hash}`]) {
      assert.equal(typeof parsePasswordHash(bad), 'string', bad);
    }
  });

  it('a bad file is a ConfigError on USERS_FILE that says what is wrong (and never echoes a password)', async () => {
    const good = await hashPassword('x', TEST_PARAMS);
    const cases: [string, RegExp][] = [
      ['not json', /expected JSON/],
      ['[]', /"users" array/],
      ['{"users": [{"login": "alice", "passwordHash": "hunter2"}]}', /users\[0\]\.passwordHash \(alice\).*hash-password/],
      [`{"users": [{"login": "", "passwordHash": "${good}"}]}`, /users\[0\]\.login/],
      [`{"users": [{"login": "a", "passwordHash": "${good}"}, {"login": "a", "passwordHash": "${good}"}]}`, /appears twice/],
      [`{"users": [{"login": "a", "passwordHash": "${good}", "roles": "ADMIN"}]}`, /roles/],
    ];
    for (const [text, why] of cases) {
      assert.throws(
        () => parseUsers(text, '/etc/stompd/users.json'),
        (e: unknown) => e instanceof ConfigError && e.variable === 'USERS_FILE' && why.test(e.message) && !e.message.includes('hunter2'),
        text,
      );
    }
  });

  it('AUTH=users needs USERS_FILE; USERS_FILE alone chooses users mode; a missing file stops the start', async () => {
    assert.throws(
      () => loadConfig({ AUTH: 'users' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'AUTH' && e.message.includes('USERS_FILE'),
    );
    assert.equal(loadConfig({ USERS_FILE: usersPath }).authMode, 'users');
    assert.equal(loadConfig({ USERS_FILE: usersPath, HOST: '0.0.0.0' }).authMode, 'users', 'no ALLOW_INSECURE_AUTH needed');
    await assert.rejects(h.broker({ AUTH: 'users', USERS_FILE: path.join(dir, 'missing.json') }), (e: unknown) => e instanceof ConfigError && e.variable === 'USERS_FILE');
  });
});
