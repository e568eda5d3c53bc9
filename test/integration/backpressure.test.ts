// A subscriber that stops reading is not fed without bound: past the write-buffer limit
// its messages are dropped and counted (policy drop) or it is disconnected (policy disconnect).
// A drop is never silent: it is logged, and the subscriber's next MESSAGE says how many it missed.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import WebSocket from 'ws';
import { Decoder } from '../../src/codec';
import type { Frame } from '../../src/codec';
import type { RunningServer } from '../../src/server';
import { DROP_LOG_MESSAGE } from '../../src/session/dropped-message-log';
import { startBroker } from '../helpers/broker';
import { RawClient, header } from '../helpers/raw-client';

const brokers: RunningServer[] = [];
const sockets: net.Socket[] = [];
const clients: { destroy(): void }[] = [];

after(async () => {
  for (const s of sockets) s.destroy();
  for (const c of clients) c.destroy();
  await Promise.all(brokers.map((b) => b.stop()));
});

/** A subscriber that never reads after its RECEIPT. */
async function stalledSubscriber(b: RunningServer, destination: string): Promise<net.Socket> {
  const socket = net.connect(b.tcpPort!, '127.0.0.1');
  sockets.push(socket);
  socket.setNoDelay(true);
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(`CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:slow\n\n\0SUBSCRIBE\nid:1\ndestination:${destination}\nreceipt:r\n\n\0`);
  let seen = '';
  await new Promise<void>((resolve) => {
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes('RECEIPT')) {
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
  });
  socket.pause();
  return socket;
}

/** Body of the i-th flood message: its number, padded. */
function numbered(i: number, bodyBytes: number): string {
  return String(i).padEnd(bodyBytes, 'x');
}

interface PausedSubscriber {
  /** MESSAGE frames received, once reading resumes. */
  readonly messages: Frame[];
  resume(): void;
}

function messageCollector(): { messages: Frame[]; decoder: Decoder } {
  const messages: Frame[] = [];
  const decoder = new Decoder((frame) => frame.command === 'MESSAGE' && messages.push(frame), { acceptServerCommands: true, limits: { maxFrameBytes: 1 << 20, maxHeaders: 100 } });
  return { messages, decoder };
}

/** User `slow`, subscribed (id 1) over TCP, then not reading until resume(). */
async function pausedTcpSubscriber(b: RunningServer, destination: string): Promise<PausedSubscriber> {
  const socket = await stalledSubscriber(b, destination);
  const { messages, decoder } = messageCollector();
  socket.on('data', (chunk: Buffer) => decoder.push(chunk)); // paused: nothing flows until resume()
  return { messages, resume: () => socket.resume() };
}

/** User `slow`, subscribed (id 1) over WebSocket, then not reading until resume(). */
async function pausedWsSubscriber(b: RunningServer, destination: string): Promise<PausedSubscriber> {
  const ws = new WebSocket(`ws://127.0.0.1:${b.wsPort}/ws`, ['v12.stomp']);
  clients.push({ destroy: () => ws.terminate() });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const { messages, decoder } = messageCollector();
  let isSubscribed = false;
  const receipts = new Decoder((frame) => (isSubscribed ||= frame.command === 'RECEIPT'), { acceptServerCommands: true });
  ws.on('message', (data: Buffer) => (isSubscribed ? decoder : receipts).push(data));
  ws.send(`CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:slow\n\n\0SUBSCRIBE\nid:1\ndestination:${destination}\nreceipt:r\n\n\0`);
  const deadline = Date.now() + 5000;
  while (!isSubscribed) {
    if (Date.now() > deadline) throw new Error('no RECEIPT for the SUBSCRIBE');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  ws.pause();
  return { messages, resume: () => ws.resume() };
}

async function flood(b: RunningServer, destination: string, count: number, bodyBytes: number): Promise<RawClient> {
  const pub = await RawClient.tcp(b.tcpPort!);
  clients.push(pub);
  await pub.connect();
  // Small bursts, paced: a reading subscriber never has more than a burst outstanding.
  for (let i = 0; i < count; i += 8) {
    let burst = '';
    for (let j = i; j < Math.min(count, i + 8); j++) burst += `SEND\ndestination:${destination}\n\n${numbered(j, bodyBytes)}\0`;
    pub.send(burst);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  pub.sendFrame('SEND', { destination: '/topic/none', receipt: 'done' });
  await pub.expect('RECEIPT', 10000);
  return pub;
}

describe('slow consumers', { timeout: 30000 }, () => {
  it('drop policy: the outbound buffer stays bounded, drops are counted, a fast subscriber gets everything', async () => {
    const b = await startBroker({ HEARTBEAT: '0,0', WRITE_BUFFER_LIMIT_BYTES: '262144', SLOW_CONSUMER_POLICY: 'drop' });
    brokers.push(b);
    await stalledSubscriber(b, '/topic/flood');
    const fast = await RawClient.tcp(b.tcpPort!);
    clients.push(fast);
    await fast.connect();
    fast.sendFrame('SUBSCRIBE', { id: 'f', destination: '/topic/flood', receipt: 'r' });
    await fast.expect('RECEIPT');

    await flood(b, '/topic/flood', 3000, 8 * 1024); // ~24 MiB: more than loopback socket buffers hold
    const slow = [...b.sessions()].find((s) => s.principal?.userId === 'slow')!;
    assert.ok(slow.droppedMessages > 0, 'messages were dropped for the stalled subscriber');
    assert.ok(slow.connection.bufferedBytes <= 262144 + 16 * 1024, `buffered ${slow.connection.bufferedBytes} bytes`);
    await fast.waitUntil(() => fast.frames.filter((f) => f.command === 'MESSAGE').length === 3000, 10000, 'all 3000 messages');
  });

  for (const transport of ['tcp', 'ws'] as const) {
    it(`drop policy over ${transport}: the next MESSAGE tells how many were dropped (x-dropped), and the log says so once`, async () => {
      const logLines: Record<string, unknown>[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, unknown>) });
      const b = await startBroker({ HEARTBEAT: '0,0', WRITE_BUFFER_LIMIT_BYTES: '262144', SLOW_CONSUMER_POLICY: 'drop' }, { logger });
      brokers.push(b);
      const subscriber = transport === 'tcp' ? await pausedTcpSubscriber(b, '/topic/gap') : await pausedWsSubscriber(b, '/topic/gap');
      const published = 3000;
      const pub = await flood(b, '/topic/gap', published, 8 * 1024);
      const slow = [...b.sessions()].find((s) => s.principal?.userId === 'slow')!;
      const dropped = slow.droppedMessages;
      assert.ok(dropped > 0, 'messages were dropped for the stalled subscriber');
      assert.equal(b.router.stats().droppedForSlowConsumers, dropped, 'the broker-wide total');
      assert.equal(slow.subscriptions.get('1')!.droppedCount, dropped, 'the subscription count');

      // The drops are logged at once, then rate-limited: one line for this whole flood.
      const dropLines = logLines.filter((l) => l.msg === DROP_LOG_MESSAGE && l.sessionId === slow.id);
      assert.equal(dropLines.length, 1, JSON.stringify(dropLines));
      assert.equal(dropLines[0]!.userId, 'slow');
      assert.equal(dropLines[0]!.destination, '/topic/gap');
      assert.equal(dropLines[0]!.droppedMessages, 1);

      const messages = subscriber.messages;
      subscriber.resume();
      const until = async (count: number, what: string): Promise<void> => {
        const deadline = Date.now() + 10000;
        while (messages.length < count) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${messages.length}/${count}`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      };
      await until(published - dropped, 'what was buffered before the drops');
      // Two more messages once the subscriber reads again: the first says what it missed.
      pub.send(`SEND\ndestination:/topic/gap\n\n${numbered(published, 100)}\0SEND\ndestination:/topic/gap\n\n${numbered(published + 1, 100)}\0`);
      await until(published - dropped + 2, 'the messages after the gap');

      let expected = 0;
      let toldDropped = 0;
      for (const message of messages) {
        const told = Number(header(message, 'x-dropped') ?? 0);
        toldDropped += told;
        expected += told;
        assert.equal(message.body.toString().replace(/x+$/, ''), String(expected), `x-dropped:${told} accounts for the gap before this message`);
        expected++;
      }
      assert.equal(toldDropped, dropped);
      assert.equal(messages.length + toldDropped, published + 2, 'delivered + dropped = published');
      assert.equal(header(messages.at(-2)!, 'x-dropped'), String(dropped), 'the first MESSAGE after the gap tells it');
      assert.equal(header(messages.at(-1)!, 'x-dropped'), undefined, 'and only that one');
      assert.equal(header(messages.at(-1)!, 'subscription'), '1');
      assert.ok(messages.length >= 3, 'some messages were delivered before the gap');
    });
  }

  it('disconnect policy: the stalled subscriber is closed with SLOW_CONSUMER', async () => {
    const b = await startBroker({ HEARTBEAT: '0,0', WRITE_BUFFER_LIMIT_BYTES: '262144', SLOW_CONSUMER_POLICY: 'disconnect' });
    brokers.push(b);
    const reasons: string[] = [];
    b.events.on('disconnect', (e) => reasons.push(`${e.reason} ${e.errorCode ?? ''}`));
    const socket = await stalledSubscriber(b, '/topic/flood2');
    const closed = new Promise((resolve) => socket.once('close', resolve));
    await flood(b, '/topic/flood2', 3000, 8 * 1024);
    assert.deepEqual(reasons, ['kicked SLOW_CONSUMER']);
    socket.resume();
    await closed;
  });

  it('a queue holds messages back from a stalled consumer instead of dropping them', async () => {
    const b = await startBroker({ HEARTBEAT: '0,0', WRITE_BUFFER_LIMIT_BYTES: '262144', MAX_QUEUE_MESSAGES: '100000' });
    brokers.push(b);
    await stalledSubscriber(b, '/queue/flood');
    await flood(b, '/queue/flood', 3000, 8 * 1024);
    assert.ok(b.router.queueDepth('/queue/flood') > 0, 'messages wait in the queue');
    const slow = [...b.sessions()].find((s) => s.principal?.userId === 'slow')!;
    assert.equal(slow.droppedMessages, 0);
    const other = await RawClient.tcp(b.tcpPort!);
    clients.push(other);
    await other.connect();
    other.sendFrame('SUBSCRIBE', { id: 'o', destination: '/queue/flood' });
    await other.waitUntil(() => b.router.queueDepth('/queue/flood') === 0, 10000, 'the queue to drain to the reader');
    assert.equal(header(other.frames[1]!, 'destination'), '/queue/flood');
  });
});
