// The queue scenario: competing consumers on one /queue/ destination, client-individual acks.
//
//   node dist/bench/queue.js [--messages 20000] [--runs 3] [--modes embedded,redis,rabbitmq]
//                            [--size 100] [--window 2000] [--prefetch 100]
//                            [--rabbit 127.0.0.1:61613] [--main dist/src/main.js]
//
// Modes, measured the same way with the same client:
// - embedded: one stompd process, no Redis; producers and consumers all on it.
// - redis:    a redis-server of its own (no persistence) and two stompd processes with
//             REDIS_URL; one producer and two consumers on each instance.
// - rabbitmq: RabbitMQ's STOMP plugin at --rabbit (127.0.0.1:61613, guest/guest), the same
//             producers and consumers (all on the one broker).
//
// Producers (2) send --messages in total, --size bytes each, the body ending in the send time
// (µs). Flow control: a RECEIPT every 50 SENDs, at most --window messages sent and not yet
// consumed. Consumers (4) subscribe with ack:client-individual and prefetch-count --prefetch
// and ACK each MESSAGE at once; latency is send → MESSAGE received (one process, one clock).
// messages/s = messages / (first SEND → last MESSAGE). Each mode runs --runs times; one JSON
// line per run on stdout, then the medians.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { Decoder, encodeFrame, headerValue } from '../src/codec';
import type { Frame, Header } from '../src/codec';
import { spawnStompd } from './broker-process';
import type { StompdProcess } from './broker-process';
import { LatencyRecorder } from './latency';

interface Options {
  messages: number;
  runs: number;
  modes: string[];
  size: number;
  window: number;
  prefetch: number;
  rabbit: string;
  /** The compiled main.js to run (another build, to compare before and after a change). */
  main: string;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { messages: 20000, runs: 3, modes: ['embedded', 'redis', 'rabbitmq'], size: 100, window: 2000, prefetch: 100, rabbit: '127.0.0.1:61613', main: path.resolve(__dirname, '../src/main.js') };
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i]!, argv[i + 1]];
    if (value === undefined) throw new Error(`${name} needs a value`);
    if (name === '--messages') options.messages = Number(value);
    else if (name === '--runs') options.runs = Number(value);
    else if (name === '--modes') options.modes = value.split(',');
    else if (name === '--size') options.size = Number(value);
    else if (name === '--window') options.window = Number(value);
    else if (name === '--prefetch') options.prefetch = Number(value);
    else if (name === '--rabbit') options.rabbit = value;
    else if (name === '--main') options.main = path.resolve(value);
    else throw new Error(`unknown option ${name}`);
  }
  return options;
}

/** A small STOMP 1.2 client over TCP for the bench. */
class BenchClient {
  private readonly socket: net.Socket;
  private readonly decoder: Decoder;
  private waiters: { receipt: string; resolve: () => void }[] = [];
  onMessage: (frame: Frame) => void = () => undefined;
  private connected!: () => void;
  private failed!: (error: Error) => void;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.decoder = new Decoder((frame) => this.onFrame(frame), { acceptServerCommands: true, limits: { maxFrameBytes: 16 * 1024 * 1024, maxHeaders: 1000 } });
    socket.on('data', (chunk: Buffer) => this.decoder.push(chunk));
  }

  static async connect(port: number, host: string, login: Record<string, string>): Promise<BenchClient> {
    const socket = net.connect(port, host);
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new BenchClient(socket);
    const connected = new Promise<void>((resolve, reject) => {
      c.connected = resolve;
      c.failed = reject;
    });
    c.send('CONNECT', [['accept-version', '1.2'], ['host', '/'], ['heart-beat', '0,0'], ...Object.entries(login)]);
    await connected;
    c.decoder.version = '1.2';
    return c;
  }

  send(command: string, headers: Header[], body: Buffer = Buffer.alloc(0)): void {
    this.socket.write(encodeFrame({ command, headers, body }, '1.2'));
  }

  /** Resolves when the RECEIPT for `receipt` arrives. */
  receipt(receipt: string): Promise<void> {
    return new Promise((resolve) => this.waiters.push({ receipt, resolve }));
  }

  close(): void {
    this.socket.destroy();
  }

  private onFrame(frame: Frame): void {
    if (frame.command === 'MESSAGE') this.onMessage(frame);
    else if (frame.command === 'RECEIPT') {
      const id = headerValue(frame.headers, 'receipt-id');
      const index = this.waiters.findIndex((w) => w.receipt === id);
      if (index !== -1) this.waiters.splice(index, 1)[0]!.resolve();
    } else if (frame.command === 'CONNECTED') this.connected();
    else if (frame.command === 'ERROR') {
      const message = `${headerValue(frame.headers, 'message')} ${frame.body.toString()}`;
      this.failed(new Error(message));
      process.stderr.write(`ERROR frame: ${message}\n`);
    }
  }
}

interface Endpoint {
  port: number;
  host: string;
  login: Record<string, string>;
}

interface RunResult {
  mode: string;
  messages: number;
  seconds: number;
  messagesPerSec: number;
  latencyMs: { p50: number; p99: number; max: number };
  duplicates: number;
}

async function runOnce(mode: string, producersAt: Endpoint[], consumersAt: Endpoint[], options: Options): Promise<RunResult> {
  const destination = `/queue/bench-${mode}-${process.pid}-${Date.now()}`;
  const latency = new LatencyRecorder(options.messages);
  const seen = new Uint8Array(options.messages);
  let received = 0;
  let duplicates = 0;
  let lastAt = 0;
  let done!: () => void;
  const allIn = new Promise<void>((resolve) => (done = resolve));
  const consumers: BenchClient[] = [];
  for (const [i, at] of consumersAt.entries()) {
    const c = await BenchClient.connect(at.port, at.host, at.login);
    c.onMessage = (frame) => {
      const ack = headerValue(frame.headers, 'ack');
      if (ack !== undefined) c.send('ACK', [['id', ack]]);
      const seq = Number(headerValue(frame.headers, 'seq'));
      if (seen[seq] === 1) {
        duplicates++;
        return;
      }
      seen[seq] = 1;
      const body = frame.body.toString('latin1');
      const sentMicros = Number(body.slice(body.lastIndexOf(' ') + 1));
      latency.record(nowMicros() - sentMicros);
      if (++received === options.messages) {
        lastAt = performance.now();
        done();
      }
    };
    c.send('SUBSCRIBE', [
      ['destination', destination],
      ['id', `s${i}`],
      ['ack', 'client-individual'],
      ['prefetch-count', String(options.prefetch)],
      ['receipt', `sub${i}`],
    ]);
    await c.receipt(`sub${i}`);
    consumers.push(c);
  }
  const producers = await Promise.all(producersAt.map((at) => BenchClient.connect(at.port, at.host, at.login)));
  const padding = 'x'.repeat(Math.max(0, options.size - 20));
  const startedAt = performance.now();
  let sent = 0;
  await Promise.all(
    producers.map(async (p, index) => {
      const share = Math.floor(options.messages / producers.length) + (index < options.messages % producers.length ? 1 : 0);
      const receipts: Promise<void>[] = [];
      for (let i = 0; i < share; i++) {
        while (sent - received >= options.window) await new Promise((resolve) => setImmediate(resolve));
        const seq = sent++;
        const headers: Header[] = [
          ['destination', destination],
          ['seq', String(seq)],
        ];
        if (i % 50 === 49 || i === share - 1) {
          headers.push(['receipt', `r${seq}`]);
          receipts.push(p.receipt(`r${seq}`));
          if (receipts.length > 4) await receipts.shift();
        }
        p.send('SEND', headers, Buffer.from(`${padding} ${nowMicros()}`, 'latin1'));
      }
      await Promise.all(receipts);
    }),
  );
  const timeout = setTimeout(() => {
    process.stderr.write(`${mode}: ${received} of ${options.messages} after 120 s\n`);
    process.exit(2);
  }, 120_000);
  await allIn;
  clearTimeout(timeout);
  for (const c of [...consumers, ...producers]) c.close();
  const seconds = (lastAt - startedAt) / 1000;
  const { p50, p99, max } = latency.summaryMs();
  return { mode, messages: options.messages, seconds: round(seconds), messagesPerSec: Math.round(options.messages / seconds), latencyMs: { p50, p99, max }, duplicates };
}

function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function startRedisServer(): Promise<{ port: number; child: ChildProcess }> {
  const port = await new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = server.address() as net.AddressInfo;
      server.close(() => resolve(p));
    });
  });
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) resolve();
    });
    child.once('exit', () => reject(new Error(`redis-server exited: ${output}`)));
  });
  child.stdout.resume();
  return { port, child };
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const mainPath = options.main;
  const spawnOne = (env: Record<string, string>): Promise<StompdProcess> => spawnStompd({ mainPath, env: { HEARTBEAT: '0,0', ...env }, nodeArgs: [], cpu: undefined, readyTimeoutMs: 15000 });
  const results: RunResult[] = [];
  for (const mode of options.modes) {
    for (let run = 0; run < options.runs; run++) {
      let result: RunResult;
      if (mode === 'embedded') {
        const broker = await spawnOne({});
        try {
          const at = { port: broker.tcpPort!, host: '127.0.0.1', login: { login: 'bench' } };
          result = await runOnce(mode, [at, at], [at, at, at, at], options);
        } finally {
          await broker.stop();
        }
      } else if (mode === 'redis') {
        const redis = await startRedisServer();
        const url = `redis://127.0.0.1:${redis.port}`;
        const [a, b] = await Promise.all([spawnOne({ REDIS_URL: url, INSTANCE_ID: `bench-a-${run}` }), spawnOne({ REDIS_URL: url, INSTANCE_ID: `bench-b-${run}` })]);
        try {
          const atA = { port: a.tcpPort!, host: '127.0.0.1', login: { login: 'bench' } };
          const atB = { port: b.tcpPort!, host: '127.0.0.1', login: { login: 'bench' } };
          result = await runOnce(mode, [atA, atB], [atA, atA, atB, atB], options);
        } finally {
          await Promise.all([a.stop(), b.stop()]);
          redis.child.kill('SIGKILL');
        }
      } else if (mode === 'rabbitmq') {
        const [host, port] = options.rabbit.split(':');
        const at = { port: Number(port), host: host!, login: { login: 'guest', passcode: 'guest' } };
        result = await runOnce(mode, [at, at], [at, at, at, at], options);
      } else {
        throw new Error(`unknown mode ${mode}`);
      }
      results.push(result);
      process.stdout.write(`${JSON.stringify({ run, ...result })}\n`);
    }
  }
  for (const mode of options.modes) {
    const runs = results.filter((r) => r.mode === mode);
    process.stdout.write(
      `${JSON.stringify({ median: mode, runs: runs.length, messagesPerSec: median(runs.map((r) => r.messagesPerSec)), p99Ms: median(runs.map((r) => r.latencyMs.p99)), duplicates: runs.reduce((n, r) => n + r.duplicates, 0) })}\n`,
    );
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
