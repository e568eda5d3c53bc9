// Fan-out benchmark: one publisher, N subscribers on one topic, over TCP and WebSocket.
// Prints one JSON object per transport on stdout (progress goes to stderr): deliveries per
// second, latency percentiles from a sample of subscribers, and deliveries that never came.
//
// Invariants:
// - The broker runs in another process (spawned stompd, or --target), on another core when
//   there are two, so the numbers are the broker's and not the load generator's.
// - Every subscriber's SUBSCRIBE is acknowledged by a RECEIPT before the first SEND.
// - Window mode: the publisher keeps at most --window messages in flight towards the tracker
//   subscriber (the last to subscribe, so the last a broker that fans out in subscription
//   order writes to), and at most window × N deliveries outstanding over all subscribers; so
//   a healthy broker never needs to drop, and any shortfall is the broker's.
// - Max mode: the publisher goes as fast as the broker's RECEIPTs let it (receipt-publisher.ts):
//   what a broker does at saturation — drop, or slow the publisher — shows in drops and latency.
// - Slow subscribers (--slow): the first K read ~--slow-rate messages a second; the others
//   must still get everything. At the end the slow ones read the rest, one more message is
//   published, and each must account for every message: received + told missed (x-dropped).
// - Each run is bounded: --timeout for the run, --idle without a delivery, and a hard
//   process timeout on top that kills the broker and exits.

import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { spawnStompd } from './broker-process';
import type { BrokerLogStats, StompdProcess } from './broker-process';
import { canPin, ownCpuSeconds, pinProcess, pinThreadsUntilRestored, processCpuSeconds } from './cpu';
import { OptionError, USAGE, parseFanoutOptions } from './fanout-options';
import type { FanoutOptions, PublishMode } from './fanout-options';
import { LatencyRecorder } from './latency';
import type { LatencySummaryMs } from './latency';
import { LoadClient } from './load-client';
import type { DeliveryListener, Endpoint, Transport } from './load-client';
import { processMemory } from './memory';
import type { ProcessMemory } from './memory';
import { ReceiptPacedPublisher } from './receipt-publisher';
import { SendBatcher } from './send-frames';
import { SlowSubscriber } from './slow-subscriber';

const BROKER_CPU = 0;
const BENCH_CPU = 1;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const BROKER_READY_TIMEOUT_MS = 10_000;
const TICK_MS = 250;
/** Slow subscribers that read nothing for this long, reading at full speed, have read all the broker had for them. */
const SLOW_QUIET_MS = 500;

export type RunEnd = 'complete' | 'idle' | 'timeout' | 'broker-exited';

export interface SlowSubscribersReport {
  subscribers: number;
  ratePerSec: number;
  /** Per slow subscriber: MESSAGEs received, and the x-dropped it was told in total. */
  received: number[];
  toldDropped: number[];
  /** Every slow subscriber's received + toldDropped = messages (the marker included). */
  isEveryMessageAccountedFor: boolean;
}

export interface FanoutResult {
  broker: string;
  transport: Transport;
  mode: PublishMode;
  subscribers: number;
  /** Messages published (fewer than asked only when the run ended early). */
  messages: number;
  bodyBytes: number;
  window: number;
  batch: number;
  /** Over the subscribers reading at full speed (all but --slow). */
  delivered: number;
  expected: number;
  /** expected − delivered. */
  drops: number;
  /** With --slow: what the slow subscribers received and were told they missed. */
  slow?: SlowSubscribersReport;
  /** From the first SEND to the last delivery. */
  seconds: number;
  deliveriesPerSec: number;
  messagesPerSec: number;
  latencyMs: LatencySummaryMs;
  connectSeconds: number;
  /** Fraction of one core used during the delivery phase; broker null when unknown. */
  cpu: { bench: number; broker: number | null };
  /** Broker CPU time per delivery (µs), over the delivery phase; null when unknown. */
  brokerCpuMicrosPerDelivery: number | null;
  /** The broker's resident set when the last delivery arrived, and its peak; null when unknown. */
  brokerMemory: ProcessMemory | null;
  endedBy: RunEnd;
  /** Subscribers whose connection ended during the run, and the first reason given. */
  lostSubscribers: number;
  lostReason?: string;
  brokerLog?: BrokerLogStats;
}

interface RunContext {
  options: Readonly<FanoutOptions>;
  transport: Transport;
  endpoint: Endpoint;
  brokerName: string;
  brokerPid: number | undefined;
  spawned: StompdProcess | undefined;
  progress: (line: string) => void;
}

/** Open N subscribers, in batches, each subscribed and acknowledged: the first --slow ones slow, over TCP. */
async function openSubscribers(context: RunContext, onDelivered: DeliveryListener, latency: LatencyRecorder, deadline: number): Promise<{ fast: LoadClient[]; slow: SlowSubscriber[] }> {
  const { options, transport, endpoint } = context;
  const count = options.subscribers;
  const slowCount = options.slowSubscribers;
  const fast: LoadClient[] = [];
  const slow: SlowSubscriber[] = [];
  const isSampled = (index: number): boolean => index >= slowCount && (index % options.sampleEvery === 0 || index === count - 1);
  try {
    for (let start = 0; start < count; start += options.connectBatch) {
      if (performance.now() > deadline) throw new Error(`set-up not done within --timeout (${fast.length + slow.length}/${count} subscribers)`);
      const end = Math.min(count, start + options.connectBatch);
      const batch: Promise<void>[] = [];
      for (let index = start; index < end; index++) {
        batch.push(
          (async () => {
            if (index < slowCount) {
              slow[index] = await SlowSubscriber.open(endpoint, options.destination, options.slowRate, options.bodyBytes, HANDSHAKE_TIMEOUT_MS);
              return;
            }
            const client = await LoadClient.open(transport, endpoint, HANDSHAKE_TIMEOUT_MS);
            fast[index - slowCount] = client;
            await client.subscribe(options.destination, `bench-sub-${index}`, onDelivered, isSampled(index) ? latency : undefined, HANDSHAKE_TIMEOUT_MS);
          })(),
        );
      }
      const outcomes = await Promise.allSettled(batch);
      const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (failure !== undefined) throw new Error(`subscriber set-up failed: ${failure.reason instanceof Error ? failure.reason.message : String(failure.reason)}`);
      context.progress(`${transport}: ${end}/${count} subscribers ready`);
    }
  } catch (error) {
    for (const client of fast) client?.close();
    for (const client of slow) client?.close();
    throw error;
  }
  return { fast, slow };
}

function sampledCount(options: Readonly<FanoutOptions>): number {
  let sampled = 0;
  for (let index = options.slowSubscribers; index < options.subscribers; index++) if (index % options.sampleEvery === 0 || index === options.subscribers - 1) sampled++;
  return sampled;
}

async function runFanout(context: RunContext): Promise<FanoutResult> {
  const { options, transport, progress } = context;
  const subscriberCount = options.subscribers;
  /** The subscribers that read at full speed: their deliveries are the run's figures. */
  const fastCount = subscriberCount - options.slowSubscribers;
  const messageCount = options.messages;
  const setupStart = performance.now();
  const deadline = setupStart + options.timeoutSeconds * 1000;
  const latency = new LatencyRecorder(sampledCount(options) * (messageCount + 1));

  let published = 0;
  let totalReceived = 0;
  let lastDeliveryAt = 0;
  /** When every fast subscriber had every message (before the slow ones' marker, if any). */
  let mainDoneAt = 0;
  let pump = (): void => undefined;
  let brokerCpuAtMainDone: number | undefined;
  let onMainDone = (): void => undefined;
  let checkDone = (): void => undefined;
  let finish: (end: RunEnd) => void = () => undefined;
  const ended = new Promise<RunEnd>((resolve) => (finish = resolve));
  const onDelivered: DeliveryListener = (_client, frameCount) => {
    totalReceived += frameCount;
    lastDeliveryAt = performance.now();
    if (published < messageCount) pump();
    else if (mainDoneAt === 0 && totalReceived >= messageCount * fastCount) onMainDone();
    else checkDone();
  };

  progress(`${transport}: opening ${subscriberCount} subscribers on ${context.brokerName}${options.slowSubscribers > 0 ? ` (${options.slowSubscribers} slow)` : ''}`);
  const { fast: subscribers, slow: slowSubscribers } = await openSubscribers(context, onDelivered, latency, deadline);
  let publisher: LoadClient | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let markerWait: NodeJS.Timeout | undefined;
  try {
    publisher = await LoadClient.open(transport, context.endpoint, HANDSHAKE_TIMEOUT_MS);
    const connectSeconds = (performance.now() - setupStart) / 1000;
    const tracker = subscribers[fastCount - 1]!;
    const batcher = new SendBatcher(options.destination, options.bodyBytes, options.batch);
    const sender = publisher;
    let paced: ReceiptPacedPublisher | undefined;
    if (options.mode === 'max') {
      paced = new ReceiptPacedPublisher(sender, batcher, options.batch, Math.max(1, Math.ceil(options.window / options.batch)), messageCount);
      const pacer = paced;
      pump = () => {
        pacer.pump();
        published = pacer.published;
      };
      const onReceipt = sender.onReceipt!;
      sender.onReceipt = (receiptId) => {
        onReceipt(receiptId);
        published = pacer.published;
      };
    } else {
      const windowTotal = options.window * fastCount;
      pump = () => {
        while (published < messageCount) {
          const count = Math.min(options.batch, messageCount - published);
          if (published + count - tracker.received > options.window) return;
          if ((published + count) * fastCount - totalReceived > windowTotal) return;
          sender.write(batcher.build(count));
          published += count;
        }
      };
    }
    // With slow subscribers: once the fast ones have everything, the slow ones read the rest,
    // and one more message (the marker) makes the broker tell each what it missed last.
    const markerTotal = messageCount + (options.slowSubscribers > 0 ? 1 : 0);
    const isSlowAccounted = (): boolean => slowSubscribers.every((s) => s.isClosed || s.received + s.toldDropped >= markerTotal);
    checkDone = () => {
      if (mainDoneAt !== 0 && totalReceived >= markerTotal * fastCount && isSlowAccounted()) finish('complete');
    };
    onMainDone = () => {
      mainDoneAt = lastDeliveryAt;
      if (context.brokerPid !== undefined) brokerCpuAtMainDone = processCpuSeconds(context.brokerPid);
      if (options.slowSubscribers === 0) {
        finish('complete');
        return;
      }
      for (const slow of slowSubscribers) slow.unthrottle();
      // The marker goes once the slow ones have read what the broker still had for them: sent
      // at once, it could find them still over the write limit, be dropped for them too, and
      // then no later message would tell them what they missed.
      markerWait = setInterval(() => {
        const now = performance.now();
        if (!slowSubscribers.every((s) => s.isClosed || now - s.lastReadAt >= SLOW_QUIET_MS)) return;
        clearInterval(markerWait);
        if (paced !== undefined) {
          paced.extend(1);
          published = paced.published;
        } else {
          sender.write(batcher.build(1));
          published++;
        }
      }, 50);
    };

    const startedAt = performance.now();
    const benchCpuBefore = ownCpuSeconds();
    const brokerCpuBefore = context.brokerPid === undefined ? undefined : processCpuSeconds(context.brokerPid);
    let lastReportAt = startedAt;
    let lastReportedDeliveries = 0;
    ticker = setInterval(() => {
      const now = performance.now();
      checkDone();
      if (context.spawned?.exit !== undefined) finish('broker-exited');
      else if (now > deadline) finish('timeout');
      else if (now - Math.max(startedAt, lastDeliveryAt) > options.idleSeconds * 1000) finish('idle');
      if (now - lastReportAt >= 1000) {
        const rate = Math.round(((totalReceived - lastReportedDeliveries) * 1000) / (now - lastReportAt));
        const slowPart = slowSubscribers.length === 0 ? '' : `; slow: ${slowSubscribers.map((x) => `${x.received}+${x.toldDropped}`).join(' ')}`;
        progress(`${transport}: published ${published}/${messageCount}, delivered ${totalReceived}/${published * fastCount} (${rate}/s)${slowPart}`);
        lastReportAt = now;
        lastReportedDeliveries = totalReceived;
      }
    }, TICK_MS);

    pump();
    const endedBy = await ended;
    const finishedAt = performance.now();
    const wallSeconds = (finishedAt - startedAt) / 1000;
    const benchCpu = (ownCpuSeconds() - benchCpuBefore) / wallSeconds;
    const brokerMemory = context.brokerPid === undefined ? undefined : processMemory(context.brokerPid);
    // The figures are the main phase's: until every fast subscriber had every message (the
    // slow ones' catching up and the marker are not counted).
    const mainEnd = mainDoneAt !== 0 ? mainDoneAt : totalReceived > 0 ? lastDeliveryAt : finishedAt;
    const deliverySeconds = (mainEnd - startedAt) / 1000;
    const mainDelivered = mainDoneAt !== 0 ? messageCount * fastCount : totalReceived;
    const brokerCpuEnd = brokerCpuAtMainDone ?? (context.brokerPid === undefined ? undefined : processCpuSeconds(context.brokerPid));
    const brokerCpuSeconds = brokerCpuBefore === undefined || brokerCpuEnd === undefined ? undefined : brokerCpuEnd - brokerCpuBefore;
    const brokerCpu = brokerCpuSeconds === undefined ? null : brokerCpuSeconds / (brokerCpuAtMainDone !== undefined ? deliverySeconds : wallSeconds);
    const expected = published * fastCount;
    const lost = [...subscribers.filter((x) => x.isClosed), ...slowSubscribers.filter((x) => x.isClosed)];
    const result: FanoutResult = {
      broker: context.brokerName,
      transport,
      mode: options.mode,
      subscribers: subscriberCount,
      messages: published,
      bodyBytes: options.bodyBytes,
      window: options.window,
      batch: options.batch,
      delivered: totalReceived,
      expected,
      drops: expected - totalReceived,
      seconds: round(deliverySeconds, 3),
      deliveriesPerSec: Math.round(mainDelivered / deliverySeconds),
      messagesPerSec: Math.round((mainDoneAt !== 0 ? messageCount : published) / deliverySeconds),
      latencyMs: latency.summaryMs(),
      connectSeconds: round(connectSeconds, 3),
      cpu: { bench: round(benchCpu, 2), broker: brokerCpu === null ? null : round(brokerCpu, 2) },
      brokerCpuMicrosPerDelivery: brokerCpuSeconds === undefined || mainDelivered === 0 ? null : round((brokerCpuSeconds * 1e6) / mainDelivered, 3),
      brokerMemory: brokerMemory ?? null,
      endedBy,
      lostSubscribers: lost.length,
    };
    if (slowSubscribers.length > 0) {
      result.slow = {
        subscribers: slowSubscribers.length,
        ratePerSec: options.slowRate,
        received: slowSubscribers.map((x) => x.received),
        toldDropped: slowSubscribers.map((x) => x.toldDropped),
        isEveryMessageAccountedFor: slowSubscribers.every((x) => x.received + x.toldDropped === markerTotal),
      };
    }
    if (lost.length > 0) result.lostReason = lost[0]!.closeReason ?? 'unknown';
    if (context.spawned !== undefined) result.brokerLog = { ...context.spawned.logStats };
    return result;
  } finally {
    clearInterval(ticker);
    clearInterval(markerWait);
    publisher?.close();
    for (const client of subscribers) client.close();
    for (const client of slowSubscribers) client.close();
  }
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function fdLimit(): number | undefined {
  try {
    const raw = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
    return raw === 'unlimited' ? Number.POSITIVE_INFINITY : Number(raw);
  } catch {
    return undefined;
  }
}

async function main(): Promise<number> {
  let options: Readonly<FanoutOptions> | undefined;
  try {
    options = parseFanoutOptions(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof OptionError)) throw error;
    process.stderr.write(`fanout: ${error.message}\n\n${USAGE}`);
    return 64;
  }
  if (options === undefined) {
    process.stdout.write(USAGE);
    return 0;
  }
  const opts = options;
  const progress = opts.isQuiet ? () => undefined : (line: string) => process.stderr.write(`fanout: ${line}\n`);

  // Each side holds one descriptor per connection: N subscribers + 1 publisher (+ a few).
  const limit = fdLimit();
  progress(`open file limit (ulimit -n): ${limit ?? 'unknown'}; this run needs about ${opts.subscribers + 32} per process`);
  if (limit !== undefined && limit < opts.subscribers + 32) {
    process.stderr.write(`fanout: ulimit -n is ${limit}, too low for ${opts.subscribers} subscribers; raise it (ulimit -n ${opts.subscribers + 1024})\n`);
    return 1;
  }

  const isPinning = opts.isPinning && canPin();
  if (isPinning && pinProcess(process.pid, BENCH_CPU)) progress(`load generator pinned to CPU ${BENCH_CPU}${opts.target === undefined ? `, stompd to CPU ${BROKER_CPU}` : ''}`);
  let restoreExternal: (() => void) | undefined;
  if (isPinning && opts.isPinningExternal && opts.brokerPid !== undefined) {
    restoreExternal = pinThreadsUntilRestored(opts.brokerPid, BROKER_CPU);
    if (restoreExternal === undefined) {
      process.stderr.write(`fanout: could not pin the threads of pid ${opts.brokerPid}\n`);
      return 1;
    }
    process.on('exit', restoreExternal);
    progress(`external broker (pid ${opts.brokerPid}) pinned to CPU ${BROKER_CPU} for the run`);
  }

  let current: StompdProcess | undefined;
  // The last resort: whatever hangs, the process ends and takes its broker with it.
  const hardTimeoutMs = (opts.timeoutSeconds * opts.transports.length + 30) * 1000;
  setTimeout(() => {
    process.stderr.write(`fanout: hard timeout (${hardTimeoutMs} ms) reached; killing the broker and exiting\n`);
    current?.kill();
    process.exit(2);
  }, hardTimeoutMs).unref();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      current?.kill();
      process.exit(130);
    });
  }

  let isEveryMessageDelivered = true;
  for (const transport of opts.transports) {
    let endpoint: Endpoint;
    let brokerName: string;
    let brokerPid = opts.brokerPid;
    if (opts.target === undefined) {
      current = await spawnStompd({
        mainPath: opts.mainPath !== undefined ? path.resolve(opts.mainPath) : path.resolve(__dirname, '../src/main.js'),
        env: opts.brokerEnv,
        nodeArgs: opts.brokerNodeArgs,
        cpu: isPinning ? BROKER_CPU : undefined,
        readyTimeoutMs: BROKER_READY_TIMEOUT_MS,
      });
      endpoint = { host: '127.0.0.1', tcpPort: current.tcpPort, wsPort: current.wsPort, wsPath: opts.wsPath, login: opts.login, passcode: opts.passcode };
      brokerName = opts.label ?? 'stompd';
      brokerPid = current.pid;
      progress(`spawned stompd (pid ${current.pid}, tcp ${current.tcpPort}, ws ${current.wsPort})`);
    } else {
      const { host, tcpPort, wsPort } = opts.target;
      endpoint = { host, tcpPort, wsPort, wsPath: opts.wsPath, login: opts.login, passcode: opts.passcode };
      brokerName = opts.label ?? `external ${host}:${transport === 'tcp' ? tcpPort : wsPort}`;
    }
    try {
      const result = await runFanout({ options: opts, transport, endpoint, brokerName, brokerPid, spawned: current, progress });
      if (result.drops !== 0) {
        isEveryMessageDelivered = false;
        if (current !== undefined) progress(`stompd log tail:\n${current.logTail()}`);
      }
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } catch (error) {
      process.stderr.write(`fanout: ${transport} run failed: ${error instanceof Error ? error.message : String(error)}\n`);
      if (current !== undefined) process.stderr.write(`stompd log tail:\n${current.logTail()}\n`);
      if (current !== undefined) await current.stop();
      return 1;
    }
    if (current !== undefined) {
      const exit = await current.stop();
      if (exit.code !== 0) progress(`stompd exited with code ${exit.code}, signal ${exit.signal}`);
      current = undefined;
    }
  }
  return isEveryMessageDelivered ? 0 : 3;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`fanout: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
