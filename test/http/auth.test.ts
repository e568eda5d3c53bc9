// Who may use /api: ADMIN_TOKEN or a JWT holding one of ADMIN_ROLES (401 without a valid
// credential, 403 with a non-admin JWT), no answer ever repeats a token, failed attempts are
// rate-limited per address, and without any admin credential configured the API is open but
// listens on loopback only and says so. Plus the HTTP settings themselves.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { ConfigError, loadConfig } from '../../src/config';
import { ListenError } from '../../src/server';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import type { ApiError, OnlineUsers, SessionDetails } from '../helpers/api-shapes';
import { ApiClient } from '../helpers/http';
import { SECRET, bearer, mint, nowS } from '../helpers/jwt';
import { RawClient, header } from '../helpers/raw-client';

const TOKEN = 'the-admin-token-0123456789abcdef';

describe('HTTP API authentication with ADMIN_TOKEN', { timeout: 30000 }, () => {
  let broker: RunningServer;
  before(async () => {
    broker = await startBroker({ HTTP_PORT: '0', ADMIN_TOKEN: TOKEN });
  });
  after(() => broker.stop());

  it('401 without a credential or with a wrong one (of any length), 200 with the token; no answer repeats a token', async () => {
    const routes = ['/api/session/all', '/api/session/stats', '/api/users/online', '/api/session/user/x', '/api/openapi.json', '/api/no-such-route'];
    const presented = ['', 'Bearer', 'Basic dXNlcjpwYXNz', 'Bearer wrong', `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Bearer ${TOKEN.toUpperCase()}`];
    for (const route of routes) {
      // Every wrong form on one route, none on the others: 20 failures would trip the limiter.
      for (const authorization of route === routes[0] ? presented : ['']) {
        const api = new ApiClient(broker.httpPort!);
        const response = await api.get<ApiError>(route, authorization === '' ? {} : { authorization });
        assert.equal(response.status, 401, `${route} with ${JSON.stringify(authorization)}`);
        assert.equal(response.headers.get('www-authenticate'), 'Bearer');
        assert.equal(typeof response.body.message, 'string');
        assert.ok(!response.text.includes(TOKEN) && !response.text.includes(TOKEN.toUpperCase()), 'no token echoed');
        if (authorization.startsWith('Bearer ') && authorization.length > 10) assert.ok(!response.text.includes(authorization.slice(7)));
      }
      if (route === '/api/no-such-route') continue;
      const ok = await new ApiClient(broker.httpPort!, TOKEN).get(route);
      assert.equal(ok.status, 200, `${route}: ${ok.text}`);
      assert.ok(!ok.text.includes(TOKEN));
    }
    assert.equal((await new ApiClient(broker.httpPort!, TOKEN).get('/api/no-such-route')).status, 404);
  });

  it('a percent-encoded path reaches the same route and needs the same credential', async () => {
    const anonymous = new ApiClient(broker.httpPort!);
    for (const [method, route] of [
      ['GET', '/%61pi/session/all'],
      ['GET', '/%61pi/openapi.json'],
      ['POST', '/%61pi/publish'],
      ['DELETE', '/%61pi/session/user/alice'],
    ] as const) {
      const response = await anonymous.request(method, route, method === 'POST' ? { destination: '/topic/x', body: 'x' } : undefined);
      assert.equal(response.status, 401, `${method} ${route}: ${response.text}`);
    }
    assert.equal((await new ApiClient(broker.httpPort!, TOKEN).get('/%61pi/session/all')).status, 200, 'it is the /api route');
  });

  it('health, readiness and metrics need no credential', async () => {
    const anonymous = new ApiClient(broker.httpPort!);
    for (const path of ['/healthz', '/readyz', '/metrics']) assert.equal((await anonymous.get(path)).status, 200, path);
  });
});

describe('HTTP API: failed authentications are rate-limited per address', { timeout: 30000 }, () => {
  it('after 20 failures within a minute the address gets 429 with Retry-After for wrong credentials, the right token is served; probes stay open', async () => {
    const broker = await startBroker({ HTTP_PORT: '0', ADMIN_TOKEN: TOKEN });
    try {
      const wrong = new ApiClient(broker.httpPort!, 'guess-0000000000000000');
      for (let i = 0; i < 20; i++) assert.equal((await wrong.get('/api/session/stats')).status, 401, `attempt ${i + 1}`);
      const limited = await wrong.get('/api/session/stats');
      assert.equal(limited.status, 429);
      const retryAfter = Number(limited.headers.get('retry-after'));
      assert.ok(retryAfter > 0 && retryAfter <= 60, `retry-after ${retryAfter}`);
      assert.equal((await new ApiClient(broker.httpPort!, TOKEN).get('/api/session/stats')).status, 200, 'the right token is never locked out');
      assert.equal((await wrong.get('/api/session/stats')).status, 429, 'the wrong one still is');
      assert.equal((await wrong.get('/healthz')).status, 200);
    } finally {
      await broker.stop();
    }
  });
});

describe('HTTP API authentication with JWTs (AUTH=jwt)', { timeout: 30000 }, () => {
  let broker: RunningServer;
  before(async () => {
    broker = await startBroker({ HTTP_PORT: '0', JWT_SECRET: SECRET, ADMIN_ROLES: 'ADMIN,OPS', HEARTBEAT: '0,0' });
  });
  after(() => broker.stop());

  const as = (token: string) => new ApiClient(broker.httpPort!, token);

  it('a JWT with an admin role passes, one without gets 403, an invalid or expired one 401', async () => {
    assert.equal((await as(await mint(SECRET, { sub: 'root', role: 'ADMIN' })).get('/api/session/stats')).status, 200);
    assert.equal((await as(await mint(SECRET, { sub: 'ops', roles: ['USER', 'OPS'] })).get('/api/session/stats')).status, 200);
    const forbidden = await as(await mint(SECRET, { sub: 'mallory', role: 'AGENT' })).get<ApiError>('/api/session/stats');
    assert.equal(forbidden.status, 403);
    assert.match(forbidden.body.message, /mallory.*ADMIN, OPS/);
    const expired = await as(await mint(SECRET, { sub: 'root', role: 'ADMIN' }, { exp: nowS() - 3600 })).get('/api/session/stats');
    assert.equal(expired.status, 401);
    const forged = await mint('another-secret-of-32-bytes-or-more!!', { sub: 'root', role: 'ADMIN' });
    const forgedResponse = await as(forged).get('/api/session/stats');
    assert.equal(forgedResponse.status, 401);
    assert.ok(!forgedResponse.text.includes(forged));
  });

  it("a logged-out admin's JWT no longer opens the API (as at CONNECT); a new one does", async () => {
    const oldToken = await mint(SECRET, { sub: 'boss', role: 'ADMIN' });
    assert.equal((await as(oldToken).get('/api/session/stats')).status, 200);
    const other = as(await mint(SECRET, { sub: 'root', role: 'ADMIN' }));
    assert.equal((await other.request('DELETE', '/api/session/user/boss')).status, 200);
    const refused = await as(oldToken).get<ApiError>('/api/session/stats');
    assert.equal(refused.status, 401);
    assert.match(refused.body.message, /revoked/);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // iat has one-second resolution
    assert.equal((await as(await mint(SECRET, { sub: 'boss', role: 'ADMIN' })).get('/api/session/stats')).status, 200);
  });

  it('roles show in the session API and filter the online users; logout revokes the tokens (TOKEN_REVOKED on reconnect)', async () => {
    const admin = as(await mint(SECRET, { sub: 'root', role: 'ADMIN' }));
    const clients: RawClient[] = [];
    const connect = async (token: string) => {
      const client = await RawClient.tcp(broker.tcpPort!);
      clients.push(client);
      return header(await client.connect(bearer(token)), 'session')!;
    };
    try {
      const agentToken = await mint(SECRET, { sub: 'agent-1', roles: ['AGENT', 'SUPPORT'], iat: nowS() - 5 });
      const agentSession = await connect(agentToken);
      await connect(await mint(SECRET, { sub: 'agent-2', role: 'AGENT' }));
      await connect(await mint(SECRET, { sub: 'customer-1', role: 'CUSTOMER' }));
      const details = await admin.ok<SessionDetails>(`/api/session/${agentSession}`);
      assert.deepEqual(details.roles, ['AGENT', 'SUPPORT']);
      assert.equal(details.userRole, 'AGENT');
      const agents = await admin.ok<OnlineUsers>('/api/users/online?role=AGENT');
      assert.deepEqual(
        agents.users.map((u) => u.userId),
        ['agent-1', 'agent-2'],
      );
      const page = await admin.ok<OnlineUsers>('/api/users/online?role=AGENT&limit=1');
      assert.deepEqual(
        page.users.map((u) => u.userId),
        ['agent-1'],
      );
      const next = await admin.ok<OnlineUsers>(`/api/users/online?role=AGENT&limit=1&cursor=${page.nextCursor}`);
      assert.deepEqual(
        next.users.map((u) => u.userId),
        ['agent-2'],
      );

      const logout = await admin.delete('/api/session/user/agent-1');
      assert.deepEqual(logout.body, { userId: 'agent-1', sessionsClosed: 1, instancesReached: 1 });
      assert.match(header(await clients[0]!.expect('ERROR'), 'message') ?? '', /^LOGGED_OUT:/);
      const again = await RawClient.tcp(broker.tcpPort!);
      clients.push(again);
      again.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0', ...bearer(agentToken) });
      assert.match(header(await again.expect('ERROR'), 'message') ?? '', /^TOKEN_REVOKED:/);
    } finally {
      for (const c of clients) c.destroy();
    }
  });
});

describe('HTTP API without any admin credential configured', { timeout: 30000 }, () => {
  it('is open but listens on loopback only, whatever HTTP_HOST says, and logs that at start', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const broker = await startBroker({ HTTP_PORT: '0', HTTP_HOST: '0.0.0.0' }, { logger: pino({ level: 'info' }, sink) });
    try {
      assert.equal(broker.config.http.host, '127.0.0.1');
      const warning = lines.map((l) => JSON.parse(l) as { msg: string; host?: string }).find((l) => /HTTP API without authentication/.test(l.msg));
      assert.ok(warning, `start logs the open API: ${lines.join('\n')}`);
      assert.equal(warning.host, '127.0.0.1');
      assert.equal((await new ApiClient(broker.httpPort!).get('/api/session/stats')).status, 200);
      const external = Object.values(os.networkInterfaces())
        .flat()
        .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal);
      if (external !== undefined) {
        const reached = await new Promise<boolean>((resolve) => {
          const socket = net.connect(broker.httpPort!, external.address);
          socket.once('connect', () => {
            socket.destroy();
            resolve(true);
          });
          socket.once('error', () => resolve(false));
        });
        assert.equal(reached, false, `not reachable on ${external.address}`);
      }
    } finally {
      await broker.stop();
    }
  });
});

describe('HTTP settings', { timeout: 30000 }, () => {
  it('HTTP_PORT defaults to 8080, "off" disables it; bad values and short tokens are refused naming the variable (never echoing the token)', () => {
    assert.equal(loadConfig({}).http.port, 8080);
    assert.equal(loadConfig({ HTTP_PORT: 'off' }).http.port, undefined);
    assert.deepEqual(loadConfig({}).http.adminRoles, ['ADMIN']);
    assert.equal(loadConfig({ HOST: '127.0.0.2' }).http.host, '127.0.0.2');
    assert.equal(loadConfig({ HTTP_HOST: '0.0.0.0', ADMIN_TOKEN: TOKEN }).http.host, '0.0.0.0');
    assert.throws(
      () => loadConfig({ HTTP_PORT: '70000' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'HTTP_PORT',
    );
    assert.throws(
      () => loadConfig({ ADMIN_TOKEN: 'short-secret' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'ADMIN_TOKEN' && !e.message.includes('short-secret'),
    );
  });

  it('HTTP_PORT=off loads neither Fastify nor prom-client nor src/http/ (the process carries none of it); on, it does', () => {
    for (const httpPort of ['off', '0']) {
      const script = `
        const { startBroker } = require(${JSON.stringify(path.resolve(__dirname, '../helpers/broker.js'))});
        startBroker({ HEARTBEAT: '0,0', HTTP_PORT: '${httpPort}' }).then(async (b) => {
          const loaded = Object.keys(require.cache).filter((f) => /node_modules\\/(fastify|prom-client|@fastify)\\//.test(f) || f.includes('/src/http/'));
          await b.stop();
          process.stdout.write(String(loaded.length));
        });`;
      const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 15000 });
      assert.equal(result.status, 0, result.stderr);
      if (httpPort === 'off') assert.equal(result.stdout, '0');
      else assert.ok(Number(result.stdout) > 10, `loaded ${result.stdout} modules`);
    }
  });

  it('HTTP_PORT=off: no HTTP listener; a taken HTTP_PORT fails the start naming HTTP_PORT and frees the STOMP ports', async () => {
    const off = await startBroker({ HTTP_PORT: 'off' });
    assert.equal(off.httpPort, undefined);
    await off.stop();
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as net.AddressInfo).port;
    try {
      await assert.rejects(startBroker({ HTTP_PORT: String(taken), STOMP_PORT: '0', WS_PORT: 'off' }), (e: unknown) => e instanceof ListenError && e.variable === 'HTTP_PORT');
    } finally {
      blocker.close();
    }
  });
});
