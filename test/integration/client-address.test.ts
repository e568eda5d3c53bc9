// The real client address behind a trusted proxy, end to end on a live broker: a PROXY
// protocol header (v1, v2) on the TCP port, X-Forwarded-For / Forwarded on the WebSocket
// handshake, each believed from TRUSTED_PROXIES (127.0.0.1 here) only. Clients that play
// "someone else" connect from 127.0.0.2, which is loopback too but not trusted. What the
// address reaches: the session API, the lifecycle events (registry, presence), the log, the
// per-address cap, and the HTTP API's failed-login limiter (request.ip).

import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, it } from 'node:test';
import type { SessionInfo } from '../../src/session/events';
import type { RunningServer } from '../../src/server';
import { MAX_FAILURES } from '../../src/http/auth';
import { capturedLog } from '../helpers/captured-log';
import { harness } from '../helpers/harness';
import type { UserSessions } from '../helpers/api-shapes';
import { ApiClient } from '../helpers/http';
import { RawClient, header } from '../helpers/raw-client';
import { until } from '../helpers/until';

const h = harness();
const PROXY = '127.0.0.1';
const OTHER = '127.0.0.2';
const TIMEOUT_MS = 5000;

async function brokerBehindProxy(overrides: Record<string, string> = {}) {
  const { logger, lines } = capturedLog();
  const b = await h.broker({ TRUSTED_PROXIES: PROXY, PROXY_PROTOCOL: '1', HTTP_PORT: '0', ...overrides }, { logger });
  const connects: SessionInfo[] = [];
  b.events.on('connect', (info: SessionInfo) => connects.push(info));
  return { b, lines, connects, api: new ApiClient(b.httpPort!) };
}

async function tcpFrom(b: RunningServer, localAddress: string, preface?: Buffer | string): Promise<RawClient> {
  const c = h.track(await RawClient.tcp(b.tcpPort!, localAddress));
  if (preface !== undefined) c.send(preface);
  return c;
}

async function sessionAddress(api: ApiClient, userId: string): Promise<string> {
  const body = await api.ok<UserSessions>(`/api/session/user/${userId}`);
  assert.equal(body.sessions.length, 1, JSON.stringify(body));
  return body.sessions[0]!.remoteAddress;
}

function proxyV2(source: [number, number, number, number], port: number): Buffer {
  const header = Buffer.alloc(28);
  Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]).copy(header);
  header[12] = 0x21; // v2, PROXY
  header[13] = 0x11; // TCP over IPv4
  header.writeUInt16BE(12, 14);
  Buffer.from(source).copy(header, 16);
  Buffer.from([127, 0, 0, 1]).copy(header, 20);
  header.writeUInt16BE(port, 24);
  header.writeUInt16BE(61613, 26);
  return header;
}

async function logged(lines: Record<string, unknown>[], match: (line: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> {
  await until(() => lines.some(match), what, TIMEOUT_MS);
  return lines.find(match)!;
}

describe('PROXY protocol on the TCP port (PROXY_PROTOCOL=1)', { timeout: 30_000 }, () => {
  it('v1 from a trusted proxy: the session API, the connect event and the log show the client, not the proxy', async () => {
    const { b, lines, connects, api } = await brokerBehindProxy();
    const c = await tcpFrom(b, PROXY, 'PROXY TCP4 203.0.113.7 127.0.0.1 51544 61613\r\n');
    await c.connect({ login: 'ann' });
    assert.equal(await sessionAddress(api, 'ann'), '203.0.113.7:51544');
    assert.equal(connects.find((s) => s.userId === 'ann')?.remoteAddress, '203.0.113.7:51544');
    const line = await logged(lines, (l) => l.msg === 'session connected' && l.userId === 'ann', 'the session connected line');
    assert.equal(line.remoteAddress, '203.0.113.7:51544');
  });

  it('v2 from a trusted proxy, with the first STOMP bytes in the same segment', async () => {
    const { b, api } = await brokerBehindProxy();
    const c = await tcpFrom(b, PROXY);
    c.send(Buffer.concat([proxyV2([198, 51, 100, 20], 4000), Buffer.from('CONNECT\naccept-version:1.2\nhost:/\nlogin:bob\nheart-beat:0,0\n\n\0')]));
    await c.expect('CONNECTED');
    assert.equal(await sessionAddress(api, 'bob'), '198.51.100.20:4000');
  });

  it('a PROXY header from a peer that is not trusted is closed at once, with a log line; its STOMP neighbours are unaffected', async () => {
    const { b, lines, api } = await brokerBehindProxy();
    const direct = await tcpFrom(b, OTHER);
    await direct.connect({ login: 'carl' });
    assert.match(await sessionAddress(api, 'carl'), /^127\.0\.0\.2:\d+$/);
    const forger = await tcpFrom(b, OTHER, 'PROXY TCP4 10.9.9.9 127.0.0.1 1 61613\r\n');
    await forger.waitClosed(TIMEOUT_MS);
    const line = await logged(lines, (l) => l.code === 'UNTRUSTED_PROXY_HEADER', 'the untrusted header line');
    assert.match(String(line.remoteAddress), /^127\.0\.0\.2:\d+$/);
    direct.sendFrame('SUBSCRIBE', { id: '1', destination: '/topic/x', receipt: 'r' });
    await direct.expect('RECEIPT');
  });

  it('a direct client whose first bytes are heart-beat EOLs is no PROXY header', async () => {
    const { b } = await brokerBehindProxy();
    const c = await tcpFrom(b, OTHER, '\r\n');
    await new Promise((resolve) => setTimeout(resolve, 50));
    c.send('\r\nCONNECT\naccept-version:1.2\nhost:/\nlogin:eol\nheart-beat:0,0\n\n\0');
    await c.expect('CONNECTED');
  });

  it('from a trusted proxy, a malformed header or none at all is closed with a log line', async () => {
    const { b, lines } = await brokerBehindProxy();
    const malformed = await tcpFrom(b, PROXY, 'PROXY TCP4 203.0.113.999 127.0.0.1 1 2\r\n');
    await malformed.waitClosed(TIMEOUT_MS);
    const none = await tcpFrom(b, PROXY, 'CONNECT\naccept-version:1.2\n\n\0');
    await none.waitClosed(TIMEOUT_MS);
    await until(() => lines.filter((l) => l.code === 'BAD_PROXY_HEADER').length >= 1, 'a bad header line', TIMEOUT_MS);
    assert.equal(malformed.frames.length + none.frames.length, 0, 'no session began');
  });

  it('MAX_CONNECTIONS_PER_ADDRESS counts the clients the proxy names, not the proxy', async () => {
    const { b } = await brokerBehindProxy({ MAX_CONNECTIONS_PER_ADDRESS: '2' });
    for (let i = 0; i < 2; i++) await (await tcpFrom(b, PROXY, `PROXY TCP4 198.51.100.1 127.0.0.1 ${1000 + i} 61613\r\n`)).connect({ login: `same${i}` });
    const third = await tcpFrom(b, PROXY, 'PROXY TCP4 198.51.100.1 127.0.0.1 1002 61613\r\n');
    const refused = await third.expect('ERROR', TIMEOUT_MS);
    assert.match(header(refused, 'message') ?? '', /^TOO_MANY_CONNECTIONS/);
    // Through the same proxy, another client is let in: 3 connections from 127.0.0.1 in all.
    await (await tcpFrom(b, PROXY, 'PROXY TCP4 198.51.100.2 127.0.0.1 1003 61613\r\n')).connect({ login: 'other' });
  });
});

describe('X-Forwarded-For / Forwarded on the WebSocket handshake', { timeout: 30_000 }, () => {
  it('from a trusted proxy: the forwarded address; from anyone else: the header is ignored', async () => {
    const { b, api } = await brokerBehindProxy();
    const proxied = h.track(await RawClient.ws(b.wsPort!, { localAddress: PROXY, headers: { 'x-forwarded-for': '10.0.0.1, 203.0.113.50' } }));
    await proxied.connect({ login: 'dora' });
    assert.equal(await sessionAddress(api, 'dora'), '203.0.113.50');
    const forger = h.track(await RawClient.ws(b.wsPort!, { localAddress: OTHER, headers: { 'x-forwarded-for': '203.0.113.51' } }));
    await forger.connect({ login: 'eve' });
    assert.match(await sessionAddress(api, 'eve'), /^127\.0\.0\.2:\d+$/);
  });

  it("a handshake refused for its Origin is logged with the forwarded client's address", async () => {
    const { b, lines } = await brokerBehindProxy({ ALLOWED_ORIGINS: 'https://app.example' });
    await assert.rejects(RawClient.ws(b.wsPort!, { localAddress: PROXY, headers: { origin: 'https://evil.example', 'x-forwarded-for': '203.0.113.60' } }), /HTTP 403/);
    const line = await logged(lines, (l) => l.msg === 'connection refused: Origin not allowed', 'the Origin refusal line');
    assert.equal(line.remoteAddress, '203.0.113.60');
  });

  it('FORWARDED_HEADER=forwarded reads Forwarded, and then X-Forwarded-For is not believed', async () => {
    const { b, api } = await brokerBehindProxy({ FORWARDED_HEADER: 'forwarded' });
    const c = h.track(await RawClient.ws(b.wsPort!, { localAddress: PROXY, headers: { forwarded: 'for="[2001:db8::5]:7000";proto=http', 'x-forwarded-for': '198.51.100.9' } }));
    await c.connect({ login: 'fay' });
    assert.equal(await sessionAddress(api, 'fay'), '[2001:db8::5]:7000');
  });

  it('MAX_CONNECTIONS_PER_ADDRESS counts the forwarded client: over it, HTTP 503', async () => {
    const { b } = await brokerBehindProxy({ MAX_CONNECTIONS_PER_ADDRESS: '1' });
    h.track(await RawClient.ws(b.wsPort!, { localAddress: PROXY, headers: { 'x-forwarded-for': '198.51.100.30' } }));
    await assert.rejects(RawClient.ws(b.wsPort!, { localAddress: PROXY, headers: { 'x-forwarded-for': '198.51.100.30' } }), /HTTP 503/);
    h.track(await RawClient.ws(b.wsPort!, { localAddress: PROXY, headers: { 'x-forwarded-for': '198.51.100.31' } }));
  });
});

/** A GET /api/session/stats with a wrong token, from `localAddress`, with an X-Forwarded-For. */
function failedLogin(port: number, localAddress: string, forwardedFor: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/api/session/stats', localAddress, headers: { authorization: 'Bearer wrong-token-wrong-token', 'x-forwarded-for': forwardedFor } }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on('error', reject);
    request.setTimeout(TIMEOUT_MS, () => request.destroy(new Error('timeout')));
  });
}

describe('the HTTP API behind a trusted proxy (request.ip)', { timeout: 30_000 }, () => {
  it('the failed-login limiter counts the forwarded client from a trusted proxy, and the peer itself otherwise', async () => {
    const { b } = await brokerBehindProxy({ ADMIN_TOKEN: 'the-admin-token-0123456789' });
    const port = b.httpPort!;
    for (let i = 0; i < MAX_FAILURES; i++) assert.equal(await failedLogin(port, PROXY, '198.51.100.40'), 401);
    assert.equal(await failedLogin(port, PROXY, '198.51.100.40'), 429, 'that client is now held back');
    assert.equal(await failedLogin(port, PROXY, '198.51.100.41'), 401, 'another client behind the same proxy is not');
    // From an untrusted peer the header means nothing: its own address is counted, not 198.51.100.40's.
    assert.equal(await failedLogin(port, OTHER, '198.51.100.40'), 401);
    for (let i = 0; i < MAX_FAILURES - 1; i++) await failedLogin(port, OTHER, `198.51.100.${100 + i}`);
    assert.equal(await failedLogin(port, OTHER, '198.51.100.42'), 429, 'a forger rotating its header is still one address');
  });
});
