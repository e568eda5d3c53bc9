// The shared write path of both transports: no copy per subscriber. Large MESSAGE frames
// (shared by every subscriber of a fan-out) are handed to the socket as they are, and a batch
// that several connections share is joined once; over WebSocket a batch is one message, in
// several fragments when it holds large frames, and message boundaries stay frame boundaries.

import assert from 'node:assert/strict';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { Decoder } from '../../src/codec';
import type { Frame } from '../../src/codec';
import { SHARED_MIN_BYTES, batchChunks, coalescingWindowMs, writeCoalescing } from '../../src/transport/connection';
import { harness } from '../helpers/harness';
import { header } from '../helpers/raw-client';

const h = harness();
const BIG_BODY_BYTES = 8192;

/** Every MESSAGE buffer of at least `minBytes` that any socket in this process is asked to write, while `run` runs. */
async function buffersWritten(minBytes: number, run: () => Promise<void>): Promise<Buffer[]> {
  const seen: Buffer[] = [];
  const proto = net.Socket.prototype as unknown as { write: (...args: unknown[]) => boolean };
  const original = proto.write;
  proto.write = function (this: net.Socket, ...args: unknown[]) {
    const bytes = args[0];
    if (Buffer.isBuffer(bytes) && bytes.length >= minBytes && bytes.subarray(0, 8).toString() === 'MESSAGE\n') seen.push(bytes);
    return original.apply(this, args);
  };
  try {
    await run();
  } finally {
    delete (proto as { write?: unknown }).write; // back to the inherited Writable.prototype.write
  }
  return seen;
}

/** Bodies: 'big-<i>' padded to BIG_BODY_BYTES, or 'small-<i>'. */
function body(kind: 'big' | 'small', i: number): string {
  const text = `${kind}-${i}`;
  return kind === 'big' ? text.padEnd(BIG_BODY_BYTES, '.') : text;
}

const PATTERN: readonly ('big' | 'small')[] = ['small', 'big', 'small', 'small', 'big', 'big', 'small'];

function burst(destination: string): string {
  return PATTERN.map((kind, i) => `SEND\ndestination:${destination}\n\n${body(kind, i)}\0`).join('');
}

describe('batchChunks', () => {
  it('joins each run of small buffers and keeps large ones as they are, in order', () => {
    const small = (text: string) => Buffer.from(text);
    const large = Buffer.alloc(SHARED_MIN_BYTES, 'L');
    const other = Buffer.alloc(SHARED_MIN_BYTES + 1, 'M');
    const queue = [small('a'), small('b'), large, small('c'), other, large, small('d'), small('e')];
    const chunks = batchChunks(queue);
    assert.equal(chunks.length, 6);
    assert.equal(chunks[0]!.toString(), 'ab');
    assert.ok(chunks[1] === large, 'a large buffer is passed by reference');
    assert.equal(chunks[2]!.toString(), 'c');
    assert.ok(chunks[3] === other);
    assert.ok(chunks[4] === large);
    assert.equal(chunks[5]!.toString(), 'de');
    assert.deepEqual(Buffer.concat(chunks), Buffer.concat(queue));
  });

  it('a single buffer, small or large, is the batch itself', () => {
    const one = Buffer.from('x');
    assert.ok(batchChunks([one])[0] === one);
    assert.equal(batchChunks([Buffer.from('a'), Buffer.from('b')]).length, 1);
  });
});

describe('write batching over real sockets', { timeout: 20000 }, () => {
  it('TCP: a fan-out of large MESSAGEs makes no copy per subscriber, and each gets every frame in order', async () => {
    const b = await h.broker();
    const subscribers = await Promise.all(Array.from({ length: 10 }, () => h.connected(b)));
    for (const sub of subscribers) {
      sub.sendFrame('SUBSCRIBE', { id: 'sub-0', destination: '/topic/big', receipt: 'r' });
      await sub.expect('RECEIPT');
    }
    const publisher = await h.connected(b);
    const written = await buffersWritten(BIG_BODY_BYTES, async () => {
      publisher.send(burst('/topic/big'));
      for (const sub of subscribers) await sub.waitUntil(() => sub.frames.length === 2 + PATTERN.length, 5000, 'every MESSAGE');
    });
    // The first socket of a flush pass is handed the 3 large frames themselves; the others,
    // whose batch is the very same buffers, one joined copy of it made once for all of them.
    // Even if the burst arrived in two reads (two passes), that is at most 3 + 2 buffers.
    const distinct = new Set(written).size;
    assert.ok(distinct <= 5, `${distinct} distinct large buffers for 10 subscribers: ${written.map((w) => w.length).join(', ')}`);
    assert.ok(written.length >= subscribers.length, 'every subscriber was written to');
    // The accounting saw each batch leave once, however many chunks it went out as.
    for (const session of b.sessions()) {
      assert.equal(session.connection.bufferedBytes, 0);
      assert.equal(session.connection.isWritable, true);
    }
    for (const sub of subscribers) {
      const messages = sub.frames.slice(2);
      assert.deepEqual(
        messages.map((m) => m.body.toString()),
        PATTERN.map((kind, i) => body(kind, i)),
      );
      assert.ok(messages.every((m) => header(m, 'subscription') === 'sub-0'));
    }
  });

  it('TCP: connections whose batches start alike but differ each get their own frames', async () => {
    const b = await h.broker();
    const [both, onlyX, onlyXLater] = await Promise.all([1, 2, 3].map(() => h.connected(b)));
    both!.sendFrame('SUBSCRIBE', { id: 'sub-0', destination: '/topic/x' });
    both!.sendFrame('SUBSCRIBE', { id: 'sub-1', destination: '/topic/y', receipt: 'r' });
    await both!.expect('RECEIPT');
    for (const sub of [onlyX!, onlyXLater!]) {
      sub.sendFrame('SUBSCRIBE', { id: 'sub-0', destination: '/topic/x', receipt: 'r' });
      await sub.expect('RECEIPT');
    }
    const publisher = await h.connected(b);
    const send = (destination: string, text: string) => `SEND\ndestination:${destination}\n\n${text.padEnd(BIG_BODY_BYTES, '.')}\0`;
    publisher.send(send('/topic/x', 'x1') + send('/topic/y', 'y1') + send('/topic/x', 'x2'));
    const bodies = async (sub: typeof both, count: number) => {
      await sub!.waitUntil(() => sub!.frames.length === 2 + count, 5000, `${count} MESSAGEs`);
      return sub!.frames.slice(2).map((m) => `${header(m, 'subscription')}:${m.body.toString().replace(/\.+$/, '')}`);
    };
    assert.deepEqual(await bodies(both, 3), ['sub-0:x1', 'sub-1:y1', 'sub-0:x2']);
    assert.deepEqual(await bodies(onlyX, 2), ['sub-0:x1', 'sub-0:x2']);
    assert.deepEqual(await bodies(onlyXLater, 2), ['sub-0:x1', 'sub-0:x2']);
    await onlyX!.expectSilence(100);
  });

  it('WebSocket: a batch with large frames is one message in fragments that ends on a frame boundary', async () => {
    const b = await h.broker();
    const sub = await RawWebSocket.open(b.wsPort!);
    sub.sendText('CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0SUBSCRIBE\nid:sub-0\ndestination:/topic/big\nreceipt:r\n\n\0');
    await sub.waitForFrames(2); // CONNECTED, RECEIPT
    const publisher = await h.connected(b);
    const written = await buffersWritten(BIG_BODY_BYTES, async () => {
      publisher.send(burst('/topic/big'));
      await sub.waitForFrames(2 + PATTERN.length);
    });
    assert.equal(new Set(written).size, 3, 'each large frame handed to the socket as it is');
    const wsSession = [...b.sessions()].find((session) => session.transport === 'ws')!;
    assert.equal(wsSession.connection.bufferedBytes, 0, 'the fragmented batch was accounted for once');
    const bodies = sub.frames.slice(2).map((m) => m.body.toString());
    assert.deepEqual(
      bodies,
      PATTERN.map((kind, i) => body(kind, i)),
    );
    assert.ok(
      sub.messages.some((m) => m.fragments > 1),
      `some message came in several fragments: ${JSON.stringify(sub.messages.map((m) => m.fragments))}`,
    );
    for (const message of sub.messages) {
      assert.equal(message.opcodes[0], 1, 'a text message');
      assert.ok(
        message.opcodes.slice(1).every((op) => op === 0),
        'then continuation frames',
      );
      assert.equal(message.endsOnFrameBoundary, true, 'every message ends where a STOMP frame ends');
    }
  });
});

interface WsMessage {
  fragments: number;
  opcodes: number[];
  endsOnFrameBoundary: boolean;
}

/**
 * A WebSocket client on a bare TCP socket, to see what `ws` clients hide: the fragments a
 * message is made of. Each reassembled message is decoded on its own, so a frame split
 * across two messages would show.
 */
class RawWebSocket {
  readonly frames: Frame[] = [];
  readonly messages: WsMessage[] = [];
  private pending = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private opcodes: number[] = [];
  private readonly stream: Decoder;
  private isUpgraded = false;

  private constructor(private readonly socket: net.Socket) {
    this.stream = new Decoder((frame) => this.frames.push(frame), { acceptServerCommands: true, limits: { maxFrameBytes: 1 << 24, maxHeaders: 100 } });
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
  }

  static async open(port: number): Promise<RawWebSocket> {
    const socket = h.track(net.connect(port, '127.0.0.1'));
    await new Promise((resolve) => socket.once('connect', resolve));
    const client = new RawWebSocket(socket);
    socket.write(
      'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' + 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n',
    );
    await client.until(() => client.isUpgraded, 'the upgrade');
    return client;
  }

  /** One masked text frame (a client must mask; an all-zero key leaves the payload as is). */
  sendText(text: string): void {
    const payload = Buffer.from(text);
    assert.ok(payload.length < 126);
    this.socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload]));
  }

  waitForFrames(count: number): Promise<void> {
    return this.until(() => this.frames.length >= count, `${count} STOMP frames`);
  }

  private async until(condition: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  private receive(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    if (!this.isUpgraded) {
      const end = this.pending.indexOf('\r\n\r\n');
      if (end < 0) return;
      assert.match(this.pending.subarray(0, end).toString(), /^HTTP\/1\.1 101/);
      this.pending = this.pending.subarray(end + 4);
      this.isUpgraded = true;
    }
    for (;;) {
      if (this.pending.length < 2) return;
      const isFin = (this.pending[0]! & 0x80) !== 0;
      const opcode = this.pending[0]! & 0x0f;
      let length = this.pending[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.pending.length < 4) return;
        length = this.pending.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.pending.length < 10) return;
        length = Number(this.pending.readBigUInt64BE(2));
        offset = 10;
      }
      if (this.pending.length < offset + length) return;
      this.fragments.push(this.pending.subarray(offset, offset + length));
      this.opcodes.push(opcode);
      this.pending = this.pending.subarray(offset + length);
      if (isFin) this.endMessage();
    }
  }

  private endMessage(): void {
    const payload = Buffer.concat(this.fragments);
    const alone = new Decoder(() => undefined, { acceptServerCommands: true, limits: { maxFrameBytes: 1 << 24, maxHeaders: 100 } });
    alone.push(payload);
    const isWhole = payload[payload.length - 1] === 0 && alone.bufferedBytes === 0;
    this.messages.push({ fragments: this.fragments.length, opcodes: this.opcodes, endsOnFrameBoundary: isWhole });
    this.stream.push(payload);
    this.fragments = [];
    this.opcodes = [];
  }
}

describe('the write-coalescing window adapts to load', () => {
  /** Keeps this event loop busy (no turn ends) for `ms`. */
  const spin = (ms: number): void => {
    const until = performance.now() + ms;
    while (performance.now() < until);
  };
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

  it('doubles while the event loop is saturated, up to the ceiling, and halves back to the floor once it idles', async () => {
    const saved = { ...writeCoalescing };
    Object.assign(writeCoalescing, { windowMs: 1, maxWindowMs: 8 });
    try {
      await sleep(30);
      coalescingWindowMs(performance.now()); // the first reading: nothing to compare with yet
      await sleep(30);
      assert.equal(coalescingWindowMs(performance.now()), 1, 'an idle loop keeps the floor');
      const busy: number[] = [];
      for (let i = 0; i < 5; i++) {
        spin(30);
        busy.push(coalescingWindowMs(performance.now()));
      }
      assert.deepEqual(busy, [2, 4, 8, 8, 8]);
      const idle: number[] = [];
      for (let i = 0; i < 4; i++) {
        await sleep(40);
        idle.push(coalescingWindowMs(performance.now()));
      }
      assert.deepEqual(idle, [4, 2, 1, 1]);
      spin(30);
      assert.equal(coalescingWindowMs(performance.now()), 2);
      spin(10);
      assert.equal(coalescingWindowMs(performance.now()), 2, 'adjusted at most every 20 ms');
    } finally {
      Object.assign(writeCoalescing, saved);
    }
  });

  it('stays at WRITE_COALESCE_MS when the ceiling is not above it', () => {
    const saved = { ...writeCoalescing };
    Object.assign(writeCoalescing, { windowMs: 3, maxWindowMs: 2 });
    try {
      spin(30);
      assert.equal(coalescingWindowMs(performance.now()), 3);
    } finally {
      Object.assign(writeCoalescing, saved);
    }
  });
});
