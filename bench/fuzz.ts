// `npm run fuzz [-- --frames N] [-- --seed S]`: mutated frames (test/fuzz/mutator.ts) against a
// live stompd process over TCP and WebSocket, many connections at once. Holds when: the
// broker never exits; two bystander clients (one per transport) keep receiving a message
// published every 200 ms, each within 2 s; and the broker's heap after a full GC comes back,
// within HEAP_RECOVERY_MS, to HEAP_SLACK_BYTES of what it was after a warm-up. Frames are
// counted as sent: a connection's frames after its first invalid one are not read (the
// broker answers ERROR and closes), which is why connections carry 1–12 frames each. Prints one JSON line of figures; exit 1 on
// a failure. Default 10^6 frames; CI (test/fuzz/fuzz.test.ts) runs 10^5. It lives in bench/, not
// test/: the test runner takes every .js under dist/test/ for a test file.

import net from 'node:net';
import WebSocket from 'ws';
import { BrokerProcess } from '../test/helpers/broker-process';
import { RawClient, header } from '../test/helpers/raw-client';
import { Random } from '../test/helpers/seeded-random';
import { heapAfterGc } from './inspector';
import { chunked, loadCorpus, mutatedFrame } from '../test/fuzz/mutator';

/** What a broker may keep after the run: its queues are capped at 256 KiB in all (below), plus noise. */
const HEAP_SLACK_BYTES = 8 * 1024 * 1024;
/** How long the heap may take to come back once the last fuzz connection is gone. */
const HEAP_RECOVERY_MS = 20_000;
const CONCURRENCY = 12;
const WARMUP_FRAMES = 2000;
/** A connection's frames are in when its final DISCONNECT's RECEIPT came, or after this. */
const CONNECTION_WAIT_MS = 300;
const BYSTANDER_DEADLINE_MS = 2000;

interface Options {
  frames: number;
  seed: string;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { frames: 1_000_000, seed: String(Date.now() % 1_000_000_000) };
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1];
    if (argv[i] === '--frames' && value !== undefined && /^\d+$/.test(value)) options.frames = Number(value);
    else if (argv[i] === '--seed' && value !== undefined) options.seed = value;
    else {
      process.stderr.write('usage: npm run fuzz -- [--frames N] [--seed S]\n');
      process.exit(2);
    }
  }
  return options;
}

const CONNECT_FRAME = (login: string): Buffer => Buffer.from(`CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:${login}\n\n\0`, 'latin1');
const END_FRAME = Buffer.from('DISCONNECT\nreceipt:fz-end\n\n\0', 'latin1');

/** One fuzz connection: CONNECT, `frames` mutated frames in random pieces, DISCONNECT; resolves when done or given up. */
function fuzzConnection(broker: BrokerProcess, frames: Buffer[], random: Random, n: number): Promise<'receipted' | 'closed' | 'timeout'> {
  const bytes = Buffer.concat([CONNECT_FRAME(`fz${n % 50}`), ...frames, END_FRAME]);
  const pieces = chunked(bytes, random);
  return new Promise((resolve) => {
    let received = '';
    let settled = false;
    let destroy = (): void => undefined;
    const finish = (outcome: 'receipted' | 'closed' | 'timeout'): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      destroy();
      resolve(outcome);
    };
    const onData = (data: Buffer): void => {
      received = (received + data.toString('latin1')).slice(-64);
      if (received.includes('receipt-id:fz-end')) finish('receipted');
    };
    const timer = setTimeout(() => finish('timeout'), CONNECTION_WAIT_MS);
    if (random.chance(0.5)) {
      const socket = net.connect(broker.tcpPort, '127.0.0.1');
      destroy = () => socket.destroy();
      socket.on('error', () => undefined);
      socket.on('data', onData);
      socket.on('close', () => finish('closed'));
      socket.on('connect', () => {
        for (const piece of pieces) socket.write(piece);
      });
    } else {
      const ws = new WebSocket(`ws://127.0.0.1:${broker.wsPort}/ws`, ['v12.stomp']);
      destroy = () => ws.terminate();
      ws.on('error', () => undefined);
      ws.on('message', (data: Buffer) => onData(data));
      ws.on('close', () => finish('closed'));
      const isBinary = random.chance(0.5);
      ws.on('open', () => {
        for (const piece of pieces) ws.send(piece, { binary: isBinary });
      });
    }
  });
}

/** Two clients that must keep working whatever the fuzz does; fails the run if one stops receiving. */
class Bystanders {
  readonly failures: string[] = [];
  private readonly clients: RawClient[] = [];
  private publisher!: RawClient;
  private seq = 0;
  private timer: NodeJS.Timeout | undefined;

  async start(broker: BrokerProcess): Promise<void> {
    const tcp = await RawClient.tcp(broker.tcpPort);
    const ws = await RawClient.ws(broker.wsPort);
    for (const [c, login] of [
      [tcp, 'bystander-tcp'],
      [ws, 'bystander-ws'],
    ] as const) {
      await c.connect({ login });
      c.sendFrame('SUBSCRIBE', { destination: '/topic/bystanders', id: '1', receipt: 'sub' });
      await c.expect('RECEIPT');
      this.clients.push(c);
    }
    this.publisher = await RawClient.tcp(broker.tcpPort);
    await this.publisher.connect({ login: 'bystander-pub' });
    this.timer = setInterval(() => void this.roundTrip(), 200);
  }

  /** Publish one message; each bystander must get it within the deadline. */
  async roundTrip(): Promise<void> {
    const seq = String(++this.seq);
    this.publisher.sendFrame('SEND', { destination: '/topic/bystanders', seq }, seq);
    await Promise.all(
      this.clients.map(async (c, i) => {
        try {
          await c.waitUntil(() => c.frames.some((f) => f.command === 'MESSAGE' && header(f, 'seq') === seq), BYSTANDER_DEADLINE_MS);
        } catch {
          this.failures.push(`bystander ${i === 0 ? 'tcp' : 'ws'}: message ${seq} not received within ${BYSTANDER_DEADLINE_MS} ms${c.isClosed ? ' (its connection was closed)' : ''}`);
        }
        // Keep only recent frames: the run is long.
        if (c.frames.length > 100) c.frames.splice(0, c.frames.length - 20);
      }),
    );
  }

  stop(): void {
    clearInterval(this.timer);
    for (const c of [...this.clients, this.publisher]) c.destroy();
  }
}

type FuzzCounts = Record<'frames' | 'connections' | 'receipted' | 'closed' | 'timeout', number>;

async function fuzz(broker: BrokerProcess, corpus: Buffer[], random: Random, frames: number): Promise<FuzzCounts> {
  const counts: FuzzCounts = { frames: 0, connections: 0, receipted: 0, closed: 0, timeout: 0 };
  let connectionNo = 0;
  const lane = async (): Promise<void> => {
    while (counts.frames < frames) {
      const batch = Math.min(frames - counts.frames, random.int(12) + 1);
      counts.frames += batch;
      const mutated = Array.from({ length: batch }, () => mutatedFrame(corpus, random));
      const outcome = await fuzzConnection(broker, mutated, random, ++connectionNo);
      counts.connections++;
      counts[outcome]++;
      if (broker.child.exitCode !== null || broker.child.signalCode !== null) return;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return counts;
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const corpus = loadCorpus();
  const random = new Random(`fuzz:${options.seed}`);
  const broker = await BrokerProcess.start({
    NODE_OPTIONS: '--inspect=127.0.0.1:0',
    HEARTBEAT: '0,0',
    LOG_LEVEL: 'info',
    MAX_CONNECTIONS_PER_ADDRESS: '0',
    // In-memory queues keep what fuzzed SENDs put in them: capped, so the heap can come back.
    MAX_QUEUES: '16',
    MAX_TOTAL_QUEUE_BYTES: '262144',
    MAX_QUEUE_BYTES: '65536',
  });
  const inspectorUrl = /ws:\/\/127\.0\.0\.1:\d+\/[\w-]+/.exec(broker.errorOutput)?.[0];
  const failures: string[] = [];
  const bystanders = new Bystanders();
  try {
    if (inspectorUrl === undefined) throw new Error(`no inspector address in the broker's stderr: ${broker.errorOutput}`);
    await bystanders.start(broker);
    await fuzz(broker, corpus, new Random(`warmup:${options.seed}`), WARMUP_FRAMES);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const baselineHeap = await heapAfterGc(inspectorUrl);
    const startedAt = Date.now();
    const counts = await fuzz(broker, corpus, random, options.frames);
    const elapsedMs = Date.now() - startedAt;
    await new Promise((resolve) => setTimeout(resolve, 1000)); // connections the broker still closes
    const isAlive = broker.child.exitCode === null && broker.child.signalCode === null;
    if (!isAlive) failures.push(`the broker exited (code ${broker.child.exitCode}, signal ${broker.child.signalCode}): ${broker.errorOutput.slice(-2000)}`);
    else await bystanders.roundTrip();
    failures.push(...bystanders.failures);
    // Closed connections are let go over a few seconds (their timers run out): poll, bounded.
    let finalHeap = Number.NaN;
    const heapDeadline = Date.now() + HEAP_RECOVERY_MS;
    while (isAlive) {
      finalHeap = await heapAfterGc(inspectorUrl);
      if (finalHeap <= baselineHeap + HEAP_SLACK_BYTES || Date.now() > heapDeadline) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    if (isAlive && finalHeap > baselineHeap + HEAP_SLACK_BYTES) failures.push(`heap after GC ${finalHeap} B, ${HEAP_RECOVERY_MS} ms after the run; baseline ${baselineHeap} B: more than ${HEAP_SLACK_BYTES} B kept`);
    process.stdout.write(`${JSON.stringify({ seed: options.seed, ...counts, elapsedMs, framesPerSecond: Math.round((counts.frames / elapsedMs) * 1000), baselineHeap, finalHeap, failures })}\n`);
  } finally {
    bystanders.stop();
    await broker.stop();
  }
  if (failures.length > 0) {
    process.stderr.write(`fuzz run ${options.seed} failed:\n  ${failures.join('\n  ')}\nreplay: npm run fuzz -- --frames ${options.frames} --seed ${options.seed}\n`);
    process.exit(1);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${String((error as Error).stack ?? error)}\n`);
  process.exit(1);
});
