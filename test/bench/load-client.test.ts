// The load generator's own parts: the frame counter that guesses where the next NUL is, and
// the minimal WebSocket client (bench/wire.ts) against a real `ws` server. A counter that
// miscounts, or a client that misreads a frame, would make every bench figure wrong.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { NulCounter } from '../../bench/load-client';
import { LatencyRecorder } from '../../bench/latency';
import { TIMESTAMP_DIGITS, makeBody, writeTimestamp } from '../../bench/payload';
import { openTcpWire, openWsWire } from '../../bench/wire';

/** A fixed pseudo-random sequence, so that a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state / 0x7fffffff;
  };
}

/** MESSAGE frames as stompd writes them: growing message-ids, x-dropped now and then, one body size. */
function messageStream(count: number, bodyBytes: number, next: () => number, stampOf = (i: number) => 1_000_000 + i): { stream: Buffer; stamps: number[] } {
  const frames: Buffer[] = [];
  const stamps: number[] = [];
  for (let i = 0; i < count; i++) {
    const dropped = next() < 0.1 ? `x-dropped:${Math.floor(next() * 100000)}\n` : '';
    const head = Buffer.from(`MESSAGE\nsubscription:0\nmessage-id:${i}\ndestination:/topic/t\n${dropped}content-length:${bodyBytes}\n\n`, 'latin1');
    const body = makeBody(bodyBytes);
    const stamp = stampOf(i);
    writeTimestamp(body, body.length, stamp);
    stamps.push(stamp);
    frames.push(head, body, Buffer.from([0]));
  }
  return { stream: Buffer.concat(frames), stamps };
}

test('the NUL counter counts every frame and reads every send time, however the stream is cut', () => {
  for (const bodyBytes of [TIMESTAMP_DIGITS, 80, 8192]) {
    for (let seed = 1; seed <= 20; seed++) {
      const next = random(seed * 7919 + bodyBytes);
      const frameCount = bodyBytes > 1000 ? 60 : 1200; // message-ids 0..1199 grow from 1 to 4 digits
      const { stream } = messageStream(frameCount, bodyBytes, next);
      const counter = new NulCounter();
      const latency = new LatencyRecorder(frameCount);
      let counted = 0;
      for (let at = 0; at < stream.length;) {
        // Chunks from 1 byte to a few frames long, each inside a bigger buffer full of NULs,
        // as a view of the shared read buffer would be: nothing outside [start, end) counts.
        const size = Math.min(stream.length - at, 1 + Math.floor(next() * (next() < 0.3 ? 20 : 3 * (bodyBytes + 100))));
        const padding = Math.floor(next() * 40);
        const buffer = Buffer.alloc(padding + size + 40);
        stream.copy(buffer, padding, at, at + size);
        counted += counter.count(buffer, padding, padding + size, latency);
        at += size;
      }
      assert.equal(counted, frameCount, `body ${bodyBytes}, seed ${seed}`);
      assert.equal(counter.unparsed, 0, `body ${bodyBytes}, seed ${seed}: a send time was misread`);
      assert.equal(latency.samples().length, frameCount);
    }
  }
});

test('the NUL counter reads each send time from its own frame', () => {
  // Stamps 10^10 µs apart: now − stamp tells which frame a sample came from.
  const STEP = 1e10;
  const { stream, stamps } = messageStream(50, 40, random(3), (i) => (i + 1) * STEP);
  const counter = new NulCounter();
  const latency = new LatencyRecorder(100);
  for (let at = 0; at < stream.length; at += 7) counter.count(stream, at, Math.min(stream.length, at + 7), latency);
  const samples = [...latency.samples()];
  assert.equal(samples.length, stamps.length);
  let lastNow = 0;
  samples.forEach((sample, i) => {
    const now = sample + stamps[i]!; // the clock read for the chunk the frame ended in
    assert.ok(now >= lastNow && now < STEP, `frame ${i}: its sample is not now − its own stamp`);
    lastNow = now;
  });
});

async function wsServer(): Promise<{ server: WebSocketServer; port: number; connection: Promise<WebSocket> }> {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', path: '/ws', handleProtocols: (protocols) => (protocols.has('v12.stomp') ? 'v12.stomp' : false) });
  await once(server, 'listening');
  const connection = once(server, 'connection').then(([ws]) => ws as WebSocket);
  return { server, port: (server.address() as AddressInfo).port, connection };
}

test('the bench WebSocket client: the upgrade, fragments, long lengths, pings, masked sends and the close code', async () => {
  const { server, port, connection } = await wsServer();
  try {
    let received = Buffer.alloc(0);
    let lostReason: string | undefined;
    const lost = new Promise<void>((resolve) => {
      const opening = openWsWire({ host: '127.0.0.1', port, path: '/ws', protocol: 'v12.stomp', localAddress: undefined }, false, {
        onBytes: (bytes, start, end) => {
          received = Buffer.concat([received, bytes.subarray(start, end)]);
        },
        onLost: (reason) => {
          lostReason = reason;
          resolve();
        },
      });
      void opening.wire.then(async (wire) => {
        const peer = await connection;
        assert.equal(peer.protocol, 'v12.stomp');
        const fromClient = once(peer, 'message');
        wire.send(Buffer.from('SEND\ndestination:/topic/t\n\nhello\0'));
        const [data, isBinary] = (await fromClient) as [Buffer, boolean];
        assert.equal(data.toString(), 'SEND\ndestination:/topic/t\n\nhello\0', 'the server unmasked what we sent');
        assert.equal(isBinary, false);
        const pong = once(peer, 'pong');
        peer.ping(Buffer.from('are you there'));
        assert.equal(((await pong) as [Buffer])[0].toString(), 'are you there');
        // One message in three fragments, one of 70,000 bytes (an 8-byte length), one of 300 (a 2-byte length).
        peer.send(Buffer.from('first,'), { fin: false, binary: false });
        peer.send(Buffer.alloc(70_000, 'x'), { fin: false, binary: false });
        peer.send(Buffer.from('last'), { fin: true, binary: false });
        peer.send(Buffer.alloc(300, 'y'), { binary: false });
        peer.close(4001, 'bye');
      });
    });
    await lost;
    assert.equal(received.toString(), `first,${'x'.repeat(70_000)}last${'y'.repeat(300)}`);
    assert.match(lostReason ?? '', /code 4001/);
  } finally {
    server.close();
  }
});

test('the bench WebSocket client fails to open when the server refuses the upgrade', async () => {
  const { server, port } = await wsServer();
  try {
    await assert.rejects(
      openWsWire({ host: '127.0.0.1', port, path: '/elsewhere', protocol: 'v12.stomp', localAddress: undefined }, false, { onBytes: () => {}, onLost: () => {} }).wire,
      /upgrade refused: HTTP\/1\.1 400/,
    );
  } finally {
    server.close();
  }
});

/** A raw server that accepts one WebSocket upgrade and then writes `bytes`, one byte per write. */
async function trickleServer(bytes: Buffer): Promise<{ server: net.Server; port: number; closed: Promise<void>; pong: Promise<Buffer> }> {
  let onClosed = (): void => {};
  let onPong = (_: Buffer): void => {};
  const closed = new Promise<void>((resolve) => (onClosed = resolve));
  const pong = new Promise<Buffer>((resolve) => (onPong = resolve));
  const server = net.createServer((socket) => {
    let request = '';
    socket.on('close', onClosed);
    socket.on('data', (chunk) => {
      if (request.endsWith('\r\n\r\n')) {
        // A client frame: the pong (masked, payload < 126 bytes).
        const length = chunk[1]! & 0x7f;
        const mask = chunk.subarray(2, 6);
        onPong(Buffer.from(chunk.subarray(6, 6 + length).map((b, i) => b ^ mask[i % 4]!)));
        return;
      }
      request += chunk.toString('latin1');
      if (!request.endsWith('\r\n\r\n')) return;
      const key = /sec-websocket-key: *(\S+)/i.exec(request)![1]!;
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      let at = 0;
      const next = (): void => {
        if (at >= bytes.length || socket.destroyed) return;
        socket.write(bytes.subarray(at, at + 1));
        at++;
        setTimeout(next, 1);
      };
      next();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, closed, pong };
}

test('the bench WebSocket client reads frames that come a byte at a time, a ping between fragments, and nothing after a close', async () => {
  const frames = Buffer.concat([
    Buffer.from([0x01, 5]), // text, not FIN
    Buffer.from('abcde'),
    Buffer.from([0x89, 2]), // ping between the fragments
    Buffer.from('hi'),
    Buffer.from([0x80, 126, 0x01, 0x00]), // the last fragment, a 2-byte length: 256
    Buffer.alloc(256, 'z'),
    Buffer.from([0x88, 2, 0x0f, 0xa1]), // close, code 4001
    Buffer.from([0x81, 3]), // a frame after the close: never handed on
    Buffer.from('late'),
  ]);
  const { server, port, pong } = await trickleServer(frames);
  try {
    let received = '';
    const lost = new Promise<string>((resolve) => {
      const opening = openWsWire({ host: '127.0.0.1', port, path: '/', protocol: undefined, localAddress: undefined }, true, {
        onBytes: (bytes, start, end) => (received += bytes.toString('latin1', start, end)),
        onLost: resolve,
      });
      void opening.wire.catch(() => {});
    });
    assert.equal((await pong).toString(), 'hi', 'the ping was answered with its payload, masked');
    assert.match(await lost, /code 4001/);
    assert.equal(received, `abcde${'z'.repeat(256)}`);
  } finally {
    server.close();
  }
});

test('the bench wires: a refused connect rejects the opening and reports no loss; abort() closes a hanging upgrade', async () => {
  const probe = net.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const closedPort = (probe.address() as AddressInfo).port;
  probe.close();
  await once(probe, 'close');
  let losses = 0;
  await assert.rejects(openTcpWire('127.0.0.1', closedPort, undefined, { onBytes: () => {}, onLost: () => losses++ }).wire, /ECONNREFUSED/);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(losses, 0);

  // A server that takes the connection and never answers the upgrade.
  let serverSide: net.Socket | undefined;
  const hanging = net.createServer((socket) => {
    serverSide = socket;
    socket.resume(); // read (and drop) the upgrade request, so that the peer's close is seen
  });
  hanging.listen(0, '127.0.0.1');
  await once(hanging, 'listening');
  try {
    const opening = openWsWire({ host: '127.0.0.1', port: (hanging.address() as AddressInfo).port, path: '/', protocol: undefined, localAddress: undefined }, false, { onBytes: () => {}, onLost: () => losses++ });
    while (serverSide === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
    const serverSaw = once(serverSide, 'close');
    opening.abort();
    await assert.rejects(opening.wire, /aborted/);
    await serverSaw;
    assert.equal(losses, 0);
  } finally {
    hanging.close();
  }
});
