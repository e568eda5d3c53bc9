// An instance under load stays alive: a publisher on instance A floods a topic whose
// subscribers are all on instance B (two stompd processes, one real redis-server), more than
// B can fan out. B's liveness refresh and its clients' heart-beats must not be starved by the
// fan-out: B is never taken for dead or reaped, none of its clients is disconnected, and,
// flow control holding the publisher on A, no message is dropped. Outcomes only, no timings.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { BrokerProcess } from '../helpers/broker-process';
import type { LogLine } from '../helpers/broker-process';
import { RawClient, clientsOfThisFile, header } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { until } from '../helpers/until';

const clients = clientsOfThisFile();
const SUBSCRIBERS = 100;
const MESSAGES = 10_000;
const BODY_BYTES = 20;
/** Subscribers beat every this many ms; B closes one it does not hear from for twice that. */
const HEARTBEAT_MS = 3000;

/** A lean subscriber: counts MESSAGEs by their NUL (bodies hold none), beats, notices ERROR and close. */
class CountingSubscriber {
  received = 0;
  isClosed = false;
  sawError = false;
  private readonly socket: net.Socket;
  private readonly beat: NodeJS.Timeout;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.beat = setInterval(() => socket.write('\n'), HEARTBEAT_MS);
    socket.on('close', () => {
      this.isClosed = true;
      clearInterval(this.beat);
    });
    socket.on('error', () => undefined);
  }

  static async open(port: number, index: number): Promise<CountingSubscriber> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const subscriber = new CountingSubscriber(socket);
    let handshake = '';
    let isCounting = false;
    await new Promise<void>((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        if (!isCounting) {
          handshake += chunk.toString('latin1');
          const receipt = handshake.indexOf('RECEIPT');
          if (receipt === -1) return;
          isCounting = true;
          const end = handshake.indexOf('\0', receipt);
          chunk = Buffer.from(handshake.slice(end + 1), 'latin1');
          resolve();
        }
        if (chunk.includes('ERROR')) subscriber.sawError = true;
        for (let at = chunk.indexOf(0); at !== -1; at = chunk.indexOf(0, at + 1)) subscriber.received++;
      });
      socket.write(`CONNECT\naccept-version:1.2\nhost:/\nheart-beat:${HEARTBEAT_MS},${HEARTBEAT_MS}\nlogin:player${index}\n\n\0SUBSCRIBE\nid:0\ndestination:/topic/quiz\nreceipt:sub\n\n\0`);
    });
    return subscriber;
  }

  close(): void {
    clearInterval(this.beat);
    this.socket.destroy();
  }
}

/** What a failure message should say of an instance's flow control and relay. */
async function flowMetrics(broker: BrokerProcess): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${broker.httpPort}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => /^stompd_(flow|relay|frames_in_total\{command="SEND"|messages_(delivered|dropped)_total\{kind="topic")/.test(line))
    .join(', ');
}

function linesAbout(broker: BrokerProcess, match: (line: LogLine) => boolean): LogLine[] {
  return broker.lines.filter(match);
}

describe('an instance under load stays alive', { timeout: 180_000 }, () => {
  let redis: RedisServer | undefined;
  const brokers: BrokerProcess[] = [];
  const subscribers: CountingSubscriber[] = [];

  after(async () => {
    for (const s of subscribers) s.close();
    await Promise.all(brokers.map((b) => b.stop()));
    await redis?.stop();
  });

  it('a fan-out B cannot keep up with: B is not reaped, its clients stay, nothing is dropped', async () => {
    redis = await startRedis();
    // A liveness TTL of 3 s (half the default): a fan-out that held B's event loop that long would get it reaped.
    const env = { REDIS_URL: redis.url, INSTANCE_HEARTBEAT_MS: '1000', HEARTBEAT: `${HEARTBEAT_MS},${HEARTBEAT_MS}`, HTTP_PORT: '0' };
    const [a, b] = await Promise.all([BrokerProcess.start({ ...env, INSTANCE_ID: 'overload-a' }), BrokerProcess.start({ ...env, INSTANCE_ID: 'overload-b' })]);
    brokers.push(a, b);
    for (let i = 0; i < SUBSCRIBERS; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, SUBSCRIBERS - i) }, (_, j) => CountingSubscriber.open(b.tcpPort, i + j)));
      subscribers.push(...batch);
    }
    await until(() => redis!.cli('pubsub', 'numsub', 'ws:dest:/topic/quiz').includes('\n1'), 'B to listen on /topic/quiz');

    const publisher = await RawClient.tcp(a.tcpPort);
    clients.push(publisher);
    await publisher.connect({ login: 'host', 'heart-beat': '0,0' });
    // Everything at once: the publisher is only slowed by A's flow control.
    const body = 'q'.repeat(BODY_BYTES);
    for (let i = 0; i < MESSAGES; i += 100) {
      let frames = '';
      for (let j = i; j < i + 100; j++) frames += `SEND\ndestination:/topic/quiz\n${j === MESSAGES - 1 ? 'receipt:done\n' : ''}\n${body}\0`;
      publisher.send(frames);
    }
    await publisher
      .waitUntil(() => publisher.frames.some((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === 'done'), 120_000, 'the last RECEIPT')
      .catch(async (error: unknown) => {
        throw new Error(`${(error as Error).message}; A: ${await flowMetrics(a)}; B: ${await flowMetrics(b)}`);
      });
    await until(() => subscribers.every((s) => s.received >= MESSAGES || s.isClosed), 'every subscriber to have every message', 120_000);

    assert.deepEqual(subscribers.filter((s) => s.isClosed || s.sawError).length, 0, 'no client of B was disconnected');
    assert.ok(subscribers.every((s) => s.received === MESSAGES), `nothing dropped: ${[...new Set(subscribers.map((s) => s.received))].join(', ')} of ${MESSAGES}`);
    const lapses = (broker: BrokerProcess): LogLine[] =>
      linesAbout(broker, (l) => typeof l.msg === 'string' && /no liveness refresh|taken for dead|liveness key had expired/.test(l.msg));
    assert.deepEqual(lapses(b), [], 'B never lost its liveness');
    assert.deepEqual(lapses(a), [], 'nor did A');
    assert.deepEqual(linesAbout(a, (l) => l.msg === 'reaped a dead instance'), [], 'A reaped nobody');
    assert.deepEqual(linesAbout(b, (l) => l.msg === 'session closed' && l.reason !== 'client'), [], 'B closed no session');
  });
});
