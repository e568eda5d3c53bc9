// Header escaping as receivers of every version see it on the wire: header names a 1.2
// sender escapes a colon or line break into are passed through, escaped, to 1.1 and 1.2
// receivers and left out for 1.0 ones (which cannot escape: they would read a forged header
// or frame); names a client could mistake for the broker's own user-id are dropped; an ERROR before CONNECTED is not escaped (the client
// knows no version yet) while one after CONNECTED is, and user ids that user destinations
// could not address are refused at CONNECT.
//
// The receivers here read raw bytes from a plain socket and frame them themselves, the way
// a naive 1.0 client would: the first content-length line decides where the body ends.

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { harness } from '../helpers/harness';
import { SECRET, refused } from '../helpers/jwt';
import { header } from '../helpers/raw-client';
import type { RawClient } from '../helpers/raw-client';
import type { Header } from '../../src/codec';

const h = harness();
const broker = (overrides: Record<string, string> = {}): Promise<RunningServer> => h.broker(overrides);
const rawClient = (b: RunningServer): Promise<RawClient> => h.tcp(b);

interface RawFrame {
  command: string;
  /** Header lines exactly as they came, undecoded. */
  headerLines: string[];
  body: Buffer;
}

/**
 * Frames in `bytes`, framed naively: heart-beat EOLs skipped, the header block ends at the
 * first blank line, the FIRST line starting with "content-length:" gives the body length
 * (else the body ends at the first NUL). Stops at an incomplete frame.
 */
function parseRawFrames(bytes: Buffer): RawFrame[] {
  const frames: RawFrame[] = [];
  let pos = 0;
  for (;;) {
    while (pos < bytes.length && (bytes[pos] === 0x0a || bytes[pos] === 0x0d)) pos++;
    if (pos >= bytes.length) return frames;
    const headEnd = bytes.indexOf('\n\n', pos);
    if (headEnd === -1) return frames;
    const lines = bytes.toString('utf8', pos, headEnd).split('\n');
    const command = lines.shift()!;
    const bodyStart = headEnd + 2;
    const lengthLine = lines.find((line) => line.startsWith('content-length:'));
    let bodyEnd: number;
    if (lengthLine !== undefined) {
      bodyEnd = bodyStart + Number.parseInt(lengthLine.slice('content-length:'.length), 10);
      if (bytes.length < bodyEnd + 1) return frames;
      assert.equal(bytes[bodyEnd], 0, `the ${command} body given by ${JSON.stringify(lengthLine)} is not followed by a NUL`);
    } else {
      bodyEnd = bytes.indexOf(0, bodyStart);
      if (bodyEnd === -1) return frames;
    }
    frames.push({ command, headerLines: lines, body: bytes.subarray(bodyStart, bodyEnd) });
    pos = bodyEnd + 1;
  }
}

/** A plain TCP socket that keeps every byte the broker sends. */
class RawSocket {
  bytes = Buffer.alloc(0);
  isClosed = false;
  private readonly socket: net.Socket;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => (this.bytes = Buffer.concat([this.bytes, chunk])));
    socket.on('close', () => (this.isClosed = true));
    socket.on('error', () => undefined);
  }

  static async open(port: number): Promise<RawSocket> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const raw = new RawSocket(socket);
    h.track(raw);
    return raw;
  }

  write(bytes: string | Buffer): void {
    this.socket.write(bytes);
  }

  get text(): string {
    return this.bytes.toString('utf8');
  }

  frames(): RawFrame[] {
    return parseRawFrames(this.bytes);
  }

  async waitUntil(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.text.slice(0, 2000))}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Wait for `count` frames, then make sure no other frame follows within `quietMs`. */
  async expectFrames(count: number, quietMs = 200): Promise<RawFrame[]> {
    await this.waitUntil(() => this.frames().length >= count, `${count} frames`);
    await new Promise((resolve) => setTimeout(resolve, quietMs));
    const frames = this.frames();
    assert.equal(frames.length, count, `expected ${count} frames, got ${frames.map((f) => f.command).join(', ')}`);
    return frames;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** The raw name of a header line: everything before its first (unescaped) colon. */
const rawName = (line: string): string => line.slice(0, line.indexOf(':') === -1 ? line.length : line.indexOf(':'));

describe('forged header names and bodies', { timeout: 15000 }, () => {
  // A whole frame inside the body: NULs, a MESSAGE command, a user-id of someone else.
  const FORGED_BODY = Buffer.from('\0MESSAGE\nuser-id:admin\ndestination:/topic/forge\ncontent-length:6\n\nforged\0\nERROR\nmessage:x\n\n\0');

  for (const receiver of [
    { version: '1.0', connect: 'CONNECT\nlogin:old-reader\n\n\0' },
    { version: '1.1', connect: 'CONNECT\naccept-version:1.1\nhost:/\nheart-beat:0,0\nlogin:mid-reader\n\n\0' },
    { version: '1.2', connect: 'CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:new-reader\n\n\0' },
  ]) {
    it(`a ${receiver.version} receiver sees one MESSAGE, the broker's content-length and user-id, no forged header`, async () => {
      const b = await broker();
      const destination = `/topic/forge-${receiver.version}`;
      const reader = await RawSocket.open(b.tcpPort!);
      reader.write(receiver.connect);
      reader.write(`SUBSCRIBE\nid:r\ndestination:${destination}\nreceipt:sub\n\n\0`);
      const [connected, receipt] = await reader.expectFrames(2, 0);
      assert.equal(connected!.command, 'CONNECTED');
      assert.ok(connected!.headerLines.includes(`version:${receiver.version}`), connected!.headerLines.join('|'));
      assert.equal(receipt!.command, 'RECEIPT');

      const sender = await RawSocket.open(b.tcpPort!);
      sender.write('CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:mallory\n\n\0');
      await sender.expectFrames(1, 0);
      // Header names decoding to "content-length:1", "a\nb", "c\rr" and "user-id:", forged
      // user-ids in every spelling a lenient client might take for the real one, a harmless
      // header that must come through, and the real content-length.
      const send = Buffer.concat([
        Buffer.from(
          `SEND\ndestination:${destination}\ncontent-length\\c1:x\na\\nb:v\nc\\rr:w\nuser-id\\c:admin\nuser-id:admin\nUser-Id:admin\nuser-id :admin\nuser_id:admin\nx-dropped:999\nX-Dropped:5\nx-kept:yes\ncontent-length:${FORGED_BODY.length}\nreceipt:sent\n\n`,
        ),
        FORGED_BODY,
        Buffer.from('\0'),
        Buffer.from(`SEND\ndestination:${destination}\nreceipt:marker\n\nmarker\0`),
      ]);
      sender.write(send);
      const senderFrames = await sender.expectFrames(3, 0);
      assert.deepEqual(
        senderFrames.map((f) => f.command),
        ['CONNECTED', 'RECEIPT', 'RECEIPT'],
        'the SEND was accepted',
      );

      // Exactly the forged-test MESSAGE and then the marker: framing stayed in step.
      const frames = (await reader.expectFrames(4)).slice(2);
      assert.deepEqual(
        frames.map((f) => f.command),
        ['MESSAGE', 'MESSAGE'],
      );
      const [message, marker] = frames as [RawFrame, RawFrame];
      assert.deepEqual(message.body, FORGED_BODY, 'the body arrives whole, NULs and all');
      assert.equal(marker.body.toString(), 'marker');

      const lengthLines = message.headerLines.filter((line) => line.startsWith('content-length:'));
      assert.deepEqual(lengthLines, [`content-length:${FORGED_BODY.length}`], "only the broker's content-length");
      const userLines = message.headerLines.filter((line) => /^user[^a-z]*id/i.test(line));
      assert.deepEqual(userLines, ['user-id:mallory'], 'exactly one user-id line: the real sender');
      assert.ok(!message.headerLines.some((line) => line === 'a' || line.startsWith('b:') || line.startsWith('a_b')), message.headerLines.join('|'));
      // Passed through where the receiver's version can escape the name (1.1 has no \r).
      const passedThrough = ({ '1.0': [], '1.1': ['a\\nb', 'content-length\\c1'], '1.2': ['a\\nb', 'c\\rr', 'content-length\\c1'] } as Record<string, string[]>)[receiver.version]!;
      assert.deepEqual(
        message.headerLines.map(rawName).sort(),
        ['content-length', 'destination', 'message-id', 'subscription', 'user-id', 'x-kept', ...passedThrough].sort(),
        `header lines: ${JSON.stringify(message.headerLines)}`,
      );
      if (receiver.version !== '1.0') assert.ok(message.headerLines.includes('content-length\\c1:x') && message.headerLines.includes('a\\nb:v'), message.headerLines.join('|'));
      assert.ok(message.headerLines.includes('x-kept:yes'));
      assert.ok(message.headerLines.includes(`destination:${destination}`));
    });
  }
});

describe('ERROR escaping by state', { timeout: 10000 }, () => {
  it('an unsupported version: the ERROR before CONNECTED is unescaped (message:UNSUPPORTED_VERSION: ...)', async () => {
    const b = await broker();
    const c = await RawSocket.open(b.tcpPort!);
    c.write('CONNECT\naccept-version:9.9\nhost:/\n\n\0');
    await c.waitUntil(() => c.isClosed, 'the broker to close');
    const [error] = parseRawFrames(c.bytes);
    assert.equal(error?.command, 'ERROR');
    assert.ok(c.text.includes('\nmessage:UNSUPPORTED_VERSION: '), c.text);
    assert.ok(!c.text.includes('\\c'), `nothing escaped: ${c.text}`);
    assert.ok(error.headerLines.includes('version:1.0,1.1,1.2'), error.headerLines.join('|'));
  });

  it('a malformed token on a JWT broker: the ERROR before CONNECTED is unescaped (message:UNAUTHENTICATED: ...)', async () => {
    const b = await broker({ JWT_SECRET: SECRET });
    const c = await RawSocket.open(b.tcpPort!);
    c.write('CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nAuthorization:Bearer not.a-token\n\n\0');
    await c.waitUntil(() => c.isClosed, 'the broker to close');
    assert.equal(parseRawFrames(c.bytes)[0]?.command, 'ERROR');
    assert.ok(c.text.includes('\nmessage:UNAUTHENTICATED: '), c.text);
    assert.ok(!c.text.includes('\\c'), `nothing escaped: ${c.text}`);
  });

  it('an ERROR after CONNECTED on a 1.2 session is escaped (message:MISSING_HEADER\\c ...)', async () => {
    const b = await broker();
    const c = await RawSocket.open(b.tcpPort!);
    c.write('CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0');
    await c.expectFrames(1, 0);
    c.write('SEND\nreceipt:r1\n\nno destination\0');
    await c.waitUntil(() => c.isClosed, 'the broker to close');
    const frames = parseRawFrames(c.bytes);
    assert.deepEqual(
      frames.map((f) => f.command),
      ['CONNECTED', 'ERROR'],
    );
    assert.ok(
      frames[1]!.headerLines.some((line) => line.startsWith('message:MISSING_HEADER\\c ')),
      frames[1]!.headerLines.join('|'),
    );
    assert.ok(!frames[1]!.headerLines.some((line) => line.startsWith('message:MISSING_HEADER: ')), 'the colon is escaped');
    assert.ok(frames[1]!.headerLines.includes('receipt-id:r1'));
  });
});

describe('user ids user destinations cannot address', { timeout: 10000 }, () => {
  it('login "alice/queue" is refused with UNAUTHENTICATED', async () => {
    const b = await broker();
    const c = await rawClient(b);
    await refused(c, { login: 'alice/queue' }, 'UNAUTHENTICATED');
  });

  it('login "queue" (the queue prefix name) is refused with UNAUTHENTICATED', async () => {
    const b = await broker();
    const c = await rawClient(b);
    await refused(c, { login: 'queue' }, 'UNAUTHENTICATED');
  });

  it('login "alice" is fine', async () => {
    const b = await broker();
    const c = await rawClient(b);
    const connected = await c.connect({ login: 'alice' });
    assert.equal(header(connected, 'user-name'), 'alice');
  });
});

// What stompngo's TestCodecSendRecvCodec checks: a SEND's own headers — names and values
// with colons, backslashes and slashes — come back in the MESSAGE exactly as sent, for each
// protocol version (send first, then subscribe: the queue keeps the message meanwhile).
describe('user-defined headers pass through (STOMP 1.2 "SEND": they MUST be passed through)', { timeout: 10000 }, () => {
  const SENT: Header[] = [
    ['key:one', 'value\\one'],
    ['key/ntwo', 'value:two\\back:slash'],
    ['key:three/naaa\\bbb', 'value\\three:aaa/nbbb'],
    ['line\nbreak', 'multi\nline'],
  ];

  for (const version of ['1.1', '1.2'] as const) {
    it(`${version}: escaped names and values arrive unchanged`, async () => {
      const b = await broker();
      const c = await rawClient(b);
      await c.connect({ 'accept-version': version, login: `codec-${version}` });
      const destination = `/queue/codec.sendrecv.${version}`;
      c.sendFrame('SEND', [['destination', destination], ...SENT, ['receipt', 'sent']], 'a message');
      await c.expect('RECEIPT');
      c.sendFrame('SUBSCRIBE', { destination, id: 'sub-codec' });
      const message = await c.expect('MESSAGE');
      for (const [name, value] of SENT) assert.equal(header(message, name), value, `header ${JSON.stringify(name)}`);
      assert.equal(message.body.toString(), 'a message');
    });
  }

  it('1.0: no escaping, so "key:one:value:a" is the header "key" with value "one:value:a", both ways', async () => {
    const b = await broker();
    const c = await rawClient(b);
    c.send('CONNECT\nlogin:codec-10\n\n\0');
    await c.expect('CONNECTED');
    c.send('SEND\ndestination:/queue/codec.sendrecv.1.0\nkey:one:value:a\nkeya:valuea\nreceipt:sent\n\nmsg\0');
    await c.expect('RECEIPT');
    c.send('SUBSCRIBE\ndestination:/queue/codec.sendrecv.1.0\nid:s\n\n\0');
    const message = await c.expect('MESSAGE');
    assert.equal(header(message, 'key'), 'one:value:a');
    assert.equal(header(message, 'keya'), 'valuea');
  });
});
