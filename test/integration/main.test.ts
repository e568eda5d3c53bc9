// The command-line entry as a user runs it: `node dist/src/main.js` (what `npm start` and
// the `stompd` bin run), configuration from the environment, logs, signals, --help,
// --version, hash-password, and every way a start can fail.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { parsePasswordHash } from '../../src/auth/users';
import { SETTING_DESCRIPTIONS } from '../../src/config';
import { ClientPool, accepted, refused } from '../helpers/jwt';
import { RawClient, header } from '../helpers/raw-client';

const MAIN = path.resolve(__dirname, '../../src/main.js');
const ROOT = path.resolve(__dirname, '../../..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-main-'));
const pool = new ClientPool();
after(() => {
  pool.destroyAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Run stompd to completion (a command, or a start that must fail). */
function run(args: string[], env: Record<string, string> = {}, input?: string) {
  return spawnSync(process.execPath, [MAIN, ...args], {
    env: { PATH: process.env.PATH ?? '', STOMP_PORT: '0', WS_PORT: '0', HTTP_PORT: 'off', ...env },
    encoding: 'utf8',
    timeout: 10000,
    ...(input !== undefined ? { input } : {}),
  });
}

/** A start that must fail: exit 1, nothing listening, one line on stderr (returned). */
function failedStart(env: Record<string, string>): string {
  const result = run([], env);
  assert.equal(result.status, 1, `exits 1 for ${JSON.stringify(env)}: ${result.stderr}`);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${result.stderr}`);
  assert.ok(!result.stdout.includes('stompd listening'), 'nothing started');
  return lines[0]!;
}

interface Started {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  stompPort: number;
  wsPort: number;
  exit: Promise<number | null>;
}

function start(env: Record<string, string> = {}): Promise<Started> {
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? '', STOMP_PORT: '0', WS_PORT: '0', HTTP_PORT: 'off', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let pending = '';
    const timer = setTimeout(() => reject(new Error('stompd did not report listening')), 8000);
    child.stdout.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      let eol: number;
      while ((eol = pending.indexOf('\n')) !== -1) {
        const line = JSON.parse(pending.slice(0, eol)) as Record<string, unknown>;
        pending = pending.slice(eol + 1);
        lines.push(line);
        if (line.msg === 'stompd listening') {
          clearTimeout(timer);
          resolve({ child, lines, stompPort: line.stompPort as number, wsPort: line.wsPort as number, exit });
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`stompd exited with ${code}`)));
  });
}

async function waitForLine(started: Started, predicate: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const found = started.lines.find(predicate);
    if (found) return found;
    if (Date.now() > deadline) throw new Error('log line not found');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('running stompd', { timeout: 30000 }, () => {
  it('embedded mode: listens on loopback, warns, logs the session id, exits 0 on SIGTERM', async () => {
    const started = await start();
    try {
      const listening = started.lines.find((l) => l.msg === 'stompd listening')!;
      assert.equal(listening.host, '127.0.0.1');
      assert.ok(
        started.lines.some((l) => l.level === 40 && String(l.msg).startsWith('embedded mode')),
        'a warning about embedded mode',
      );

      const client = await RawClient.tcp(started.stompPort);
      const connected = await client.connect({ login: 'maria' });
      const sessionId = header(connected, 'session');
      const line = await waitForLine(started, (l) => l.msg === 'session connected');
      assert.equal(line.sessionId, sessionId);
      assert.equal(line.userId, 'maria');

      const ws = await RawClient.ws(started.wsPort);
      await ws.connect();

      started.child.kill('SIGTERM');
      assert.match(header(await client.expect('ERROR'), 'message') ?? '', /^SERVER_SHUTDOWN/);
      assert.match(header(await ws.expect('ERROR'), 'message') ?? '', /^SERVER_SHUTDOWN/);
      assert.equal(await started.exit, 0);
      const closed = await waitForLine(started, (l) => l.msg === 'session closed');
      assert.equal(closed.reason, 'shutdown');
    } finally {
      started.child.kill('SIGKILL');
    }
  });

  it('SIGTERM finishes within SHUTDOWN_TIMEOUT_MS whatever peers do', async () => {
    // The handshake timeout is far away: only the shutdown deadline can end these peers.
    const started = await start({ SHUTDOWN_TIMEOUT_MS: '1500', HANDSHAKE_TIMEOUT_MS: '600000' });
    const peers: net.Socket[] = [];
    try {
      // Half an HTTP request on the WebSocket port, never finished.
      const half = net.connect(started.wsPort, '127.0.0.1');
      peers.push(half);
      await new Promise((resolve) => half.once('connect', resolve));
      half.write('GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      // A STOMP peer that never closes its side: the broker's FIN goes unanswered.
      const stuck = net.connect({ port: started.stompPort, host: '127.0.0.1', allowHalfOpen: true });
      peers.push(stuck);
      stuck.on('data', () => undefined);
      await new Promise((resolve) => stuck.once('connect', resolve));
      stuck.write('CONNECT\naccept-version:1.2\nhost:/\n\n\0');
      await waitForLine(started, (l) => l.msg === 'session connected');

      const signalledAt = Date.now();
      started.child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const stillRunning = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('still running'), 8000)));
      const code = await Promise.race([started.exit, stillRunning]).finally(() => clearTimeout(timer));
      assert.equal(code, 0, 'exits 0 within the shutdown timeout');
      const tookMs = Date.now() - signalledAt;
      // 1500 ms, plus room for a loaded machine; without the deadline it ran for minutes.
      assert.ok(tookMs < 4500, `exited after ${tookMs} ms`);
    } finally {
      started.child.kill('SIGKILL');
      for (const peer of peers) peer.destroy();
    }
  });

  it('SIGTERM logs how many in-memory queue messages it discards', async () => {
    const started = await start();
    try {
      const producer = await RawClient.tcp(started.stompPort);
      await producer.connect();
      for (const body of ['a', 'b', 'c']) producer.sendFrame('SEND', { destination: '/queue/kept' }, body);
      for (const body of ['d', 'e']) producer.sendFrame('SEND', { destination: '/queue/taken' }, body);
      producer.sendFrame('SEND', { destination: '/queue/kept', receipt: 'stored' }, 'f');
      await producer.expect('RECEIPT');
      const consumer = await RawClient.tcp(started.stompPort);
      await consumer.connect();
      consumer.sendFrame('SUBSCRIBE', { id: 'c', destination: '/queue/taken', ack: 'client-individual' });
      await consumer.expect('MESSAGE');
      await consumer.expect('MESSAGE'); // neither is acknowledged

      started.child.kill('SIGTERM');
      assert.equal(await started.exit, 0);
      const line = await waitForLine(started, (l) => /discards/.test(String(l.msg)));
      assert.equal(line.storedMessages, 4);
      assert.equal(line.unacknowledgedMessages, 2);
      assert.match(String(line.msg), /discards 6 queue messages/);
      assert.equal((await waitForLine(started, (l) => l.msg === 'stompd stopped')).discardedQueueMessages, 6);
    } finally {
      started.child.kill('SIGKILL');
    }
  });

  it('SIGINT stops it too, with exit code 0', async () => {
    const started = await start({ HOST: '127.0.0.1' });
    started.child.kill('SIGINT');
    assert.equal(await started.exit, 0);
  });

  it('a bad configuration value stops the start with one line naming the variable', () => {
    for (const [variable, value] of [
      ['HEARTBEAT', 'often'],
      ['HEARTBEAT_GRACE', '0.5'],
      ['STOMP_PORT', '70000'],
      ['WS_PATH', 'ws'],
      ['MAX_FRAME_BYTES', '-1'],
      ['CONNECT_TIMEOUT_MS', 'soon'],
      ['LOG_LEVEL', 'loud'],
      ['SLOW_CONSUMER_POLICY', 'ignore'],
      ['FLOW_CONTROL', 'maybe'],
      ['FLOW_CONTROL_BEHIND_SHARE', '1.5'],
      ['FLOW_CONTROL_BEHIND_BYTES', '2000000'], // past WRITE_BUFFER_LIMIT_BYTES
      ['FLOW_CONTROL_WINDOW', 'wide'],
      ['FLOW_CONTROL_STALL_MS', '0'],
      ['FLOW_CONTROL_MAX_HOLD_MS', '100'], // below FLOW_CONTROL_STALL_MS
      ['RELAY_BACKLOG_BYTES', '-1'],
      ['AUTH', 'jwt'],
      ['JWT_SECRET', 'too-short'],
      ['SINGLE_SESSION', 'sometimes'],
      ['AUTH', 'users'],
      // found while building the server, not while reading the environment:
      ['ACL_FILE', '/nonexistent/rules.json'],
      ['USERS_FILE', '/nonexistent/users.json'],
      ['JWT_PUBLIC_KEY', '-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----'],
    ]) {
      const result = spawnSync(process.execPath, [MAIN], {
        env: { PATH: process.env.PATH ?? '', STOMP_PORT: '0', WS_PORT: '0', HTTP_PORT: 'off', [variable!]: value! },
        encoding: 'utf8',
        timeout: 5000,
      });
      assert.equal(result.status, 1, `${variable}=${value} exits 1`);
      const lines = result.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line for ${variable}: ${result.stderr}`);
      assert.match(lines[0]!, new RegExp(`^stompd: invalid configuration: ${variable}=`));
      assert.ok(!result.stdout.includes('stompd listening'), 'nothing started');
      if (variable === 'JWT_SECRET') assert.ok(!result.stderr.includes('too-short'), 'a secret is never echoed');
    }
  });
});

describe('stompd --help, --version, unknown arguments', { timeout: 30000 }, () => {
  it('--help lists every environment variable with its default (generated from SETTINGS)', () => {
    const result = run(['--help']);
    assert.equal(result.status, 0);
    assert.ok(SETTING_DESCRIPTIONS.length > 30);
    for (const { variable, fallback } of SETTING_DESCRIPTIONS) {
      const at = result.stdout.search(new RegExp(`^  ${variable} +default: `, 'm'));
      assert.ok(at !== -1, `${variable} in --help`);
      const line = result.stdout.slice(at).split('\n')[0]!;
      assert.ok(line.endsWith(`default: ${fallback === '' ? '(none)' : fallback}`), line);
    }
    for (const variable of ['USERS_FILE', 'AUTH', 'JWT_SECRET', 'ACL_FILE']) assert.match(result.stdout, new RegExp(`^  ${variable} `, 'm'));
    assert.match(result.stdout, /hash-password/);
  });

  it('--version prints the version of package.json', () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const result = run(['--version']);
    assert.equal(result.status, 0);
    assert.equal(result.stdout, `${version}\n`);
  });

  it('an unknown argument: one line, exit 1, nothing started', () => {
    const result = run(['--port', '61613']);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^stompd: unknown argument "--port" \(see stompd --help\)\n$/);
    assert.equal(result.stdout, '');
  });
});

describe('stompd hash-password', { timeout: 30000 }, () => {
  it('reads the password from stdin and prints a USERS_FILE entry that a broker accepts', async () => {
    const result = run(['hash-password', '--login', 'alice', '--roles', 'AGENT,ADMIN'], {}, 'correct horse\n');
    assert.equal(result.status, 0, result.stderr);
    const entry = JSON.parse(result.stdout) as { login: string; passwordHash: string; roles: string[] };
    assert.equal(entry.login, 'alice');
    assert.deepEqual(entry.roles, ['AGENT', 'ADMIN']);
    assert.ok(!result.stdout.includes('correct horse'));
    const parsed = parsePasswordHash(entry.passwordHash);
    assert.ok(typeof parsed !== 'string', typeof parsed === 'string' ? parsed : undefined); // the message: why it did not parse
    assert.deepEqual([parsed.N, parsed.r, parsed.p], [16384, 8, 1]);

    const file = path.join(dir, 'hashed.json');
    fs.writeFileSync(file, JSON.stringify({ users: [entry] }));
    const started = await start({ AUTH: 'users', USERS_FILE: file });
    try {
      await accepted(await pool.tcp(started.stompPort), { login: 'alice', passcode: 'correct horse' }, 'alice');
      await refused(await pool.tcp(started.stompPort), { login: 'alice', passcode: 'correct horse\n' }, 'UNAUTHENTICATED');
    } finally {
      started.child.kill('SIGKILL');
    }
  });

  it('takes the password as an argument too, and prints the hash alone', () => {
    const result = run(['hash-password', 'pw']);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^scrypt\$16384\$8\$1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*\n$/);
  });

  it('an empty password, an option without its value, an unknown option: one line, exit 1', () => {
    const empty = run(['hash-password'], {}, '\n');
    assert.equal(empty.status, 1);
    assert.match(empty.stderr, /^stompd: hash-password: empty password\n$/);
    const noValue = run(['hash-password', 'pw', '--login']);
    assert.equal(noValue.status, 1);
    assert.match(noValue.stderr, /^stompd: hash-password: --login needs a value/);
    const unknown = run(['hash-password', '--cost', '20', 'pw']);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /^stompd: hash-password: unknown option --cost/);
    assert.equal(noValue.stdout + unknown.stdout, '', 'no hash printed');
  });
});

describe('every failed start is one line naming the cause', { timeout: 30000 }, () => {
  it('a port in use (EADDRINUSE): names STOMP_PORT or WS_PORT', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      assert.equal(failedStart({ STOMP_PORT: String(port) }), `stompd: cannot listen on 127.0.0.1:${port} (STOMP_PORT): address already in use`);
      assert.equal(failedStart({ WS_PORT: String(port) }), `stompd: cannot listen on 127.0.0.1:${port} (WS_PORT): address already in use`);
    } finally {
      taken.close();
    }
  });

  it('HOST that is not an address of this machine: names HOST', () => {
    assert.match(failedStart({ HOST: '192.0.2.1', ALLOW_INSECURE_AUTH: '1' }), /^stompd: cannot listen on 192\.0\.2\.1:0 \(HOST\): not an address of this machine$/);
  });

  it('ACL_FILE missing, JWT_PUBLIC_KEY not a key, USERS_FILE missing, unreadable, or with a plain password', () => {
    assert.match(failedStart({ ACL_FILE: path.join(dir, 'missing-rules.json') }), /^stompd: invalid configuration: ACL_FILE=/);
    assert.match(failedStart({ JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----' }), /^stompd: invalid configuration: JWT_PUBLIC_KEY=.*PEM/);
    assert.match(failedStart({ USERS_FILE: path.join(dir, 'missing-users.json') }), /^stompd: invalid configuration: USERS_FILE=.*ENOENT/);
    assert.match(failedStart({ USERS_FILE: dir }), /^stompd: invalid configuration: USERS_FILE=.*EISDIR/);
    const plain = path.join(dir, 'plain.json');
    fs.writeFileSync(plain, JSON.stringify({ users: [{ login: 'alice', passwordHash: 'hunter2' }] }));
    const line = failedStart({ AUTH: 'users', USERS_FILE: plain });
    assert.match(line, /^stompd: invalid configuration: USERS_FILE=.*users\[0\]\.passwordHash \(alice\).*hash-password/);
    assert.ok(!line.includes('hunter2'));
  });
});

describe('SIGHUP re-reads USERS_FILE', { timeout: 30000 }, () => {
  it('new users after SIGHUP; a bad file then keeps the old ones and logs an error', async () => {
    const hash = (password: string): Record<string, unknown> => JSON.parse(run(['hash-password', '--login', 'x'], {}, `${password}\n`).stdout) as Record<string, unknown>;
    const file = path.join(dir, 'reloaded.json');
    fs.writeFileSync(file, JSON.stringify({ users: [{ ...hash('first'), login: 'alice' }] }));
    const started = await start({ AUTH: 'users', USERS_FILE: file });
    try {
      await accepted(await pool.tcp(started.stompPort), { login: 'alice', passcode: 'first' }, 'alice');

      fs.writeFileSync(file, JSON.stringify({ users: [{ ...hash('second'), login: 'bob' }] }));
      started.child.kill('SIGHUP');
      const reloaded = await waitForLine(started, (l) => l.msg === 'users file reloaded');
      assert.equal(reloaded.users, 1);
      await accepted(await pool.tcp(started.stompPort), { login: 'bob', passcode: 'second' }, 'bob');
      await refused(await pool.tcp(started.stompPort), { login: 'alice', passcode: 'first' }, 'UNAUTHENTICATED');

      fs.writeFileSync(file, '{ not json');
      started.child.kill('SIGHUP');
      const failed = await waitForLine(started, (l) => String(l.msg).startsWith('users file not reloaded'));
      assert.equal(failed.level, 50, 'error');
      assert.match(String(failed.error), /USERS_FILE=.*expected JSON/);
      await accepted(await pool.tcp(started.stompPort), { login: 'bob', passcode: 'second' }, 'bob');
      assert.equal(started.child.exitCode, null, 'still running');
    } finally {
      started.child.kill('SIGKILL');
    }
  });
});
