// The native anchor: stompd next to nats-server (Debian's package, a Go broker), both driven by
// the same harness shape as bench/fanout — one publisher, N subscribers on one topic/subject,
// a fresh broker per run pinned to CPU 0 and the load generator on CPU 1 — and measured the
// same way: the broker's CPU per delivery (utime + stime from /proc over the measured window,
// divided by the deliveries in it) and deliveries per second.
//
//   npm run bench:anchor                         # tsc, then every row, TCP, 2 rounds
//   node dist/bench/anchor.js --help             # every option
//
// Rows: `fixed-<size>` publishes --rate messages/s (2,000; --rate-large, 100, for bodies over
// 1 KiB) for --seconds (10), paced by a 1 ms timer: a load both serve, so that CPU per delivery
// compares the work, not who saturates first;
// `max-<size>` publishes as fast as the window allows (--window messages in flight towards the
// last subscriber, --window-large for bodies over 1 KiB: stompd drops past its 1 MiB write
// buffer by design, and a window of 200 × 8 KiB would measure dropping, not forwarding).
// Sizes are body bytes (100, 8192): the body ends in its send time (payload.ts).
//
// Invariants: runs alternate between the brokers within each row of each round (stompd, NATS,
// stompd, NATS, ...), so that drift on a shared machine hits both alike; the summary gives
// ranges over rounds and the ratio stompd/NATS within each round. Every run is bounded
// (--seconds plus --idle without a delivery, and a hard process timeout on top).

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { spawnStompd } from './broker-process';
import type { BrokerLogStats, StompdProcess } from './broker-process';
import { canPin, ownCpuSeconds, pinProcess, processCpuSeconds } from './cpu';
import { InspectorSession } from './inspector';
import { LatencyRecorder } from './latency';
import type { LatencySummaryMs } from './latency';
import { LoadClient } from './load-client';
import type { Endpoint, Transport } from './load-client';
import { NatsLoadClient, PubBatcher } from './nats-client';
import { hasNatsServer, startNatsServer } from './nats-process';
import type { NatsProcess } from './nats-process';
import { SendBatcher } from './send-frames';
import type { StampedFrames } from './send-frames';

type BrokerName = 'stompd' | 'nats';
type Mode = 'fixed' | 'max';

interface Row {
  mode: Mode;
  bodyBytes: number;
  label: string;
}

interface Options {
  transports: Transport[];
  rows: Row[];
  brokers: BrokerName[];
  rounds: number;
  subscribers: number;
  ratePerSec: number;
  /** fixed rows with bodies over LARGE_BODY_BYTES. */
  rateLargePerSec: number;
  seconds: number;
  window: number;
  windowLarge: number;
  batch: number;
  idleSeconds: number;
  sampleEvery: number;
  /** Take a CPU profile of stompd over each measured window, into this directory. */
  profileDir: string | undefined;
  stompdEnv: Record<string, string>;
  /** The compiled main.js to run as stompd (another build, to compare before and after a change). */
  mainPath: string;
  isPinning: boolean;
  isQuiet: boolean;
}

const USAGE = `Usage: node dist/bench/anchor.js [options]

stompd next to nats-server: 1 publisher -> N subscribers, broker CPU per delivery and deliveries/s.
One JSON line per run on stdout, then one summary line per row and transport.

  --transport tcp|ws|both   (default tcp; NATS's WebSocket listener for ws)
  --rows LIST               among fixed-100, fixed-8192, max-100, max-8192 (default all four);
                            any fixed-<bytes> or max-<bytes> works
  --brokers LIST            stompd,nats (default both)
  --rounds R                rounds of alternated runs (default 2)
  --subscribers N           (default 1000)
  --rate R                  fixed rows: messages per second (default 2000: 2 M deliveries/s at 1000 subscribers)
  --rate-large R            the same for bodies over 1 KiB (default 100: 0.8 GB/s of 8 KiB deliveries)
  --seconds S               publishing time per run (default 10)
  --window W                max rows: messages in flight towards the last subscriber (default 200)
  --window-large W          the same for bodies over 1 KiB (default 64)
  --batch B                 max rows: messages per write (default 50)
  --idle S                  a run ends S seconds after its last delivery (default 15: a starved load
                            generator on a busy machine can stall for seconds)
  --sample-every K          every K-th subscriber records latency (default 50)
  --profile DIR             a CPU profile of stompd over each measured window (through its
                            inspector), DIR/stompd-<row>-<transport>-<round>.cpuprofile;
                            such runs cost stompd a little more CPU: compare them with each other
  --broker-env K=V          environment for stompd (repeatable); WRITE_BUFFER_LIMIT_BYTES is 64 MiB
                            unless given here (nats-server's max_pending: both buffer alike for a
                            subscriber that falls behind)
  --main PATH               the compiled main.js to run as stompd (default this build's)
  --no-pin                  do not pin broker and load generator to separate cores
  --quiet                   no progress on stderr
  --help                    this text
`;

const BROKER_CPU = 0;
const BENCH_CPU = 1;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const READY_TIMEOUT_MS = 10_000;
const CONNECT_BATCH = 100;
const SUBJECT = 'bench.anchor';
const DESTINATION = '/topic/bench-anchor';
/** fixed rows: the most frames one paced write may carry (after a stalled tick). */
const MAX_FRAMES_PER_WRITE = 50;
const TICK_MS = 250;
const LARGE_BODY_BYTES = 1024;
/**
 * What stompd may buffer for one subscriber before its slow-consumer policy applies: here
 * nats-server's default max_pending (64 MB), so that a load generator that falls behind on a
 * busy machine is buffered for by both brokers alike, not dropped for by one (stompd's default
 * is 1 MiB) and buffered for by the other.
 */
const STOMPD_WRITE_BUFFER_LIMIT_BYTES = String(64 * 1024 * 1024);

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      transport: { type: 'string' },
      rows: { type: 'string' },
      brokers: { type: 'string' },
      rounds: { type: 'string' },
      subscribers: { type: 'string' },
      rate: { type: 'string' },
      'rate-large': { type: 'string' },
      seconds: { type: 'string' },
      window: { type: 'string' },
      'window-large': { type: 'string' },
      batch: { type: 'string' },
      idle: { type: 'string' },
      'sample-every': { type: 'string' },
      profile: { type: 'string' },
      'broker-env': { type: 'string', multiple: true },
      main: { type: 'string' },
      'no-pin': { type: 'boolean' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return undefined;
  const integer = (name: string, raw: string | undefined, fallback: number, min = 1): number => {
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < min) throw new Error(`--${name}=${JSON.stringify(raw)}: expected an integer >= ${min}`);
    return Number(raw);
  };
  const transport = values.transport ?? 'tcp';
  if (transport !== 'tcp' && transport !== 'ws' && transport !== 'both') throw new Error(`--transport=${JSON.stringify(transport)}: expected tcp, ws or both`);
  const rows = (values.rows ?? 'fixed-100,fixed-8192,max-100,max-8192').split(',').map((label): Row => {
    const match = /^(fixed|max)-(\d+)$/.exec(label);
    if (match === null || Number(match[2]) < 12) throw new Error(`--rows: ${JSON.stringify(label)} is not fixed-<bytes> or max-<bytes> (bytes >= 12)`);
    return { mode: match[1] as Mode, bodyBytes: Number(match[2]), label };
  });
  const brokers = (values.brokers ?? 'stompd,nats').split(',');
  for (const broker of brokers) if (broker !== 'stompd' && broker !== 'nats') throw new Error(`--brokers: ${JSON.stringify(broker)} is not stompd or nats`);
  const stompdEnv: Record<string, string> = {};
  for (const pair of values['broker-env'] ?? []) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new Error(`--broker-env=${JSON.stringify(pair)}: expected KEY=VALUE`);
    stompdEnv[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  const window = integer('window', values.window, 200);
  const windowLarge = integer('window-large', values['window-large'], 64);
  const batch = integer('batch', values.batch, 50);
  if (batch > Math.min(window, windowLarge)) throw new Error(`--batch (${batch}) cannot be larger than the windows (${window}, ${windowLarge})`);
  return {
    transports: transport === 'both' ? ['tcp', 'ws'] : [transport],
    rows,
    brokers: brokers as BrokerName[],
    rounds: integer('rounds', values.rounds, 2),
    subscribers: integer('subscribers', values.subscribers, 1000),
    ratePerSec: integer('rate', values.rate, 2000),
    rateLargePerSec: integer('rate-large', values['rate-large'], 100),
    seconds: integer('seconds', values.seconds, 10),
    window,
    windowLarge,
    batch,
    idleSeconds: integer('idle', values.idle, 15),
    sampleEvery: integer('sample-every', values['sample-every'], 50),
    profileDir: values.profile,
    stompdEnv,
    mainPath: path.resolve(values.main ?? path.join(__dirname, '../src/main.js')),
    isPinning: !values['no-pin'],
    isQuiet: values.quiet ?? false,
  };
}

/** What the run needs of a client, whichever protocol it speaks. */
interface BenchClient {
  readonly received: number;
  readonly isClosed: boolean;
  readonly closeReason: string | undefined;
  write(bytes: Buffer): void;
  close(): void;
}

type OnDelivered = (client: unknown, count: number) => void;

/** A broker under test: how to reach it with its own protocol, and its process. */
interface Contender {
  readonly name: BrokerName;
  readonly pid: number;
  readonly version: string;
  readonly hasExited: boolean;
  openSubscriber(transport: Transport, index: number, onDelivered: OnDelivered, latency: LatencyRecorder | undefined): Promise<BenchClient>;
  openPublisher(transport: Transport): Promise<BenchClient>;
  frames(bodyBytes: number, maxFrames: number): StampedFrames;
  logStats(): BrokerLogStats | undefined;
  logTail(): string;
  stop(): Promise<void>;
}

async function startStompd(options: Options, pinCpu: number | undefined): Promise<Contender & { inspectorUrl: string | undefined }> {
  const broker: StompdProcess = await spawnStompd({
    mainPath: options.mainPath,
    env: { WRITE_BUFFER_LIMIT_BYTES: STOMPD_WRITE_BUFFER_LIMIT_BYTES, ...options.stompdEnv },
    nodeArgs: options.profileDir === undefined ? [] : ['--inspect=127.0.0.1:0'],
    cpu: pinCpu,
    readyTimeoutMs: READY_TIMEOUT_MS,
  });
  const endpoint: Endpoint = { host: '127.0.0.1', tcpPort: broker.tcpPort, wsPort: broker.wsPort, wsPath: '/ws', login: undefined, passcode: undefined };
  return {
    name: 'stompd',
    pid: broker.pid,
    version: process.version,
    get hasExited() {
      return broker.exit !== undefined;
    },
    inspectorUrl: /ws:\/\/127\.0\.0\.1:\d+\/[\w-]+/.exec(broker.logTail())?.[0],
    openSubscriber: async (transport, index, onDelivered, latency) => {
      const client = await LoadClient.open(transport, endpoint, HANDSHAKE_TIMEOUT_MS);
      try {
        await client.subscribe(DESTINATION, `anchor-${index}`, onDelivered, latency, HANDSHAKE_TIMEOUT_MS);
      } catch (error) {
        client.close();
        throw error;
      }
      return client;
    },
    openPublisher: (transport) => LoadClient.open(transport, endpoint, HANDSHAKE_TIMEOUT_MS),
    frames: (bodyBytes, maxFrames) => new SendBatcher(DESTINATION, bodyBytes, maxFrames),
    logStats: () => ({ ...broker.logStats }),
    logTail: () => broker.logTail(),
    stop: async () => {
      await broker.stop();
    },
  };
}

async function startNats(pinCpu: number | undefined): Promise<Contender> {
  const server: NatsProcess = await startNatsServer(pinCpu, READY_TIMEOUT_MS);
  const endpoint = { host: '127.0.0.1', tcpPort: server.tcpPort, wsPort: server.wsPort };
  return {
    name: 'nats',
    pid: server.pid,
    version: server.version,
    get hasExited() {
      return server.hasExited;
    },
    openSubscriber: async (transport, index, onDelivered, latency) => {
      const client = await NatsLoadClient.open(transport, endpoint, HANDSHAKE_TIMEOUT_MS);
      try {
        await client.subscribe(SUBJECT, String(index + 1), onDelivered, latency, HANDSHAKE_TIMEOUT_MS);
      } catch (error) {
        client.close();
        throw error;
      }
      return client;
    },
    openPublisher: (transport) => NatsLoadClient.open(transport, endpoint, HANDSHAKE_TIMEOUT_MS),
    frames: (bodyBytes, maxFrames) => new PubBatcher(SUBJECT, bodyBytes, maxFrames),
    logStats: () => undefined,
    logTail: () => server.logTail(),
    stop: () => server.stop(),
  };
}

interface RunResult {
  broker: BrokerName;
  version: string;
  row: string;
  transport: Transport;
  round: number;
  subscribers: number;
  bodyBytes: number;
  mode: Mode;
  ratePerSec?: number;
  window?: number;
  messages: number;
  delivered: number;
  /** published × subscribers − delivered: dropped by the broker (see brokerLog), or not delivered when the run ended. */
  missing: number;
  seconds: number;
  deliveriesPerSec: number;
  /** Broker CPU (user + system, all threads) over the measured window, per delivery. */
  cpuPerDeliveryUs: number | null;
  /** Shares of one core over the measured window. */
  cpu: { broker: number | null; bench: number };
  latencyMs: LatencySummaryMs;
  endedBy: 'complete' | 'idle' | 'broker-exited';
  lostSubscribers: number;
  lostReason?: string;
  brokerLog?: BrokerLogStats;
  profile?: string;
  loadAverage: number;
}

async function runOnce(options: Options, contender: Contender & { inspectorUrl?: string | undefined }, row: Row, transport: Transport, round: number, progress: (line: string) => void): Promise<RunResult> {
  const count = options.subscribers;
  const label = `${contender.name} ${row.label} ${transport} round ${round}`;
  const loadAverage = Math.round(os.loadavg()[0]! * 100) / 100;
  const isLarge = row.bodyBytes > LARGE_BODY_BYTES;
  const window = isLarge ? options.windowLarge : options.window;
  const ratePerSec = isLarge ? options.rateLargePerSec : options.ratePerSec;
  const fixedMessages = ratePerSec * options.seconds;
  const sampled = Math.ceil(count / options.sampleEvery) + 1;
  const latency = new LatencyRecorder(sampled * (row.mode === 'fixed' ? fixedMessages : Math.min(options.seconds * 50_000, Math.floor(4_000_000 / sampled))));

  let published = 0;
  let isPublishing = true;
  let totalReceived = 0;
  let lastDeliveryAt = 0;
  let pump = (): void => undefined;
  let finish: (end: RunResult['endedBy']) => void = () => undefined;
  const ended = new Promise<RunResult['endedBy']>((resolve) => (finish = resolve));
  const checkComplete = (): void => {
    if (!isPublishing && totalReceived >= published * count) finish('complete');
  };
  const onDelivered: OnDelivered = (_client, frames) => {
    totalReceived += frames;
    lastDeliveryAt = performance.now();
    if (isPublishing) pump();
    else checkComplete();
  };

  const subscribers: BenchClient[] = [];
  let publisher: BenchClient | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let pacer: NodeJS.Timeout | undefined;
  let inspector: InspectorSession | undefined;
  try {
    for (let start = 0; start < count; start += CONNECT_BATCH) {
      const batch: Promise<BenchClient>[] = [];
      for (let index = start; index < Math.min(count, start + CONNECT_BATCH); index++) {
        const isSampled = index % options.sampleEvery === 0 || index === count - 1;
        batch.push(contender.openSubscriber(transport, index, onDelivered, isSampled ? latency : undefined));
      }
      const outcomes = await Promise.allSettled(batch);
      for (const outcome of outcomes) if (outcome.status === 'fulfilled') subscribers.push(outcome.value);
      const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (failure !== undefined) throw new Error(`${label}: subscriber set-up failed: ${failure.reason instanceof Error ? failure.reason.message : String(failure.reason)}`);
    }
    publisher = await contender.openPublisher(transport);
    const sender = publisher;
    const tracker = subscribers[count - 1]!;
    progress(`${label}: ${count} subscribers ready (pid ${contender.pid})`);
    if (contender.inspectorUrl !== undefined) {
      inspector = await InspectorSession.open(contender.inspectorUrl);
      await inspector.call('Profiler.enable');
      await inspector.call('Profiler.start');
    }

    const durationMs = options.seconds * 1000;
    const brokerCpuBefore = processCpuSeconds(contender.pid);
    const benchCpuBefore = ownCpuSeconds();
    const startedAt = performance.now();
    const stopPublishing = (): void => {
      if (!isPublishing) return;
      isPublishing = false;
      clearTimeout(pacer);
      checkComplete();
    };
    if (row.mode === 'fixed') {
      const frames = contender.frames(row.bodyBytes, MAX_FRAMES_PER_WRITE);
      // Each 1 ms tick sends what is due by now: the rate holds even when a tick comes late.
      const tick = (): void => {
        const due = Math.min(fixedMessages, Math.floor(((performance.now() - startedAt) * ratePerSec) / 1000) + 1) - published;
        if (due > 0) {
          const batch = Math.min(due, frames.maxFrames);
          sender.write(frames.build(batch));
          published += batch;
        }
        if (published >= fixedMessages) stopPublishing();
        else pacer = setTimeout(tick, 1);
      };
      tick();
    } else {
      const frames = contender.frames(row.bodyBytes, options.batch);
      const windowTotal = window * count;
      pump = () => {
        if (performance.now() - startedAt >= durationMs) {
          stopPublishing();
          return;
        }
        for (;;) {
          if (published + options.batch - tracker.received > window) return;
          if ((published + options.batch) * count - totalReceived > windowTotal) return;
          sender.write(frames.build(options.batch));
          published += options.batch;
        }
      };
      pump();
    }
    let lastReportAt = startedAt;
    let lastReported = 0;
    ticker = setInterval(() => {
      const now = performance.now();
      if (now - lastReportAt >= 1000) {
        const rate = Math.round(((totalReceived - lastReported) * 1000) / (now - lastReportAt));
        progress(`${label}: published ${published}, delivered ${totalReceived}/${published * count} (${rate}/s)`);
        lastReportAt = now;
        lastReported = totalReceived;
      }
      if (row.mode === 'max' && now - startedAt >= durationMs) stopPublishing();
      if (contender.hasExited) finish('broker-exited');
      else if (now - Math.max(startedAt, lastDeliveryAt) > options.idleSeconds * 1000) finish('idle');
    }, TICK_MS);

    const endedBy = await ended;
    const brokerCpuAfter = processCpuSeconds(contender.pid);
    const benchCpu = ownCpuSeconds() - benchCpuBefore;
    const endAt = endedBy === 'complete' ? lastDeliveryAt : performance.now();
    const seconds = (endAt - startedAt) / 1000;
    let profile: string | undefined;
    if (inspector !== undefined && options.profileDir !== undefined) {
      const stopped = await inspector.call('Profiler.stop');
      mkdirSync(options.profileDir, { recursive: true });
      profile = path.join(options.profileDir, `stompd-${row.label}-${transport}-${round}.cpuprofile`);
      writeFileSync(profile, JSON.stringify(stopped.profile));
    }
    const brokerCpuSeconds = brokerCpuBefore === undefined || brokerCpuAfter === undefined ? undefined : brokerCpuAfter - brokerCpuBefore;
    const expected = published * count;
    const lost = subscribers.filter((s) => s.isClosed);
    const result: RunResult = {
      broker: contender.name,
      version: contender.version,
      row: row.label,
      transport,
      round,
      subscribers: count,
      bodyBytes: row.bodyBytes,
      mode: row.mode,
      ...(row.mode === 'fixed' ? { ratePerSec } : { window }),
      messages: published,
      delivered: totalReceived,
      missing: expected - totalReceived,
      seconds: round3(seconds),
      deliveriesPerSec: Math.round(totalReceived / seconds),
      cpuPerDeliveryUs: brokerCpuSeconds === undefined || totalReceived === 0 ? null : round3((brokerCpuSeconds * 1e6) / totalReceived),
      cpu: { broker: brokerCpuSeconds === undefined ? null : round3(brokerCpuSeconds / seconds), bench: round3(benchCpu / seconds) },
      latencyMs: latency.summaryMs(),
      endedBy,
      lostSubscribers: lost.length,
      loadAverage,
    };
    if (lost.length > 0) result.lostReason = lost[0]!.closeReason ?? 'unknown';
    const logStats = contender.logStats();
    if (logStats !== undefined) result.brokerLog = logStats;
    if (profile !== undefined) result.profile = profile;
    return result;
  } finally {
    clearInterval(ticker);
    clearTimeout(pacer);
    inspector?.close();
    publisher?.close();
    for (const client of subscribers) client.close();
  }
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function range(values: readonly number[]): [number, number] {
  return [Math.min(...values), Math.max(...values)];
}

/** Per row and transport: each broker's ranges over the rounds, and stompd/NATS within each round. */
function summarize(results: readonly RunResult[], row: Row, transport: Transport): Record<string, unknown> {
  const runs = results.filter((r) => r.row === row.label && r.transport === transport);
  const summary: Record<string, unknown> = { summary: true, row: row.label, transport };
  for (const broker of ['stompd', 'nats'] as const) {
    const mine = runs.filter((r) => r.broker === broker);
    if (mine.length === 0) continue;
    const cpu = mine.map((r) => r.cpuPerDeliveryUs).filter((v): v is number => v !== null);
    summary[broker] = {
      runs: mine.length,
      cpuPerDeliveryUs: cpu.length > 0 ? range(cpu) : null,
      deliveriesPerSec: range(mine.map((r) => r.deliveriesPerSec)),
      p99Ms: range(mine.map((r) => r.latencyMs.p99)),
      missing: mine.reduce((sum, r) => sum + r.missing, 0),
    };
  }
  const ratios: { round: number; cpuPerDelivery: number | null; deliveriesPerSec: number }[] = [];
  for (const round of new Set(runs.map((r) => r.round))) {
    const stompd = runs.find((r) => r.round === round && r.broker === 'stompd');
    const nats = runs.find((r) => r.round === round && r.broker === 'nats');
    if (stompd === undefined || nats === undefined) continue;
    ratios.push({
      round,
      cpuPerDelivery: stompd.cpuPerDeliveryUs === null || nats.cpuPerDeliveryUs === null ? null : round3(stompd.cpuPerDeliveryUs / nats.cpuPerDeliveryUs),
      deliveriesPerSec: round3(stompd.deliveriesPerSec / nats.deliveriesPerSec),
    });
  }
  if (ratios.length > 0) summary.stompdOverNats = ratios;
  return summary;
}

function fdLimit(): number {
  const raw = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  return raw === 'unlimited' ? Number.POSITIVE_INFINITY : Number(raw);
}

async function main(): Promise<number> {
  let options: Options | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`anchor: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 64;
  }
  if (options === undefined) {
    process.stdout.write(USAGE);
    return 0;
  }
  const opts = options;
  const progress = opts.isQuiet ? () => undefined : (line: string) => process.stderr.write(`anchor: ${line}\n`);
  if (opts.brokers.includes('nats') && !hasNatsServer()) {
    process.stderr.write('anchor: nats-server is not on PATH (apt-get install -y nats-server), or use --brokers stompd\n');
    return 1;
  }
  if (fdLimit() < opts.subscribers + 64) {
    process.stderr.write(`anchor: ulimit -n is below ${opts.subscribers + 64}; raise it\n`);
    return 1;
  }
  const isPinning = opts.isPinning && canPin();
  if (isPinning && pinProcess(process.pid, BENCH_CPU)) progress(`load generator pinned to CPU ${BENCH_CPU}, brokers to CPU ${BROKER_CPU}`);
  const pinCpu = isPinning ? BROKER_CPU : undefined;

  let current: Contender | undefined;
  const runBoundSeconds = opts.seconds + opts.idleSeconds + 60;
  const hardTimeoutMs = runBoundSeconds * 1000 * opts.rounds * opts.rows.length * opts.brokers.length * opts.transports.length + 30_000;
  setTimeout(() => {
    process.stderr.write(`anchor: hard timeout (${hardTimeoutMs} ms) reached; exiting\n`);
    void current?.stop();
    process.exit(2);
  }, hardTimeoutMs).unref();

  const results: RunResult[] = [];
  let isEverythingDelivered = true;
  for (const transport of opts.transports) {
    for (let round = 1; round <= opts.rounds; round++) {
      for (const row of opts.rows) {
        for (const name of opts.brokers) {
          current = name === 'stompd' ? await startStompd(opts, pinCpu) : await startNats(pinCpu);
          try {
            const result = await runOnce(opts, current, row, transport, round, progress);
            results.push(result);
            if (result.missing !== 0) {
              isEverythingDelivered = false;
              progress(`${name} ${row.label}: ${result.missing} deliveries missing (ended by ${result.endedBy}); log tail:\n${current.logTail()}`);
            }
            process.stdout.write(`${JSON.stringify(result)}\n`);
            progress(
              `${name} ${row.label} ${transport} round ${round}: ${result.deliveriesPerSec} deliveries/s, ${result.cpuPerDeliveryUs} µs CPU/delivery (broker ${result.cpu.broker} of a core), p99 ${result.latencyMs.p99} ms`,
            );
          } finally {
            await current.stop();
            current = undefined;
          }
        }
      }
    }
    for (const row of opts.rows) process.stdout.write(`${JSON.stringify(summarize(results, row, transport))}\n`);
  }
  return isEverythingDelivered ? 0 : 3;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`anchor: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
