// The command-line entry as a user runs it: `node dist/src/main.js` (what `npm start` runs
// after building), configuration from the environment, logs, signals.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { RawClient, header } from '../helpers/raw-client';

const MAIN = path.resolve(__dirname, '../../src/main.js');

interface Started {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  stompPort: number;
  wsPort: number;
  exit: Promise<number | null>;
}

function start(env: Record<string, string> = {}): Promise<Started> {
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? '', STOMP_PORT: '0', WS_PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let pending = '';
    const timer = setTimeout(() => reject(new Error('stompd did not report listening')), 8000);
    child.stdout!.on('data', (chunk: Buffer) => {
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
      assert.ok(started.lines.some((l) => l.level === 40 && String(l.msg).startsWith('embedded mode')), 'a warning about embedded mode');

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
      ['AUTH', 'jwt'],
      ['JWT_SECRET', 'too-short'],
      ['SINGLE_SESSION', 'sometimes'],
      // found while building the server, not while reading the environment:
      ['ACL_FILE', '/nonexistent/rules.json'],
      ['JWT_PUBLIC_KEY', '-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----'],
    ]) {
      const result = spawnSync(process.execPath, [MAIN], {
        env: { PATH: process.env.PATH ?? '', STOMP_PORT: '0', WS_PORT: '0', [variable!]: value! },
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
