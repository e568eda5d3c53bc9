// Slow lorises and floods: a frame trickled a byte at a time, sockets on the WebSocket port
// that never finish their handshake, and more connections than the caps allow.

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import pino from 'pino';
import type { RunningServer } from '../../src/server';
import { harness } from '../helpers/harness';
import { RawClient, header } from '../helpers/raw-client';

const h = harness();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A plain TCP socket to `port` that writes `bytes` (if any) and resolves with when it closed. */
async function rawSocket(port: number, bytes?: string): Promise<{ socket: net.Socket; closed: Promise<number>; received: () => string }> {
  const socket = h.track(net.connect(port, '127.0.0.1'));
  let data = '';
  socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  if (bytes !== undefined) socket.write(bytes);
  return { socket, closed, received: () => data };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('a frame must complete within FRAME_TIMEOUT_MS', { timeout: 15000 }, () => {
  it('a SEND trickled one byte at a time is refused with FRAME_TIMEOUT, though each byte would count as a heart-beat', async () => {
    // The client asked to be checked every 100 ms: the trickle alone would keep it alive.
    const b = await h.broker({ HEARTBEAT: '100,100', FRAME_TIMEOUT_MS: '600' });
    const c = await h.tcp(b);
    await c.connect({ 'heart-beat': '100,0' });
    const frame = 'SEND\ndestination:/topic/slow\n\nnever ends';
    const startedAt = Date.now();
    let i = 0;
    const trickle = setInterval(() => {
      if (i < frame.length && !c.isClosed) c.send(frame[i++]!);
    }, 40);
    try {
      const error = await c.expect('ERROR', 4000);
      const elapsed = Date.now() - startedAt;
      assert.match(header(error, 'message') ?? '', /^FRAME_TIMEOUT/);
      assert.ok(elapsed >= 500, `refused after ${elapsed} ms, before the 600 ms frame timeout`);
      await c.waitClosed();
    } finally {
      clearInterval(trickle);
    }
  });

  it('heart-beat EOLs between frames do not begin a frame', async () => {
    const b = await h.broker({ FRAME_TIMEOUT_MS: '200' });
    const c = await h.tcp(b);
    await c.connect();
    for (let i = 0; i < 8; i++) {
      c.send(i % 2 === 0 ? '\n' : '\r\n');
      await sleep(100);
    }
    c.sendFrame('SEND', { destination: '/topic/x', receipt: 'still-here' }, 'hi');
    assert.equal(header(await c.expect('RECEIPT'), 'receipt-id'), 'still-here');
  });

  it('a sender streaming frames split across chunks for longer than the timeout is not cut', async () => {
    const b = await h.broker({ FRAME_TIMEOUT_MS: '300' });
    const c = await h.tcp(b);
    await c.connect();
    // Every chunk ends one frame and begins the next: a frame is always in progress, but
    // none lasts longer than one 50 ms gap.
    c.send('SEND\ndestination:/topic/stream\nreceipt:0\n\nbo');
    for (let n = 1; n <= 20; n++) {
      await sleep(50);
      c.send(`dy\0SEND\ndestination:/topic/stream\nreceipt:${n}\n\nbo`);
    }
    c.send('dy\0');
    for (let n = 0; n <= 20; n++) assert.equal(header(await c.expect('RECEIPT'), 'receipt-id'), String(n));
    assert.equal(c.isClosed, false);
  });
});

describe('WebSocket handshakes must complete within HANDSHAKE_TIMEOUT_MS', { timeout: 15000 }, () => {
  it('a raw socket to the WebSocket port that sends nothing, or half a request, is destroyed', async () => {
    const b = await h.broker({ HANDSHAKE_TIMEOUT_MS: '400' });
    const openedAt = Date.now();
    const silent = await rawSocket(b.wsPort!);
    const half = await rawSocket(b.wsPort!, 'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
    for (const [what, peer] of [
      ['silent', silent],
      ['half a request', half],
    ] as const) {
      const closedAt = await within(peer.closed, 4000, `closing the ${what} socket`);
      assert.ok(closedAt - openedAt >= 300, `${what}: closed after ${closedAt - openedAt} ms, before the timeout`);
    }
  });

  it('a real WebSocket client is not affected once upgraded', async () => {
    const b = await h.broker({ HANDSHAKE_TIMEOUT_MS: '200' });
    const c = await h.ws(b);
    await sleep(500);
    await c.connect();
    c.sendFrame('SUBSCRIBE', { id: 's', destination: '/topic/x', receipt: 'r' });
    await c.expect('RECEIPT');
    assert.equal(c.isClosed, false);
  });

  it('a plain HTTP request still gets 426', async () => {
    const b = await h.broker({});
    const peer = await rawSocket(b.wsPort!, 'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    await within(peer.closed, 3000, 'the answer');
    assert.match(peer.received(), /^HTTP\/1\.1 426 /);
  });
});

describe('connection caps over both transports', { timeout: 15000 }, () => {
  /** A broker whose info log lines are kept. */
  async function loggedBroker(overrides: Record<string, string>): Promise<RunningServer & { lines: Record<string, unknown>[] }> {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const b = await h.broker(overrides, { logger });
    return Object.assign(b, { lines });
  }

  it('MAX_CONNECTIONS_PER_ADDRESS: TCP past it gets ERROR TOO_MANY_CONNECTIONS, WebSocket HTTP 503; a closed one frees its place', async () => {
    const b = await loggedBroker({ MAX_CONNECTIONS_PER_ADDRESS: '2' });
    const tcp = await h.tcp(b);
    await tcp.connect();
    const ws = await h.ws(b); // the second, over the other transport
    await ws.connect();

    const refusedTcp = await h.tcp(b);
    const error = await refusedTcp.expect('ERROR');
    assert.match(header(error, 'message') ?? '', /^TOO_MANY_CONNECTIONS/);
    await refusedTcp.waitClosed();
    await assert.rejects(RawClient.ws(b.wsPort!), /HTTP 503/);
    const line = b.lines.find((l) => l.msg === 'connection refused: too many connections');
    assert.equal(line?.level, 30, 'logged at info');
    assert.equal(line?.limit, 'MAX_CONNECTIONS_PER_ADDRESS');
    // A flood of refusals is one line a second, not one per connection.
    const floodStart = Date.now();
    for (let i = 0; i < 20; i++) {
      const more = await h.tcp(b);
      await more.expect('ERROR');
    }
    const allowedLines = 1 + Math.floor((Date.now() - floodStart) / 1000);
    assert.ok(b.lines.filter((l) => l.msg === 'connection refused: too many connections').length <= allowedLines, 'at most one line a second');
    assert.equal(b.lines.filter((l) => l.msg === 'session refused').length, 0, 'no per-connection refusal line');

    ws.close();
    await ws.waitClosed();
    // The server sees the socket close a moment later: then the place is free again.
    const deadline = Date.now() + 3000;
    let command = '';
    while (Date.now() < deadline) {
      const c = await h.tcp(b);
      c.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/' });
      command = (await c.next()).command;
      if (command === 'CONNECTED') break;
      await sleep(50);
    }
    assert.equal(command, 'CONNECTED', 'a closed connection freed its place');
  });

  it('MAX_CONNECTIONS: counts every socket, a WebSocket handshake in progress too', async () => {
    const b = await loggedBroker({ MAX_CONNECTIONS: '2', MAX_CONNECTIONS_PER_ADDRESS: '0' });
    const tcp = await h.tcp(b);
    await tcp.connect();
    await rawSocket(b.wsPort!); // a handshake not done yet holds a place
    const refused = await h.tcp(b);
    assert.match(header(await refused.expect('ERROR'), 'message') ?? '', /^TOO_MANY_CONNECTIONS/);
    assert.equal(b.lines.find((l) => l.msg === 'connection refused: too many connections')?.limit, 'MAX_CONNECTIONS');
  });
});
