// The hooks' HTTP client on its own, against real node:http servers: every way a call can end
// (no answer, an answer too large, cut off half-way, an error page, a backend that does not
// accept) ends it on its own deadline with the documented result, and the next call on the same
// one-connection pool still gets its own answer. Nothing of undici is mocked.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { after, describe, it } from 'node:test';
import { BackendUnavailable, createBackendClient } from '../../src/backend/client';
import type { BackendClientOptions, CallResult, HookCaller } from '../../src/backend/client';
import { until } from '../helpers/until';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** A node:http backend: `answer` gets each call's parsed JSON and its response. */
async function server(answer: (body: Record<string, unknown>, res: ServerResponse, req: IncomingMessage) => void): Promise<{ url: string; bodies: Record<string, unknown>[] }> {
  const bodies: Record<string, unknown>[] = [];
  const s = http.createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    req.on('end', () => {
      const body = JSON.parse(text) as Record<string, unknown>;
      bodies.push(body);
      answer(body, res, req);
    });
  });
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    s.closeAllConnections();
    return new Promise<void>((resolve) => s.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/stomp`, bodies };
}

function client(url: string, options: Partial<BackendClientOptions> = {}): HookCaller {
  const c = createBackendClient({ url, timeoutMs: 300, secret: undefined, maxResponseBytes: 1024, maxInFlight: 8, connections: 1, ...options });
  cleanups.push(() => c.close());
  return c;
}

/** The result a call failed with (it must fail). */
async function failure(call: Promise<unknown>): Promise<CallResult> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof BackendUnavailable, String(error));
    return error.result;
  }
  assert.fail('the call was expected to fail');
}

function json(res: ServerResponse, value: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

describe('the backend client', () => {
  it('BACKEND_CONNECTIONS=1: a call queued behind one the backend never answers fails as a timeout on its own deadline; the next call succeeds', async () => {
    const held: ServerResponse[] = [];
    let isHolding = true;
    const backend = await server((body, res) => (isHolding ? held.push(res) : json(res, { n: body.n })));
    const c = client(backend.url);
    const first = failure(c.call('send', { n: 1 }));
    await until(() => held.length === 1, 'the first call at the backend');
    let isFirstReleased = false;
    // Released whatever happens, later than any deadline: a second call waiting for the first would settle only after it.
    const release = setTimeout(() => {
      isFirstReleased = true;
      for (const res of held) json(res, { n: 'late' });
    }, 5000);
    const second = await failure(c.call('send', { n: 2 }));
    assert.equal(second, 'timeout');
    assert.equal(isFirstReleased, false, 'the queued call failed on its own deadline, not after the first was answered');
    assert.equal(await first, 'timeout');
    clearTimeout(release);
    isHolding = false;
    assert.deepEqual(await c.call('send', { n: 3 }), { n: 3 });
    assert.deepEqual(c.stats.calls.send, { timeout: 2, ok: 1 });
  });

  for (const [what, write] of [
    [
      'declared by its content-length',
      (res: ServerResponse) => {
        const text = JSON.stringify({ body: 'x'.repeat(5000) });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }).end(text);
      },
    ],
    [
      'chunked, found while reading',
      (res: ServerResponse) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"body":"');
        for (let n = 0; n < 4; n++) res.write('x'.repeat(400));
        setTimeout(() => res.end('"}'), 50);
      },
    ],
    [
      'chunked and never ending',
      (res: ServerResponse) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        const more = setInterval(() => (res.destroyed ? clearInterval(more) : res.write('x'.repeat(300))), 10);
      },
    ],
  ] as const) {
    it(`an answer over BACKEND_MAX_RESPONSE_BYTES ${what} is refused as too-large; the next call on the pool gets its own answer`, async () => {
      const backend = await server((body, res) => (body.n === 1 ? write(res) : json(res, { n: body.n })));
      const c = client(backend.url);
      assert.equal(await failure(c.call('send', { n: 1 })), 'too-large');
      assert.deepEqual(await c.call('send', { n: 2 }), { n: 2 });
      assert.deepEqual(c.stats.calls.send, { 'too-large': 1, ok: 1 });
    });
  }

  it('an answer whose body stops half-way is a timeout; the next call on the pool gets its own answer', async () => {
    const backend = await server((body, res) => {
      if (body.n !== 1) return json(res, { n: body.n });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '20' });
      res.write('{"n":');
    });
    const c = client(backend.url);
    assert.equal(await failure(c.call('send', { n: 1 })), 'timeout');
    assert.deepEqual(await c.call('send', { n: 2 }), { n: 2 });
  });

  it('an error page is status even when its body is over the cap and never ends (cut off, not read until the deadline); the next call succeeds', async () => {
    const backend = await server((body, res) => {
      if (body.n !== 1) return json(res, { n: body.n });
      res.writeHead(500, { 'content-type': 'text/html' });
      const more = setInterval(() => (res.destroyed ? clearInterval(more) : res.write('<p>oops</p>'.repeat(30))), 10);
    });
    const c = client(backend.url);
    assert.equal(await failure(c.call('send', { n: 1 })), 'status');
    assert.deepEqual(await c.call('send', { n: 2 }), { n: 2 });
  });

  it('a call after close() fails at once instead of waiting', async () => {
    const backend = await server((body, res) => json(res, { n: body.n }));
    const c = client(backend.url);
    assert.deepEqual(await c.call('send', { n: 1 }), { n: 1 });
    await c.close();
    assert.equal(await failure(c.call('send', { n: 2 })), 'error');
  });

  it('while connects hang, calls fail as timeouts but the pool holds no more than BACKEND_MAX_IN_FLIGHT of them: once the backend accepts, the next call is not queued behind every earlier one', async () => {
    // A backend that stops accepting: its thread is blocked, and once the kernel's queue (backlog 1)
    // is full, connects hang. It counts the connections that never carried a request.
    const gate = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
      const http = require('node:http');
      let empty = 0;
      const server = http.createServer((req, res) => { req.resume(); req.on('end', () => { res.setHeader('content-type', 'application/json'); res.end('{"ok":true}'); }); });
      server.on('connection', (socket) => { let isUsed = false; socket.once('data', () => (isUsed = true)); socket.on('close', () => { if (!isUsed) empty++; }); });
      parentPort.on('message', () => parentPort.postMessage(empty));
      server.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
        parentPort.postMessage(server.address().port);
        Atomics.wait(new Int32Array(workerData), 0, 0);
      });`,
      { eval: true, workerData: gate.buffer },
    );
    cleanups.push(() => worker.terminate().then(() => undefined));
    const port = await new Promise<number>((resolve) => worker.once('message', resolve));
    const fillers: net.Socket[] = [];
    let isFull = false;
    while (!isFull && fillers.length < 16) {
      const socket = net.connect(port, '127.0.0.1').on('error', () => undefined);
      fillers.push(socket);
      isFull = !(await new Promise<boolean>((resolve) => {
        socket.once('connect', () => resolve(true));
        setTimeout(() => resolve(false), 200);
      }));
    }
    // Linux holds a connect in SYN_SENT once a listener's accept queue is full: the backend then looks down.
    assert.ok(isFull, `connects to a listener with a full accept queue still completed (${fillers.length} of them)`);

    const maxInFlight = 2;
    const c = client(`http://127.0.0.1:${port}/stomp`, { timeoutMs: 100, maxInFlight });
    // Eight sessions, each calling again as soon as its call failed, for a while.
    let isDown = true;
    const whileDown: string[] = [];
    const stopAt = Date.now() + 800;
    const sessions = Array.from({ length: 8 }, async () => {
      while (Date.now() < stopAt) {
        const outcome = await c.call('send', {}).then(
          () => 'ok',
          (error: unknown) => (error instanceof BackendUnavailable ? error.result : String(error)),
        );
        if (isDown) whileDown.push(outcome);
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.ok(whileDown.length > 0 && whileDown.every((outcome) => outcome === 'timeout'), `every call failed as a timeout: ${whileDown.join()}`);

    isDown = false;
    for (const socket of fillers) socket.destroy();
    Atomics.store(gate, 0, 1);
    Atomics.notify(gate, 0);
    await Promise.all(sessions);
    let answer: unknown;
    await until(async () => {
      answer = await c.call('send', {}).catch(() => undefined);
      return answer !== undefined;
    }, 'a call answered once the backend accepts again');
    assert.deepEqual(answer, { ok: true });
    worker.postMessage('count');
    const empty = await new Promise<number>((resolve) => worker.once('message', resolve));
    // Each request the pool still held connects and is dropped unsent; the fillers add theirs.
    assert.ok(empty <= fillers.length + maxInFlight, `${empty} connections without a request: the pool held calls that had failed long before (${whileDown.length} timeouts)`);
  });
});
