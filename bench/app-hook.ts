// App-hook benchmark: SEND to /app/bench → stompd POSTs /send to a trivial backend (its own
// process) → the answer publishes to a topic with N subscribers; next to a direct SEND to the
// same topic, in the same run, against the same broker. Prints one JSON object on stdout.
//
// Phases, each with a fresh tracker subscriber (so latency samples are the phase's own):
// 1. round trips per second: P publishers send as fast as the window allows (at most
//    --window messages sent and not yet seen by the tracker); a round trip is complete when
//    the tracker has the MESSAGE the backend's answer published.
// 2. latency at a fixed --rate (messages/s, spread over the publishers) for --seconds: p50,
//    p99 and max from the send time in the body to the tracker's delivery.
// 3. and 4. the same two with direct SENDs to the topic.
// The broker and the backend are separate processes; the bench process holds every client.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { spawnStompd } from './broker-process';
import { ownCpuSeconds, processCpuSeconds } from './cpu';
import type { StompdProcess } from './broker-process';
import { LatencyRecorder } from './latency';
import type { LatencySummaryMs } from './latency';
import { LoadClient } from './load-client';
import type { Endpoint } from './load-client';
import { SendBatcher } from './send-frames';

interface Options {
  subscribers: number;
  publishers: number;
  messages: number;
  window: number;
  rate: number;
  seconds: number;
  bodyBytes: number;
  timeoutSeconds: number;
  quiet: boolean;
}

const USAGE = `node dist/bench/app-hook.js [options]
  --subscribers N   topic subscribers (default 100)
  --publishers N    sending sessions (default 64): one session's SENDs reach the backend one at a time
  --messages N      messages in each throughput phase (default 20000)
  --window N        messages sent and not yet delivered, at most (default 512)
  --rate N          messages per second in the fixed-rate phases (default 2000)
  --seconds N       length of each fixed-rate phase (default 5)
  --size N          body bytes (default 64, at least 12)
  --timeout N       seconds a phase may take (default 60)
  --quiet           no progress on stderr`;

function parseOptions(argv: readonly string[]): Options {
  const options: Options = { subscribers: 100, publishers: 64, messages: 20_000, window: 512, rate: 2000, seconds: 5, bodyBytes: 64, timeoutSeconds: 60, quiet: false };
  const numeric: Record<string, keyof Options> = {
    '--subscribers': 'subscribers',
    '--publishers': 'publishers',
    '--messages': 'messages',
    '--window': 'window',
    '--rate': 'rate',
    '--seconds': 'seconds',
    '--size': 'bodyBytes',
    '--timeout': 'timeoutSeconds',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--quiet') options.quiet = true;
    else if (arg === '--help') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else if (numeric[arg] !== undefined) {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 1) throw new Error(`${arg} needs a positive integer`);
      (options as unknown as Record<string, number>)[numeric[arg]] = value;
    } else throw new Error(`unknown option ${arg}\n${USAGE}`);
  }
  if (options.bodyBytes < 12) throw new Error('--size must be at least 12');
  return options;
}

const TOPIC = '/topic/bench-app';
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Fractions of one core used during a phase (null when /proc is unreadable). */
interface CpuShare {
  broker: number | null;
  backend: number | null;
  bench: number;
}

interface ThroughputResult {
  messages: number;
  seconds: number;
  perSecond: number;
  latencyMs: LatencySummaryMs;
  cpu: CpuShare;
}

interface RateResult {
  rate: number;
  sent: number;
  delivered: number;
  latencyMs: LatencySummaryMs;
  cpu: CpuShare;
}

function startBackend(): Promise<{ port: number; pid: number; stop(): void }> {
  const child = spawn(process.execPath, [path.join(__dirname, 'app-hook-backend.js'), TOPIC], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (chunk: Buffer) => {
      const { port } = JSON.parse(chunk.toString()) as { port: number };
      resolve({ port, pid: child.pid!, stop: () => child.kill('SIGTERM') });
    });
  });
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const progress = (line: string): void => {
    if (!options.quiet) process.stderr.write(`${line}\n`);
  };
  const backend = await startBackend();
  let broker: StompdProcess | undefined;
  const clients: LoadClient[] = [];
  try {
    broker = await spawnStompd({
      mainPath: path.resolve(__dirname, '../src/main.js'),
      env: { BACKEND_URL: `http://127.0.0.1:${backend.port}/stomp`, HEARTBEAT: '0,0' },
      nodeArgs: process.env.BENCH_BROKER_NODE_ARGS?.split(' ').filter(Boolean) ?? [],
      cpu: undefined,
      readyTimeoutMs: 10_000,
    });
    const endpoint: Endpoint = { host: '127.0.0.1', tcpPort: broker.tcpPort, wsPort: undefined, wsPath: '/ws', login: 'bench', passcode: undefined };
    progress(`opening ${options.subscribers - 1} subscribers and ${options.publishers} publishers`);
    for (let i = 0; i < options.subscribers - 1; i++) {
      const client = await LoadClient.open('tcp', endpoint, HANDSHAKE_TIMEOUT_MS);
      clients.push(client);
      await client.subscribe(TOPIC, `sub-${i}`, () => undefined, undefined, HANDSHAKE_TIMEOUT_MS);
    }
    const publishers: LoadClient[] = [];
    for (let i = 0; i < options.publishers; i++) {
      const client = await LoadClient.open('tcp', { ...endpoint, login: `publisher-${i}` }, HANDSHAKE_TIMEOUT_MS);
      clients.push(client);
      publishers.push(client);
    }
    const brokerPid = broker.pid;
    /** CPU used from now until the returned function is called, as fractions of a core. */
    const cpuMeter = (): (() => CpuShare) => {
      const startedAt = performance.now();
      const before = { broker: processCpuSeconds(brokerPid), backend: processCpuSeconds(backend.pid), bench: ownCpuSeconds() };
      return () => {
        const seconds = (performance.now() - startedAt) / 1000;
        const share = (start: number | undefined, end: number | undefined): number | null => (start === undefined || end === undefined ? null : round((end - start) / seconds));
        return { broker: share(before.broker, processCpuSeconds(brokerPid)), backend: share(before.backend, processCpuSeconds(backend.pid)), bench: round((ownCpuSeconds() - before.bench) / seconds) };
      };
    };
    const viaApp = new SendBatcher('/app/bench', options.bodyBytes, 1);
    const direct = new SendBatcher(TOPIC, options.bodyBytes, 1);

    /** The 100th subscriber, fresh per phase, counting and timing every message. */
    const tracker = async (capacity: number, onDelivered: () => void): Promise<{ client: LoadClient; latency: LatencyRecorder }> => {
      const latency = new LatencyRecorder(capacity);
      const client = await LoadClient.open('tcp', endpoint, HANDSHAKE_TIMEOUT_MS);
      clients.push(client);
      await client.subscribe(TOPIC, `tracker-${clients.length}`, onDelivered, latency, HANDSHAKE_TIMEOUT_MS);
      return { client, latency };
    };

    const throughput = async (frames: SendBatcher, what: string): Promise<ThroughputResult> => {
      let sent = 0;
      let pump = (): void => undefined;
      let done: () => void = () => undefined;
      const finished = new Promise<void>((resolve) => (done = resolve));
      const { client, latency } = await tracker(options.messages, () => {
        if (client.received >= options.messages) done();
        else pump();
      });
      pump = () => {
        while (sent < options.messages && sent - client.received < options.window) publishers[sent++ % publishers.length]!.write(frames.build(1));
      };
      const startedAt = performance.now();
      const cpu = cpuMeter();
      pump();
      await withTimeout(finished, options.timeoutSeconds, `${what}: ${client.received}/${options.messages} delivered`);
      const seconds = (performance.now() - startedAt) / 1000;
      const used = cpu();
      client.close();
      const result = { messages: options.messages, seconds: round(seconds), perSecond: Math.round(options.messages / seconds), latencyMs: latency.summaryMs(), cpu: used };
      progress(`${what}: ${result.perSecond}/s (CPU: broker ${used.broker}, backend ${used.backend}, bench ${used.bench} of a core)`);
      return result;
    };

    const atRate = async (frames: SendBatcher, what: string): Promise<RateResult> => {
      const total = options.rate * options.seconds;
      let done: () => void = () => undefined;
      const finished = new Promise<void>((resolve) => (done = resolve));
      const { client, latency } = await tracker(total, () => {
        if (client.received >= total) done();
      });
      let sent = 0;
      const startedAt = performance.now();
      const cpu = cpuMeter();
      const timer = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - startedAt) / 1000) * options.rate));
        while (sent < due) publishers[sent++ % publishers.length]!.write(frames.build(1));
        if (sent >= total) clearInterval(timer);
      }, 2);
      await withTimeout(finished, options.timeoutSeconds, `${what}: ${client.received}/${total} delivered`).finally(() => clearInterval(timer));
      const used = cpu();
      client.close();
      const result = { rate: options.rate, sent, delivered: client.received, latencyMs: latency.summaryMs(), cpu: used };
      progress(`${what} at ${options.rate}/s: p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms`);
      return result;
    };

    const appThroughput = await throughput(viaApp, 'app hook round trips');
    const appAtRate = await atRate(viaApp, 'app hook');
    const directThroughput = await throughput(direct, 'direct topic SENDs');
    const directAtRate = await atRate(direct, 'direct topic SEND');
    process.stdout.write(
      `${JSON.stringify({
        subscribers: options.subscribers,
        publishers: options.publishers,
        bodyBytes: options.bodyBytes,
        window: options.window,
        appHook: { throughput: appThroughput, atRate: appAtRate },
        directSend: { throughput: directThroughput, atRate: directAtRate },
        brokerLog: broker.logStats,
      })}\n`,
    );
  } finally {
    for (const client of clients) client.close();
    await broker?.stop();
    backend.stop();
  }
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function withTimeout(promise: Promise<void>, seconds: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${seconds} s (${what})`)), seconds * 1000);
    promise.then(() => {
      clearTimeout(timer);
      resolve();
    }, reject);
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`app-hook bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(2);
});
