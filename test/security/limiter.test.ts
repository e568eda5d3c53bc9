// Issue 21, point 4, from outside: a noisy client cannot lock the admins out. Failed API
// authentications get 429 per client address past the limit; a valid admin token or admin
// JWT from that same address is served mid-lockout, and other addresses are not slowed.

import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, it } from 'node:test';
import { startBroker } from '../helpers/broker';
import { SECRET, mint } from '../helpers/jwt';

const TOKEN = 'limiter-test-admin-token-0123456789';

/** GET with a bearer credential, from `localAddress` (127.0.0.2 is another loopback client). */
function get(port: number, path: string, credential: string, localAddress = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, localAddress, headers: { authorization: `Bearer ${credential}` }, timeout: 10_000, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the API limiter never locks out a valid credential', { timeout: 60_000 }, () => {
  it('ADMIN_TOKEN: during a 60-attempt guessing burst from one address, the right token from it is served every time', async () => {
    const broker = await startBroker({ HTTP_PORT: '0', ADMIN_TOKEN: TOKEN });
    try {
      const port = broker.httpPort!;
      const statuses: number[] = [];
      for (let i = 0; i < 60; i++) {
        statuses.push(await get(port, '/api/session/stats', `guess-${i}-000000000000000`));
        if (i % 10 === 9) assert.equal(await get(port, '/api/session/stats', TOKEN), 200, `the admin after ${i + 1} failures`);
      }
      assert.deepEqual(statuses.slice(0, 20), Array(20).fill(401));
      assert.deepEqual(statuses.slice(20), Array(40).fill(429), 'wrong guesses past the limit are refused');
      // Another client (another address) is not held by this one's failures.
      assert.equal(await get(port, '/api/session/stats', 'another-wrong-guess-00000', '127.0.0.2'), 401);
      assert.equal(await get(port, '/api/session/stats', TOKEN, '127.0.0.2'), 200);
    } finally {
      await broker.stop();
    }
  });

  it('AUTH=jwt: an admin JWT is served mid-lockout; a JWT without the admin role stays refused', async () => {
    const broker = await startBroker({ HTTP_PORT: '0', JWT_SECRET: SECRET, HEARTBEAT: '0,0' });
    try {
      const port = broker.httpPort!;
      const admin = await mint(SECRET, { sub: 'root', role: 'ADMIN' });
      const agent = await mint(SECRET, { sub: 'agent-7', role: 'AGENT' });
      for (let i = 0; i < 25; i++) await get(port, '/api/session/stats', `not.a.jwt${i}`);
      assert.equal(await get(port, '/api/session/stats', 'not.a.jwt'), 429);
      assert.equal(await get(port, '/api/session/stats', admin), 200);
      assert.equal(await get(port, '/api/session/stats', agent), 429, 'a valid JWT without the role is a failure like any other');
    } finally {
      await broker.stop();
    }
  });
});
