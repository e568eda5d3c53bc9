// Why a connection was refused, as the operator reads it in the log: one info line
// `session refused` with the session id, remote address, user id (or login tried) and the
// reason, and never the credentials themselves.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { hashPassword } from '../../src/auth/users';
import { harness } from '../helpers/harness';
import { ClientPool, OTHER_SECRET, SECRET, accepted, bearer, mint, refused } from '../helpers/jwt';

const pool = new ClientPool();
const h = harness();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-refusal-log-'));
after(() => {
  pool.destroyAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A pino logger at info whose raw lines the test reads. */
function capturedLogger(): { logger: pino.Logger; raw: string[]; refusals: () => Record<string, unknown>[] } {
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      raw.push(
        ...chunk
          .toString()
          .split('\n')
          .filter((line) => line !== ''),
      );
      done();
    },
  });
  const logger = pino({ level: 'info' }, stream);
  const refusals = (): Record<string, unknown>[] => raw.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === 'session refused');
  return { logger, raw, refusals };
}

async function waitFor<T>(find: () => T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`not logged: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('the refusal log line', { timeout: 20000 }, () => {
  it('a token whose signature does not verify: sessionId, remoteAddress, code, reason; not the token', async () => {
    const log = capturedLogger();
    const b = await h.broker({ AUTH: 'jwt', JWT_SECRET: SECRET }, { logger: log.logger });
    const forged = await mint(OTHER_SECRET, { sub: 'alice' });
    await refused(await pool.tcp(b.tcpPort), bearer(forged), 'UNAUTHENTICATED');
    await refused(await pool.tcp(b.tcpPort), { login: 'alice', passcode: forged }, 'UNAUTHENTICATED');

    const lines = await waitFor(() => (log.refusals().length >= 2 ? log.refusals() : undefined), 'two refusals');
    for (const line of lines) {
      assert.equal(line.level, 30, 'info');
      assert.match(String(line.sessionId), UUID);
      assert.match(String(line.remoteAddress), /^127\.0\.0\.1:\d+$/);
      assert.equal(line.code, 'UNAUTHENTICATED');
      assert.equal(line.detail, 'token signature does not verify');
      assert.equal(line.userId, undefined, 'an unverified token names nobody');
    }
    assert.notEqual(lines[0]!.sessionId, lines[1]!.sessionId);
    const everything = log.raw.join('\n');
    for (const part of [forged, ...forged.split('.')]) assert.ok(!everything.includes(part), 'no part of the token is logged');
  });

  it('reasons stay specific: expired, wrong issuer, malformed, none at all', async () => {
    const log = capturedLogger();
    const b = await h.broker({ AUTH: 'jwt', JWT_SECRET: SECRET, JWT_ISSUER: 'https://auth.example.com' }, { logger: log.logger });
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'a' }, { exp: Math.floor(Date.now() / 1000) - 3600, iss: 'https://auth.example.com' })), 'TOKEN_EXPIRED');
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'a' }, { iss: 'https://evil.example.com' })), 'UNAUTHENTICATED');
    await refused(await pool.tcp(b.tcpPort), bearer('not.a-token'), 'UNAUTHENTICATED');
    await refused(await pool.tcp(b.tcpPort), { login: 'a' }, 'UNAUTHENTICATED');
    const details = (await waitFor(() => (log.refusals().length >= 4 ? log.refusals() : undefined), 'four refusals')).map((l) => String(l.detail));
    assert.equal(details[0], 'the token expired');
    assert.equal(details[1], 'wrong token issuer');
    assert.match(details[2]!, /^malformed token: /);
    assert.match(details[3]!, /^no token/);
  });

  it('AUTH=users: a known login is the userId, an unknown one is not logged; the passcode never is', async () => {
    const log = capturedLogger();
    const file = path.join(dir, 'users.json');
    fs.writeFileSync(file, JSON.stringify({ users: [{ login: 'alice', passwordHash: await hashPassword('correct horse', { N: 1024, r: 8, p: 1 }) }] }));
    const b = await h.broker({ AUTH: 'users', USERS_FILE: file }, { logger: log.logger });
    await refused(await pool.tcp(b.tcpPort), { login: 'alice', passcode: 'Tr0ub4dor&3' }, 'UNAUTHENTICATED');
    await refused(await pool.tcp(b.tcpPort), { login: 'mallory', passcode: 'Tr0ub4dor&3' }, 'UNAUTHENTICATED');
    const [wrongPasscode, unknownLogin] = await waitFor(() => (log.refusals().length >= 2 ? log.refusals() : undefined), 'two refusals');
    assert.equal(wrongPasscode!.userId, 'alice');
    assert.equal(unknownLogin!.userId, undefined, 'an unknown login may be a password typed in the wrong field');
    assert.ok(!JSON.stringify(unknownLogin).includes('mallory'));
    for (const line of [wrongPasscode!, unknownLogin!]) {
      assert.equal(line.detail, 'wrong login or passcode');
      assert.match(String(line.remoteAddress), /^127\.0\.0\.1:\d+$/);
      assert.match(String(line.sessionId), UUID);
    }
    assert.ok(!log.raw.join('\n').includes('Tr0ub4dor'), 'the passcode is not logged');
  });

  it("refused after authentication (a session policy): the verified user id; a connected session's line names it once", async () => {
    const log = capturedLogger();
    const b = await h.broker({ AUTH: 'jwt', JWT_SECRET: SECRET, SINGLE_SESSION: 'reject' }, { logger: log.logger });
    const token = await mint(SECRET, { sub: 'bob' });
    await accepted(await pool.tcp(b.tcpPort), bearer(token), 'bob');
    const second = await pool.tcp(b.tcpPort);
    second.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', ...bearer(token) });
    assert.match((await second.expect('ERROR')).headers.find(([n]) => n === 'message')![1], /^DUPLICATE_SESSION/);
    const line = await waitFor(() => log.refusals().find((l) => l.code === 'DUPLICATE_SESSION'), 'DUPLICATE_SESSION');
    assert.equal(line.userId, 'bob');

    const replacing = await h.broker({ AUTH: 'jwt', JWT_SECRET: SECRET, SINGLE_SESSION: 'replace' }, { logger: log.logger });
    await accepted(await pool.tcp(replacing.tcpPort), bearer(token), 'bob');
    await accepted(await pool.tcp(replacing.tcpPort), bearer(token), 'bob');
    await waitFor(() => log.refusals().find((l) => l.code === 'SESSION_REPLACED'), 'SESSION_REPLACED');
    const raw = log.raw.find((l) => l.includes('"SESSION_REPLACED"'))!;
    assert.equal(raw.split('"userId"').length - 1, 1, `userId once: ${raw}`);
    assert.ok(raw.includes('"userId":"bob"'));
  });
});
