// Issue 21, point 3, from outside: 300 concurrent wrong-password CONNECTs from one address
// (AUTH=users, real scrypt at the default cost) delay only that address; a correct login
// from another address made during the burst is served, and the flood is bounded.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_SCRYPT_PARAMS, hashPassword } from '../../src/auth/users';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { RawClient, header } from '../helpers/raw-client';

const FLOOD = 300;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-flood-'));
const clients: RawClient[] = [];
let broker: RunningServer;

before(async () => {
  const file = path.join(dir, 'users.json');
  const entries = [
    { login: 'alice', passwordHash: await hashPassword('correct horse', DEFAULT_SCRYPT_PARAMS), roles: [] },
    { login: 'mallory', passwordHash: await hashPassword('whatever', DEFAULT_SCRYPT_PARAMS), roles: [] },
  ];
  fs.writeFileSync(file, JSON.stringify({ users: entries }), { mode: 0o600 });
  broker = await startBroker({ AUTH: 'users', USERS_FILE: file, HEARTBEAT: '0,0', CONNECT_TIMEOUT_MS: '120000' });
});

after(async () => {
  for (const c of clients) c.destroy();
  await broker.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function connectFrom(localAddress: string, login: string, passcode: string): Promise<RawClient> {
  const client = await RawClient.tcp(broker.tcpPort!, localAddress);
  clients.push(client);
  client.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0', login, passcode });
  return client;
}

/**
 * FLOOD connections from 127.0.0.1 that keep trying a wrong password: each refused CONNECT is
 * followed by a new connection (after a short pause when refused at once), as an attacker
 * keeping the pool busy would. Counts the answers by code.
 */
function sustainedFlood(): { codes: Map<string, number>; stop(): Promise<void> } {
  const codes = new Map<string, number>();
  let isStopped = false;
  const loop = async (): Promise<void> => {
    while (!isStopped) {
      const client = await connectFrom('127.0.0.1', 'mallory', 'wrong guess');
      const frame = await client.next(120_000);
      client.destroy();
      const code = header(frame, 'message')?.split(':')[0] ?? frame.command;
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (code === 'SERVER_BUSY') await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const loops = Array.from({ length: FLOOD }, () => loop());
  return {
    codes,
    stop: async () => {
      isStopped = true;
      await Promise.all(loops);
    },
  };
}

describe('password checks are shared fairly between client addresses', { timeout: 180_000 }, () => {
  it(`a correct login from 127.0.0.2 during a sustained flood of ${FLOOD} wrong-password CONNECTs from 127.0.0.1 succeeds, promptly`, async () => {
    // The victim's connection is accepted before the flood starts: its login then waits only in the
    // check pool, not also in the kernel's accept queue behind hundreds of flood reconnects (under a
    // loaded CI machine that queue alone let 41 checks through before the CONNECT was even read).
    const victim = await RawClient.tcp(broker.tcpPort!, '127.0.0.2');
    clients.push(victim);
    const flood = sustainedFlood();
    try {
      // The login comes once the pool is full: refusals (SERVER_BUSY) have begun.
      const deadline = Date.now() + 60_000;
      while ((flood.codes.get('SERVER_BUSY') ?? 0) < 30) {
        assert.ok(Date.now() < deadline, 'the flood never filled the pool');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const checkedBefore = flood.codes.get('UNAUTHENTICATED') ?? 0;
      victim.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0', login: 'alice', passcode: 'correct horse' });
      const answer = await victim.next(60_000);
      const checkedMeanwhile = (flood.codes.get('UNAUTHENTICATED') ?? 0) - checkedBefore;
      assert.equal(answer.command, 'CONNECTED', `got ${answer.command} ${header(answer, 'message') ?? ''}`);
      assert.equal(header(answer, 'user-name'), 'alice');
      // Round robin: the login waits for the checks running and about one of the flood's turns,
      // not behind the whole waiting room (256 before the fix). Counted, not timed.
      assert.ok(checkedMeanwhile <= 40, `${checkedMeanwhile} flood checks were answered before the login`);
    } finally {
      await flood.stop();
    }
    assert.deepEqual([...flood.codes.keys()].sort(), ['SERVER_BUSY', 'UNAUTHENTICATED'], 'the flood only ever hears these two');
  });

  it('the flooding address can log in again once its burst is over', async () => {
    const again = await connectFrom('127.0.0.1', 'mallory', 'whatever');
    assert.equal((await again.next(30_000)).command, 'CONNECTED');
  });
});
