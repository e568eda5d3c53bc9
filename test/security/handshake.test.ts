// Issue 21, points 1 and 2, from outside: real WebSocket handshakes with Origin, Host and
// Cookie headers as a hostile page's browser would send them, and HTTP requests to an open
// sidecar with a rebinding page's Host.

import assert from 'node:assert/strict';
import http from 'node:http';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { isSameOrigin } from '../../src/auth/origin';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { ClientPool, SECRET, accepted, bearer, mint } from '../helpers/jwt';
import { RawClient } from '../helpers/raw-client';

const pool = new ClientPool();
after(() => pool.destroyAll());

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

function logCapture(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

/** A handshake that must be refused with 403 before any STOMP frame. */
async function refusedWith403(port: number, headers: Record<string, string>, path = '/ws'): Promise<void> {
  await assert.rejects(RawClient.ws(port, { headers, path }), /HTTP 403/, JSON.stringify(headers));
}

describe('a cookie credential is accepted only from an allowed Origin (AUTH=jwt, defaults)', { timeout: 30_000 }, () => {
  let broker: RunningServer;
  let log: ReturnType<typeof logCapture>;
  let adminToken: string;
  let connects = 0;

  before(async () => {
    log = logCapture();
    broker = await startBroker({ JWT_SECRET: SECRET, HEARTBEAT: '0,0' }, { logger: log.logger });
    broker.events.on('connect', () => connects++);
    adminToken = await mint(SECRET, { sub: 'victim', role: 'ADMIN' });
  });
  after(() => broker.stop());

  it('a foreign Origin, null, another port or scheme-alike host with the cookie: 403, no session, a log line', async () => {
    const cookie = `theme=dark; access_token=${adminToken}`;
    const port = broker.wsPort!;
    for (const origin of ['https://evil.example', 'null', `http://127.0.0.1:${port + 1}`, `http://127.0.0.1.evil.example:${port}`, 'http://localhost', `file://`]) {
      await refusedWith403(port, { Origin: origin, Cookie: cookie });
    }
    assert.equal(connects, 0);
    assert.equal([...broker.sessions()].length, 0);
    const lines = log.lines.filter((l) => l.msg === 'connection refused: cookie credential from a foreign Origin');
    assert.ok(lines.length >= 1, 'logged (at most a line a second)');
    assert.equal(lines[0]!.level, 30);
    assert.equal(lines[0]!.origin, 'https://evil.example');
    assert.ok(!JSON.stringify(log.lines).includes(adminToken), 'the token is never logged');
  });

  it('the same origin (Origin host and port = Host) logs in with the cookie alone', async () => {
    const port = broker.wsPort!;
    for (const origin of [`http://127.0.0.1:${port}`, `https://127.0.0.1:${port}`]) {
      const client = await pool.ws(port, { headers: { Origin: origin, Cookie: `access_token=${adminToken}` } });
      await accepted(client, {}, 'victim');
    }
  });

  it('a handshake without Origin (not a browser) may carry the cookie', async () => {
    const client = await pool.ws(broker.wsPort, { headers: { Cookie: `access_token=${adminToken}` } });
    await accepted(client, {}, 'victim');
  });

  it('explicit credentials work from any Origin: CONNECT Authorization, and the URL query', async () => {
    const token = await mint(SECRET, { sub: 'partner-user' });
    const byHeader = await pool.ws(broker.wsPort, { headers: { Origin: 'https://partner.example' } });
    await accepted(byHeader, bearer(token), 'partner-user');
    const byQuery = await pool.ws(broker.wsPort, { headers: { Origin: 'https://partner.example' }, path: `/ws?access_token=${token}` });
    await accepted(byQuery, {}, 'partner-user');
  });

  it('a foreign page without the cookie gets no session either: CONNECT without credential is refused', async () => {
    const client = await pool.ws(broker.wsPort, { headers: { Origin: 'https://evil.example', Cookie: 'theme=dark' } });
    client.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/' });
    const error = await client.expect('ERROR');
    assert.match(error.headers.find(([n]) => n === 'message')![1], /^UNAUTHENTICATED/);
  });
});

describe('same origin', () => {
  it('host name and port as the Host header says; a Host without port (a proxy rewrote it) is judged by name', () => {
    assert.equal(isSameOrigin('http://127.0.0.1:15674', '127.0.0.1:15674'), true);
    assert.equal(isSameOrigin('https://app.example', 'app.example:443'), true);
    assert.equal(isSameOrigin('https://APP.example', 'app.example'), true);
    assert.equal(isSameOrigin('https://app.example:8443', 'app.example'), true);
    assert.equal(isSameOrigin('http://[::1]:8080', '[::1]:8080'), true);
    assert.equal(isSameOrigin('http://127.0.0.1:3000', '127.0.0.1:15674'), false);
    assert.equal(isSameOrigin('https://app.example', 'app.example:80'), false);
    assert.equal(isSameOrigin('https://app.example.evil.example', 'app.example'), false);
    assert.equal(isSameOrigin('null', 'app.example'), false);
    assert.equal(isSameOrigin('https://app.example', undefined), false);
  });
});

describe('ALLOWED_ORIGINS widens where a cookie is accepted; "*" does not', { timeout: 30_000 }, () => {
  it('a listed origin logs in with the cookie, an unlisted one is refused whatever it carries', async () => {
    const broker = await startBroker({ JWT_SECRET: SECRET, HEARTBEAT: '0,0', ALLOWED_ORIGINS: 'https://app.example' });
    try {
      const token = await mint(SECRET, { sub: 'alice' });
      const client = await pool.ws(broker.wsPort, { headers: { Origin: 'https://APP.example', Cookie: `access_token=${token}` } });
      await accepted(client, {}, 'alice');
      await refusedWith403(broker.wsPort!, { Origin: 'https://other.example' });
    } finally {
      await broker.stop();
    }
  });

  it('ALLOWED_ORIGINS=* lets any page connect with explicit credentials, but never with the cookie', async () => {
    const broker = await startBroker({ JWT_SECRET: SECRET, HEARTBEAT: '0,0', ALLOWED_ORIGINS: '*' });
    try {
      const token = await mint(SECRET, { sub: 'alice' });
      const explicit = await pool.ws(broker.wsPort, { headers: { Origin: 'https://anywhere.example' } });
      await accepted(explicit, bearer(token), 'alice');
      await refusedWith403(broker.wsPort!, { Origin: 'https://anywhere.example', Cookie: `access_token=${token}` });
    } finally {
      await broker.stop();
    }
  });
});

describe('embedded mode (AUTH=none) answers loopback Host names and pages only', { timeout: 30_000 }, () => {
  let broker: RunningServer;
  let log: ReturnType<typeof logCapture>;

  before(async () => {
    log = logCapture();
    broker = await startBroker({ HEARTBEAT: '0,0' }, { logger: log.logger });
  });
  after(() => broker.stop());

  it('a rebinding page (Host: its own name) is refused with 403 and a log line', async () => {
    const port = broker.wsPort!;
    for (const host of [`evil.example:${port}`, 'evil.example', `127.0.0.1.nip.example:${port}`, `0.0.0.0:${port}`]) {
      await refusedWith403(port, { Host: host, Origin: `http://${host}` });
    }
    await refusedWith403(port, { Host: `evil.example:${port}` }); // even without Origin
    const lines = log.lines.filter((l) => l.msg === 'connection refused: Host not allowed');
    assert.ok(lines.length >= 1);
    assert.equal(lines[0]!.host, `evil.example:${port}`);
  });

  it('a foreign page reaching 127.0.0.1 directly (Host loopback, Origin elsewhere, or null) is refused', async () => {
    for (const origin of ['https://evil.example', 'null']) await refusedWith403(broker.wsPort!, { Origin: origin });
  });

  it('the newcomer path: Node (no Origin), pages on http://localhost:… and 127.0.0.1, any loopback Host spelling', async () => {
    const port = broker.wsPort!;
    const cases: Record<string, string>[] = [
      {},
      { Origin: 'http://localhost:5173' },
      { Origin: `http://127.0.0.1:${port}` },
      { Host: `localhost:${port}`, Origin: 'http://localhost:3000' },
      { Host: `[::1]:${port}` },
      { Host: `app.localhost:${port}`, Origin: 'http://app.localhost:8000' },
    ];
    for (const headers of cases) {
      const client = await pool.ws(port, { headers });
      await accepted(client, { login: 'newcomer' }, 'newcomer');
    }
  });

  it('ALLOWED_HOSTS adds names, and pages on them', async () => {
    const widened = await startBroker({ HEARTBEAT: '0,0', ALLOWED_HOSTS: 'stompd.lan' });
    try {
      const port = widened.wsPort!;
      await accepted(await pool.ws(port, { headers: { Host: `stompd.lan:${port}`, Origin: 'http://stompd.lan:3000' } }), { login: 'lan' }, 'lan');
      await refusedWith403(port, { Host: `other.lan:${port}` });
      await refusedWith403(port, { Host: `stompd.lan:${port}`, Origin: 'http://other.lan' });
    } finally {
      await widened.stop();
    }
  });

  it('ALLOWED_ORIGINS names the pages allowed, and only those', async () => {
    const listed = await startBroker({ HEARTBEAT: '0,0', ALLOWED_ORIGINS: 'https://console.example' });
    try {
      const port = listed.wsPort!;
      await accepted(await pool.ws(port, { headers: { Origin: 'https://console.example' } }), { login: 'console' }, 'console');
      await refusedWith403(port, { Origin: 'http://localhost:5173' });
      await refusedWith403(port, { Host: `evil.example:${port}`, Origin: 'https://console.example' });
    } finally {
      await listed.stop();
    }
  });

  it("TCP has no Host and is unaffected; a browser's HTTP request to the STOMP port never becomes a session", async () => {
    const client = await pool.tcp(broker.tcpPort);
    await accepted(client, { login: 'tcp-user' }, 'tcp-user');
    // What a page's fetch('http://127.0.0.1:61613', { method: 'POST', body: 'CONNECT…' }) sends.
    let connects = 0;
    const count = (): void => {
      connects++;
    };
    broker.events.on('connect', count);
    const smuggler = await pool.tcp(broker.tcpPort);
    smuggler.send(`POST / HTTP/1.1\r\nHost: 127.0.0.1:${broker.tcpPort!}\r\nOrigin: https://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 30\r\n\r\nCONNECT\nlogin:victim\n\n\0`);
    const error = await smuggler.expect('ERROR');
    assert.match(error.headers.find(([n]) => n === 'message')![1], /^UNKNOWN_COMMAND/);
    await smuggler.waitClosed();
    assert.equal(connects, 0);
  });
});

/** A request with the Host and Origin a browser would send (fetch cannot set Host). */
function request(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('an HTTP sidecar without credential answers loopback Host names and pages only', { timeout: 30_000 }, () => {
  let broker: RunningServer;

  before(async () => {
    broker = await startBroker({ HEARTBEAT: '0,0', HTTP_PORT: '0' });
  });
  after(() => broker.stop());

  it('a rebinding page gets 403 on every route: /api, /metrics, /healthz, unknown ones', async () => {
    const port = broker.httpPort!;
    for (const path of ['/api/session/stats', '/api/session/all', '/metrics', '/healthz', '/dashboard']) {
      const response = await request(port, path, { Host: `evil.example:${port}`, Origin: `http://evil.example:${port}` });
      assert.equal(response.status, 403, path);
      assert.match((JSON.parse(response.body) as { message: string }).message, /ALLOWED_HOSTS/);
    }
  });

  it('a foreign page reaching 127.0.0.1 directly gets 403; loopback pages and curl are answered', async () => {
    const port = broker.httpPort!;
    assert.equal((await request(port, '/api/session/stats', { Origin: 'https://evil.example' })).status, 403);
    assert.equal((await request(port, '/api/session/stats', { Origin: 'null' })).status, 403);
    assert.equal((await request(port, '/api/session/stats', {})).status, 200);
    assert.equal((await request(port, '/api/session/stats', { Host: `localhost:${port}`, Origin: `http://localhost:${port}` })).status, 200);
    assert.equal((await request(port, '/metrics', { Origin: 'http://localhost:3000' })).status, 200);
  });

  it('with an admin credential the credential decides, not the Host', async () => {
    const guarded = await startBroker({ HEARTBEAT: '0,0', HTTP_PORT: '0', ADMIN_TOKEN: 'handshake-test-admin-token-01' });
    try {
      const port = guarded.httpPort!;
      assert.equal((await request(port, '/api/session/stats', { Host: 'stompd.example.com' })).status, 401);
      assert.equal((await request(port, '/api/session/stats', { Host: 'stompd.example.com', Authorization: 'Bearer handshake-test-admin-token-01' })).status, 200);
    } finally {
      await guarded.stop();
    }
  });
});
