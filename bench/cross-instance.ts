// Cross-instance benchmark: what the Redis hop between two stompd instances costs, measured
// next to a single stompd without Redis in the same invocation.
//
// Scenarios (one topic, one publisher, N subscribers; every broker a process of its own):
// - single: one stompd in embedded mode (no Redis): the reference.
// - cross:  publisher on instance A, every subscriber on instance B; each message goes
//           A → redis-server → B → subscribers.
// - split:  publisher on A, the first half of the subscribers on A, the second half on B.
// Modes:
// - fixed:  --rate messages per second for --duration seconds: latency at a moderate load.
// - max:    as fast as a window of messages in flight allows (like bench/fanout): throughput.
// - receipts: as fast as the broker's RECEIPTs allow (receipt-publisher.ts): the broker's flow
//           control sets the rate; what matters is that nothing is dropped and no instance is
//           taken for dead (brokerLog.livenessLost, reapedOthers).
//
// Invariants:
// - One redis-server per invocation, started by the bench on an ephemeral loopback port;
//   fresh brokers per run, each run under a REDIS_PREFIX of its own, so runs share nothing.
// - Publishing starts only once every SUBSCRIBE has its RECEIPT and Redis shows every
//   instance with subscribers subscribed to the destination's channel (PUBSUB NUMSUB): the
//   RECEIPT comes before the instance's own Redis SUBSCRIBE completes.
// - Publisher and subscribers live in this process: one clock for send and receive times.
// - Repeats are interleaved (single, cross, split, single, ...) so that drift on a shared
//   machine hits every scenario alike; the summary gives medians per scenario.
// - Every run is bounded (duration, idle, a run timeout) and a hard timeout on top kills
//   every child and exits, so the bench never hangs.

import os from 'node:os';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import Redis from 'ioredis';
import { RedisKeys } from '../src/cluster/keys';
import { spawnStompd } from './broker-process';
import type { BrokerLogStats, StompdProcess } from './broker-process';
import { canPin, ownCpuSeconds, pinProcess, processCpuSeconds } from './cpu';
import { OptionError, USAGE, parseCrossInstanceOptions } from './cross-instance-options';
import type { CrossInstanceOptions, Mode, Scenario } from './cross-instance-options';
import { LatencyRecorder, combinedSummaryMs } from './latency';
import type { LatencySummaryMs } from './latency';
import { LoadClient } from './load-client';
import { NativeSink } from './native-sink';
import type { DeliveryListener, Endpoint, Transport } from './load-client';
import { hasRedisServer, startRedisServer } from './redis-process';
import type { RedisProcess } from './redis-process';
import { ReceiptPacedPublisher } from './receipt-publisher';
import { SendBatcher } from './send-frames';

const BROKER_CPU = 0;
const SIDE_CPU = 1;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const READY_TIMEOUT_MS = 10_000;
const INTEREST_TIMEOUT_MS = 10_000;
const TICK_MS = 250;
/** Set-up and teardown allowance on top of duration + idle, per run. */
const RUN_SLACK_SECONDS = 60;
/** fixed mode: the most SEND frames one paced write may carry (after a stall). */
const MAX_FRAMES_PER_WRITE = 1000;
/** max mode: latency samples kept at most, over all sampled subscribers (8 bytes each). */
const MAX_LATENCY_SAMPLES = 8_000_000;

type InstanceName = 'single' | 'A' | 'B';
export type RunEnd = 'complete' | 'idle' | 'timeout' | 'broker-exited';

interface Instance {
  name: InstanceName;
  broker: StompdProcess;
  endpoint: Endpoint;
}

export interface RedisRunStats {
  /** PUBLISH commands Redis executed during the run. */
  publishes: number;
  /** Reads Redis processed from its clients: a pipelined burst of commands is one read. */
  readsProcessed: number | null;
  /** publishes / readsProcessed: how many publishes one read carried on average. */
  publishesPerRead: number | null;
  /** Writes Redis made to its clients (the subscribed instances' connections among them). */
  writesProcessed: number | null;
}

export interface CrossInstanceResult {
  scenario: Scenario;
  mode: Mode;
  round: number;
  transport: Transport;
  subscribers: number;
  /** Subscribers per instance. */
  placement: Partial<Record<InstanceName, number>>;
  /** fixed mode only: the rate asked for. */
  ratePerSec?: number;
  messages: number;
  bodyBytes: number;
  delivered: number;
  expected: number;
  drops: number;
  /** From the first SEND to the last delivery. */
  seconds: number;
  deliveriesPerSec: number;
  messagesPerSec: number;
  latencyMs: LatencySummaryMs;
  /** Latency of the subscribers on each instance (split: A is local, B is across Redis). */
  latencyMsByInstance: Partial<Record<InstanceName, LatencySummaryMs>>;
  /** Fraction of one core used while publishing and delivering. */
  cpu: { bench: number; sinks?: number } & Partial<Record<InstanceName | 'redis', number | null>>;
  redis?: RedisRunStats;
  endedBy: RunEnd;
  lostSubscribers: number;
  lostReason?: string;
  brokerLog: Partial<Record<InstanceName, BrokerLogStats>>;
  layout: string;
  /** The machine's 1-minute load average as the run began: other work there shows up as noise. */
  loadAverage: number;
}

interface Figures {
  runs: number;
  deliveriesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** split only: the median p50 of the subscribers on A (local) and on B (across Redis). */
  p50MsByInstance?: Partial<Record<InstanceName, number>>;
  /** Median p50 minus the single instance's median p50, when single ran too. */
  p50OverSingleMs?: number;
  p99OverSingleMs?: number;
  deliveriesPerSecVsSingle?: number;
}

interface BenchContext {
  options: Readonly<CrossInstanceOptions>;
  redis: RedisProcess;
  admin: Redis;
  isPinning: boolean;
  layout: string;
  progress: (line: string) => void;
  /** Brokers alive now, for the hard timeout and signals to kill. */
  live: Set<StompdProcess>;
}

const MAIN_PATH = path.resolve(__dirname, '../src/main.js');

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Each run's keys and channels under a prefix of their own. */
function runPrefix(roundIndex: number, scenario: Scenario): string {
  return `bench${roundIndex}-${scenario}:`;
}

/** Where subscriber `index` connects. */
function homeOf(scenario: Scenario, index: number, count: number): InstanceName {
  if (scenario === 'single') return 'single';
  if (scenario === 'cross') return 'B';
  return index < Math.floor(count / 2) ? 'A' : 'B';
}

async function spawnInstances(context: BenchContext, scenario: Scenario, roundIndex: number): Promise<Map<InstanceName, Instance>> {
  const { options } = context;
  const names: InstanceName[] = scenario === 'single' ? ['single'] : ['A', 'B'];
  const instances = new Map<InstanceName, Instance>();
  const spawned = await Promise.allSettled(
    names.map(async (name) => {
      const clusterEnv: Record<string, string> = name === 'single' ? {} : { REDIS_URL: context.redis.url, REDIS_PREFIX: runPrefix(roundIndex, scenario), INSTANCE_ID: `bench-${name.toLowerCase()}` };
      const broker = await spawnStompd({
        mainPath: options.mainPath !== undefined ? path.resolve(options.mainPath) : MAIN_PATH,
        env: { ...options.brokerEnv, ...clusterEnv },
        nodeArgs: options.brokerNodeArgs,
        cpu: context.isPinning ? BROKER_CPU : undefined,
        readyTimeoutMs: READY_TIMEOUT_MS,
      });
      context.live.add(broker);
      const endpoint: Endpoint = { host: '127.0.0.1', tcpPort: broker.tcpPort, wsPort: broker.wsPort, wsPath: '/ws', login: undefined, passcode: undefined };
      instances.set(name, { name, broker, endpoint });
    }),
  );
  // Spawned concurrently: put them back in the order the report lists them.
  const ordered = new Map(names.filter((name) => instances.has(name)).map((name) => [name, instances.get(name)!]));
  const failure = spawned.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failure !== undefined) {
    await stopInstances(context, ordered);
    throw failure.reason;
  }
  return ordered;
}

async function stopInstances(context: BenchContext, instances: Map<InstanceName, Instance>): Promise<void> {
  await Promise.all(
    [...instances.values()].map(async ({ name, broker }) => {
      const exit = await broker.stop();
      context.live.delete(broker);
      if (exit.code !== 0) context.progress(`stompd ${name} exited with code ${exit.code}, signal ${exit.signal}`);
    }),
  );
}

/** Resolves once `expected` connections are subscribed to the destination's channel. */
async function waitForInterest(context: BenchContext, prefix: string, expected: number): Promise<void> {
  const channel = new RedisKeys(prefix).destinationChannel(context.options.destination);
  const deadline = performance.now() + INTEREST_TIMEOUT_MS;
  for (;;) {
    const reply = (await context.admin.call('PUBSUB', 'NUMSUB', channel)) as [string, number];
    if (Number(reply[1]) >= expected) return;
    if (performance.now() > deadline) throw new Error(`only ${reply[1]} of ${expected} instances subscribed to ${channel} within ${INTEREST_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface RedisCounters {
  publishes: number;
  reads: number | undefined;
  writes: number | undefined;
}

async function redisCounters(admin: Redis): Promise<RedisCounters> {
  const stats = await admin.info('stats');
  const commands = await admin.info('commandstats');
  const field = (text: string, pattern: RegExp): number | undefined => {
    const match = pattern.exec(text);
    return match === null ? undefined : Number(match[1]);
  };
  return {
    publishes: field(commands, /^cmdstat_publish:calls=(\d+)/m) ?? 0,
    reads: field(stats, /^total_reads_processed:(\d+)/m),
    writes: field(stats, /^total_writes_processed:(\d+)/m),
  };
}

function redisDelta(before: RedisCounters, after: RedisCounters): RedisRunStats {
  const publishes = after.publishes - before.publishes;
  const reads = before.reads === undefined || after.reads === undefined ? null : after.reads - before.reads;
  const writes = before.writes === undefined || after.writes === undefined ? null : after.writes - before.writes;
  return { publishes, readsProcessed: reads, publishesPerRead: reads === null || reads === 0 ? null : round(publishes / reads, 2), writesProcessed: writes };
}

interface Subscribers {
  /** The Node clients: every subscriber, or with --native-sink the ones that record latency. */
  clients: LoadClient[];
  /** The last subscriber, a Node client: the max mode's window is counted on it. */
  tracker: LoadClient;
  sinks: NativeSink[];
}

async function openSubscribers(
  context: BenchContext,
  scenario: Scenario,
  instances: Map<InstanceName, Instance>,
  onDelivered: DeliveryListener,
  onSinkDeliveries: (count: number) => void,
  recorders: Map<InstanceName, LatencyRecorder>,
): Promise<Subscribers> {
  const { options } = context;
  const count = options.subscribers;
  const clients: LoadClient[] = [];
  const sinks: NativeSink[] = [];
  let tracker: LoadClient | undefined;
  const isSampled = (index: number): boolean => index % options.sampleEvery === 0 || index === count - 1;
  const sinkCounts = new Map<InstanceName, number>();
  try {
    for (let start = 0; start < count; start += options.connectBatch) {
      const end = Math.min(count, start + options.connectBatch);
      const batch: Promise<void>[] = [];
      for (let index = start; index < end; index++) {
        const home = homeOf(scenario, index, count);
        if (options.isNativeSink && !isSampled(index)) {
          sinkCounts.set(home, (sinkCounts.get(home) ?? 0) + 1);
          continue;
        }
        batch.push(
          (async () => {
            const client = await LoadClient.open(options.transport, instances.get(home)!.endpoint, HANDSHAKE_TIMEOUT_MS);
            clients.push(client);
            if (index === count - 1) tracker = client;
            await client.subscribe(options.destination, `bench-sub-${index}`, onDelivered, isSampled(index) ? recorders.get(home) : undefined, HANDSHAKE_TIMEOUT_MS);
          })(),
        );
      }
      const outcomes = await Promise.allSettled(batch);
      const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (failure !== undefined) throw new Error(`subscriber set-up failed: ${failure.reason instanceof Error ? failure.reason.message : String(failure.reason)}`);
    }
    for (const [home, sinkCount] of sinkCounts) {
      const { endpoint } = instances.get(home)!;
      let seen = 0;
      const onCount = (total: number): void => {
        const fresh = total - seen;
        seen = total;
        if (fresh > 0) onSinkDeliveries(fresh);
      };
      sinks.push(await NativeSink.open(endpoint.host, endpoint.tcpPort!, sinkCount, options.destination, onCount, HANDSHAKE_TIMEOUT_MS * 3));
    }
  } catch (error) {
    for (const client of clients) client.close();
    for (const sink of sinks) sink.close();
    throw error;
  }
  return { clients, tracker: tracker!, sinks };
}

async function runScenario(context: BenchContext, scenario: Scenario, roundIndex: number): Promise<CrossInstanceResult> {
  const { options, progress } = context;
  const count = options.subscribers;
  const label = `${scenario} #${roundIndex}`;
  const loadAverage = round(os.loadavg()[0]!, 2);
  const runDeadline = performance.now() + (options.durationSeconds + options.idleSeconds + RUN_SLACK_SECONDS) * 1000;
  const instances = await spawnInstances(context, scenario, roundIndex);
  const publisherHome: InstanceName = scenario === 'single' ? 'single' : 'A';
  progress(`${label}: ${[...instances.values()].map((i) => `stompd ${i.name} pid ${i.broker.pid} tcp ${i.broker.tcpPort}`).join(', ')}`);

  const placement: Partial<Record<InstanceName, number>> = {};
  const sampledPer = new Map<InstanceName, number>();
  for (let index = 0; index < count; index++) {
    const home = homeOf(scenario, index, count);
    placement[home] = (placement[home] ?? 0) + 1;
    if (index % options.sampleEvery === 0 || index === count - 1) sampledPer.set(home, (sampledPer.get(home) ?? 0) + 1);
  }
  const fixedMessages = options.ratePerSec * options.durationSeconds;
  const sampledTotal = [...sampledPer.values()].reduce((a, b) => a + b, 0);
  // max mode: room for 100k messages/s, within MAX_LATENCY_SAMPLES; beyond it samples are counted, not kept.
  const perSubscriberCapacity = options.mode === 'fixed' ? fixedMessages : Math.min(options.durationSeconds * 100_000, Math.floor(MAX_LATENCY_SAMPLES / sampledTotal));
  const recorders = new Map<InstanceName, LatencyRecorder>();
  for (const [home, sampled] of sampledPer) recorders.set(home, new LatencyRecorder(sampled * perSubscriberCapacity));

  let published = 0;
  let isPublishing = true;
  let totalReceived = 0;
  let lastDeliveryAt = 0;
  let pump = (): void => undefined;
  let finish: (end: RunEnd) => void = () => undefined;
  const ended = new Promise<RunEnd>((resolve) => (finish = resolve));
  const checkComplete = (): void => {
    if (!isPublishing && totalReceived >= published * count) finish('complete');
  };
  const onDeliveries = (frameCount: number): void => {
    totalReceived += frameCount;
    lastDeliveryAt = performance.now();
    if (isPublishing) pump();
    else checkComplete();
  };
  const onDelivered: DeliveryListener = (_client, frameCount) => onDeliveries(frameCount);

  let subscribers: LoadClient[] = [];
  let sinks: NativeSink[] = [];
  let publisher: LoadClient | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let pacer: NodeJS.Timeout | undefined;
  try {
    let tracker: LoadClient;
    ({ clients: subscribers, tracker, sinks } = await openSubscribers(context, scenario, instances, onDelivered, onDeliveries, recorders));
    publisher = await LoadClient.open(options.transport, instances.get(publisherHome)!.endpoint, HANDSHAKE_TIMEOUT_MS);
    const prefix = runPrefix(roundIndex, scenario);
    if (scenario !== 'single') await waitForInterest(context, prefix, Object.keys(placement).length);
    progress(
      `${label}: ${count} subscribers ready (${Object.entries(placement)
        .map(([name, n]) => `${n} on ${name}`)
        .join(', ')}), publisher on ${publisherHome}`,
    );

    const redisBefore = scenario === 'single' ? undefined : await redisCounters(context.admin);
    const sender = publisher;
    const durationMs = options.durationSeconds * 1000;
    const startedAt = performance.now();
    let stopPublishing = (): void => {
      if (!isPublishing) return;
      isPublishing = false;
      clearTimeout(pacer);
      checkComplete();
    };

    if (options.mode === 'fixed') {
      const batcher = new SendBatcher(options.destination, options.bodyBytes, MAX_FRAMES_PER_WRITE);
      // Paced by a 1 ms timer: each tick sends what is due by now, so the rate holds even
      // when a tick comes late (those frames then leave together, stamped with the real time).
      const tick = (): void => {
        const elapsedMs = performance.now() - startedAt;
        const due = Math.min(fixedMessages, Math.floor((elapsedMs * options.ratePerSec) / 1000) + 1) - published;
        if (due > 0) {
          const frames = Math.min(due, batcher.maxFrames);
          sender.write(batcher.build(frames));
          published += frames;
        }
        if (published >= fixedMessages) stopPublishing();
        else pacer = setTimeout(tick, 1);
      };
      tick();
    } else if (options.mode === 'receipts') {
      const batcher = new SendBatcher(options.destination, options.bodyBytes, options.batch);
      const paced = new ReceiptPacedPublisher(sender, batcher, options.batch, Math.max(1, Math.ceil(options.window / options.batch)), Number.MAX_SAFE_INTEGER);
      const onReceipt = sender.onReceipt!;
      sender.onReceipt = (receiptId) => {
        onReceipt(receiptId);
        published = paced.published;
        if (performance.now() - startedAt >= durationMs) stopPublishing();
      };
      const stop = stopPublishing;
      stopPublishing = () => {
        paced.stop();
        published = paced.published;
        stop();
      };
      paced.pump();
      published = paced.published;
    } else {
      const batcher = new SendBatcher(options.destination, options.bodyBytes, options.batch);
      const windowTotal = options.window * count;
      pump = () => {
        if (performance.now() - startedAt >= durationMs) {
          stopPublishing();
          return;
        }
        for (;;) {
          if (published + options.batch - tracker.received > options.window) return;
          if ((published + options.batch) * count - totalReceived > windowTotal) return;
          sender.write(batcher.build(options.batch));
          published += options.batch;
        }
      };
      pump();
    }

    const benchCpuBefore = ownCpuSeconds();
    const pids: [InstanceName | 'redis', number][] = [...instances.values()].map((i) => [i.name, i.broker.pid]);
    if (scenario !== 'single') pids.push(['redis', context.redis.pid]);
    const sinkCpuBefore = sinks.map((sink) => processCpuSeconds(sink.pid));
    const cpuBefore = new Map(pids.map(([name, pid]) => [name, processCpuSeconds(pid)]));
    let lastReportAt = startedAt;
    let lastReported = 0;
    ticker = setInterval(() => {
      const now = performance.now();
      if (options.mode !== 'fixed' && now - startedAt >= durationMs) stopPublishing();
      if ([...instances.values()].some((i) => i.broker.exit !== undefined)) finish('broker-exited');
      else if (now > runDeadline) finish('timeout');
      else if (now - Math.max(startedAt, lastDeliveryAt) > options.idleSeconds * 1000) finish('idle');
      if (now - lastReportAt >= 1000) {
        const rate = Math.round(((totalReceived - lastReported) * 1000) / (now - lastReportAt));
        progress(`${label}: published ${published}, delivered ${totalReceived}/${published * count} (${rate}/s)`);
        lastReportAt = now;
        lastReported = totalReceived;
      }
    }, TICK_MS);

    const endedBy = await ended;
    stopPublishing();
    const wallSeconds = (performance.now() - startedAt) / 1000;
    const cpu: CrossInstanceResult['cpu'] = { bench: round((ownCpuSeconds() - benchCpuBefore) / wallSeconds, 2) };
    for (const [name, pid] of pids) {
      const before = cpuBefore.get(name);
      const after = processCpuSeconds(pid);
      cpu[name] = before === undefined || after === undefined ? null : round((after - before) / wallSeconds, 2);
    }
    if (sinks.length > 0) {
      const spent = sinks.map((sink, i) => (processCpuSeconds(sink.pid) ?? 0) - (sinkCpuBefore[i] ?? 0));
      cpu.sinks = round(spent.reduce((a, b) => a + b, 0) / wallSeconds, 2);
    }
    const redisStats = redisBefore === undefined ? undefined : redisDelta(redisBefore, await redisCounters(context.admin));

    const deliverySeconds = totalReceived > 0 ? (lastDeliveryAt - startedAt) / 1000 : wallSeconds;
    const expected = published * count;
    const lost = subscribers.filter((s) => s.isClosed);
    const sinkLost = sinks.reduce((sum, sink) => sum + sink.lost, 0);
    const latencyMsByInstance: Partial<Record<InstanceName, LatencySummaryMs>> = {};
    for (const [name, recorder] of recorders) latencyMsByInstance[name] = recorder.summaryMs();
    const overflow = [...recorders.values()].reduce((sum, r) => sum + r.overflow, 0);
    if (overflow > 0) progress(`${label}: ${overflow} latency samples beyond the recorder's capacity were not kept (the percentiles favour the run's start)`);
    const brokerLog: Partial<Record<InstanceName, BrokerLogStats>> = {};
    for (const instance of instances.values()) brokerLog[instance.name] = { ...instance.broker.logStats };
    const result: CrossInstanceResult = {
      scenario,
      mode: options.mode,
      round: roundIndex,
      transport: options.transport,
      subscribers: count,
      placement,
      ...(options.mode === 'fixed' ? { ratePerSec: options.ratePerSec } : {}),
      messages: published,
      bodyBytes: options.bodyBytes,
      delivered: totalReceived,
      expected,
      drops: expected - totalReceived,
      seconds: round(deliverySeconds, 3),
      deliveriesPerSec: Math.round(totalReceived / deliverySeconds),
      messagesPerSec: Math.round(published / deliverySeconds),
      latencyMs: combinedSummaryMs([...recorders.values()]),
      latencyMsByInstance,
      cpu,
      ...(redisStats === undefined ? {} : { redis: redisStats }),
      endedBy,
      lostSubscribers: lost.length + sinkLost,
      brokerLog,
      layout: context.layout,
      loadAverage,
    };
    if (lost.length > 0) result.lostReason = lost[0]!.closeReason ?? 'unknown';
    else if (sinkLost > 0) result.lostReason = sinks.find((sink) => sink.lostReason !== undefined)?.lostReason ?? 'unknown';
    if (result.drops !== 0) for (const instance of instances.values()) progress(`${label}: stompd ${instance.name} log tail:\n${instance.broker.logTail()}`);
    return result;
  } finally {
    clearInterval(ticker);
    clearTimeout(pacer);
    publisher?.close();
    for (const client of subscribers) client.close();
    for (const sink of sinks) sink.close();
    await stopInstances(context, instances);
  }
}

function summarize(results: readonly CrossInstanceResult[], options: Readonly<CrossInstanceOptions>): Record<string, unknown> {
  const figures: Partial<Record<Scenario, Figures>> = {};
  for (const scenario of options.scenarios) {
    const runs = results.filter((r) => r.scenario === scenario);
    if (runs.length === 0) continue;
    const entry: Figures = {
      runs: runs.length,
      deliveriesPerSec: Math.round(median(runs.map((r) => r.deliveriesPerSec))),
      p50Ms: round(median(runs.map((r) => r.latencyMs.p50)), 3),
      p99Ms: round(median(runs.map((r) => r.latencyMs.p99)), 3),
    };
    if (scenario === 'split') {
      entry.p50MsByInstance = {};
      for (const name of ['A', 'B'] as const) {
        const values = runs.map((r) => r.latencyMsByInstance[name]?.p50).filter((v): v is number => v !== undefined);
        if (values.length > 0) entry.p50MsByInstance[name] = round(median(values), 3);
      }
    }
    figures[scenario] = entry;
  }
  const single = figures.single;
  if (single !== undefined) {
    for (const scenario of ['cross', 'split'] as const) {
      const entry = figures[scenario];
      if (entry === undefined) continue;
      entry.p50OverSingleMs = round(entry.p50Ms - single.p50Ms, 3);
      entry.p99OverSingleMs = round(entry.p99Ms - single.p99Ms, 3);
      entry.deliveriesPerSecVsSingle = round(entry.deliveriesPerSec / single.deliveriesPerSec, 3);
    }
  }
  return {
    summary: true,
    mode: options.mode,
    transport: options.transport,
    subscribers: options.subscribers,
    ...(options.mode === 'fixed' ? { ratePerSec: options.ratePerSec } : { window: options.window, batch: options.batch }),
    durationSeconds: options.durationSeconds,
    bodyBytes: options.bodyBytes,
    rounds: options.repeat,
    medians: figures,
    allDelivered: results.every((r) => r.drops === 0),
    layout: results[0]?.layout,
  };
}

function table(summary: Record<string, unknown>): string {
  const medians = summary.medians as Partial<Record<Scenario, Figures>>;
  const lines = ['scenario  runs  deliveries/s   p50 ms   p99 ms   p50 over single'];
  for (const [scenario, f] of Object.entries(medians) as [Scenario, Figures][]) {
    const over = f.p50OverSingleMs === undefined ? '' : `${f.p50OverSingleMs >= 0 ? '+' : ''}${f.p50OverSingleMs.toFixed(3)}`;
    lines.push(`${scenario.padEnd(8)}  ${String(f.runs).padStart(4)}  ${String(f.deliveriesPerSec).padStart(12)}  ${f.p50Ms.toFixed(3).padStart(7)}  ${f.p99Ms.toFixed(3).padStart(7)}   ${over}`);
  }
  return lines.join('\n');
}

function describeLayout(isPinning: boolean): string {
  const cores = os.availableParallelism();
  return isPinning
    ? `${cores} cores; stompd instances (A and B, or the single one) pinned to CPU ${BROKER_CPU}, redis-server and the load generator to CPU ${SIDE_CPU}: two brokers, Redis and the load client share the machine`
    : `${cores} cores, nothing pinned: brokers, redis-server and the load generator share every core`;
}

async function main(): Promise<number> {
  let options: Readonly<CrossInstanceOptions> | undefined;
  try {
    options = parseCrossInstanceOptions(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof OptionError)) throw error;
    process.stderr.write(`cross-instance: ${error.message}\n\n${USAGE}`);
    return 64;
  }
  if (options === undefined) {
    process.stdout.write(USAGE);
    return 0;
  }
  const opts = options;
  const progress = opts.isQuiet ? () => undefined : (line: string) => process.stderr.write(`cross-instance: ${line}\n`);
  if (!hasRedisServer()) {
    process.stderr.write('cross-instance: redis-server is not on PATH (apt-get install -y redis-server)\n');
    return 1;
  }

  const isPinning = opts.isPinning && canPin();
  const layout = describeLayout(isPinning); // before pinning: pinned, this process sees one core
  if (isPinning) pinProcess(process.pid, SIDE_CPU);
  progress(layout);

  const live = new Set<StompdProcess>();
  let redis: RedisProcess | undefined;
  const killAll = (): void => {
    for (const broker of live) broker.kill();
    redis?.kill();
  };
  const runs = opts.repeat * opts.scenarios.length;
  const hardTimeoutMs = (runs * (opts.durationSeconds + opts.idleSeconds + RUN_SLACK_SECONDS) + 30) * 1000;
  setTimeout(() => {
    process.stderr.write(`cross-instance: hard timeout (${hardTimeoutMs} ms) reached; killing every child and exiting\n`);
    killAll();
    process.exit(2);
  }, hardTimeoutMs).unref();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      killAll();
      process.exit(130);
    });
  }
  process.on('exit', killAll);

  redis = await startRedisServer(isPinning ? SIDE_CPU : undefined, READY_TIMEOUT_MS);
  progress(`redis-server pid ${redis.pid} on ${redis.url}`);
  const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await admin.connect();
  const context: BenchContext = { options: opts, redis, admin, isPinning, layout, progress, live };

  const results: CrossInstanceResult[] = [];
  try {
    for (let round = 1; round <= opts.repeat; round++) {
      for (const scenario of opts.scenarios) {
        const result = await runScenario(context, scenario, round);
        results.push(result);
        process.stdout.write(`${JSON.stringify(result)}\n`);
        progress(`${scenario} #${round}: ${result.deliveriesPerSec} deliveries/s, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, ${result.drops} drops (${result.endedBy})`);
      }
    }
  } catch (error) {
    process.stderr.write(`cross-instance: run failed: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    admin.disconnect();
    await redis.stop();
  }
  const summary = summarize(results, opts);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  progress(`medians of ${opts.repeat} round(s), ${opts.mode} mode:\n${table(summary)}`);
  return summary.allDelivered ? 0 : 3;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`cross-instance: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
