// bench/cross-instance as a user runs it: the compiled script as a child process in a tiny
// configuration (a second of publishing per run), spawning its own redis-server and stompd
// instances. Asserts the reports' shape, that every message reached every subscriber across
// the Redis hop, and that Redis carried the publishes; no wall-clock thresholds, since
// machines differ.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';

const CROSS_JS = path.resolve(__dirname, '../../bench/cross-instance.js');
const TEST_TIMEOUT_MS = 90_000;
const SUBSCRIBERS = 6;
const RATE = 200;

interface BenchRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

type Report = Record<string, unknown>;

function runBench(args: string[]): Promise<BenchRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CROSS_JS, '--quiet', '--no-pin', '--duration', '1', '--idle', '5', '--subscribers', String(SUBSCRIBERS), ...args], { timeout: TEST_TIMEOUT_MS - 5000 }, (error, stdout, stderr) => {
      const exitCode = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ exitCode, stdout, stderr });
    });
  });
}

function reports(run: BenchRun): Report[] {
  assert.equal(run.exitCode, 0, `cross-instance exited with ${run.exitCode}\n${run.stderr}`);
  return run.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Report);
}

function assertLatency(latency: Record<string, number> | undefined, what: string): void {
  assert.ok(latency !== undefined, `${what}: latency reported`);
  assert.ok(latency.samples! > 0, `${what}: latency was sampled`);
  assert.ok(latency.p50! > 0 && latency.p50! <= latency.p99! && latency.p99! <= latency.max!, `${what}: ordered percentiles ${JSON.stringify(latency)}`);
}

function assertComplete(report: Report, scenario: string, placement: Record<string, number>): void {
  assert.equal(report.scenario, scenario);
  assert.equal(report.subscribers, SUBSCRIBERS);
  assert.deepEqual(report.placement, placement);
  assert.ok((report.messages as number) > 0, 'messages were published');
  assert.equal(report.expected, (report.messages as number) * SUBSCRIBERS);
  assert.equal(report.delivered, report.expected, `${scenario}: every message reached every subscriber`);
  assert.equal(report.drops, 0);
  assert.equal(report.endedBy, 'complete');
  assert.equal(report.lostSubscribers, 0);
  assert.ok((report.deliveriesPerSec as number) > 0, 'deliveriesPerSec > 0');
  assertLatency(report.latencyMs as Record<string, number>, scenario);
  const byInstance = report.latencyMsByInstance as Record<string, Record<string, number>>;
  for (const name of Object.keys(placement)) assertLatency(byInstance[name], `${scenario} on ${name}`);
  const cpu = report.cpu as Record<string, unknown>;
  assert.equal(typeof cpu.bench, 'number');
  for (const name of Object.keys(report.brokerLog as object)) {
    assert.deepEqual(
      (report.brokerLog as Record<string, unknown>)[name],
      { slowConsumerSessions: 0, droppedMessagesLogged: 0, sessionsClosedByBroker: 0, errorLines: 0, livenessLost: 0, reapedOthers: 0 },
      `stompd ${name} log`,
    );
  }
  assert.equal(typeof report.layout, 'string');
}

test('cross-instance at a fixed rate: single, cross and split, every delivery made, next to the single figure', { timeout: TEST_TIMEOUT_MS }, async () => {
  const [single, cross, split, summary, ...rest] = reports(await runBench(['--mode', 'fixed', '--rate', String(RATE)]));
  assert.equal(rest.length, 0);
  assertComplete(single!, 'single', { single: SUBSCRIBERS });
  assertComplete(cross!, 'cross', { B: SUBSCRIBERS });
  assertComplete(split!, 'split', { A: SUBSCRIBERS / 2, B: SUBSCRIBERS / 2 });
  for (const report of [single!, cross!, split!]) {
    assert.equal(report.ratePerSec, RATE);
    assert.equal(report.messages, RATE); // one second at the rate
  }
  // Embedded mode has no Redis; across instances, each message is one PUBLISH.
  assert.equal(single!.redis, undefined);
  for (const report of [cross!, split!]) {
    const redis = report.redis as Record<string, number>;
    assert.equal(redis.publishes, report.messages, `${String(report.scenario)}: one PUBLISH per message`);
    assert.ok(redis.readsProcessed! > 0);
  }

  assert.equal(summary!.summary, true);
  assert.equal(summary!.allDelivered, true);
  const medians = summary!.medians as Record<string, Record<string, number>>;
  assert.deepEqual(Object.keys(medians), ['single', 'cross', 'split']);
  assert.equal(medians.single!.p50Ms, (single!.latencyMs as Record<string, number>).p50);
  assert.equal(medians.cross!.p50OverSingleMs, Math.round((medians.cross!.p50Ms! - medians.single!.p50Ms!) * 1000) / 1000);
  assert.equal(typeof medians.split!.deliveriesPerSecVsSingle, 'number');
});

test('cross-instance at full speed across the Redis hop, repeated and summarised by medians', { timeout: TEST_TIMEOUT_MS }, async () => {
  const lines = reports(await runBench(['--mode', 'max', '--scenarios', 'cross', '--repeat', '2', '--window', '20', '--batch', '5']));
  assert.equal(lines.length, 3);
  const [first, second, summary] = lines;
  assertComplete(first!, 'cross', { B: SUBSCRIBERS });
  assertComplete(second!, 'cross', { B: SUBSCRIBERS });
  assert.deepEqual([first!.round, second!.round], [1, 2]);
  assert.equal(first!.ratePerSec, undefined);
  const medians = summary!.medians as Record<string, Record<string, number>>;
  assert.equal(medians.cross!.runs, 2);
  assert.equal(medians.cross!.deliveriesPerSec, Math.round(((first!.deliveriesPerSec as number) + (second!.deliveriesPerSec as number)) / 2));
  assert.equal(medians.cross!.p50OverSingleMs, undefined, 'no single run to compare with');
});

test("cross-instance paced by RECEIPTs (the broker's flow control sets the rate): nothing dropped, no instance taken for dead", { timeout: TEST_TIMEOUT_MS }, async () => {
  const [cross, summary, ...rest] = reports(await runBench(['--mode', 'receipts', '--scenarios', 'cross', '--window', '20', '--batch', '5']));
  assert.equal(rest.length, 0);
  assert.equal(cross!.mode, 'receipts');
  assertComplete(cross!, 'cross', { B: SUBSCRIBERS });
  assert.equal(summary!.allDelivered, true);
});

test('cross-instance refuses a bad option with exit code 64', { timeout: TEST_TIMEOUT_MS }, async () => {
  const run = await runBench(['--scenarios', 'cross,triple']);
  assert.equal(run.exitCode, 64);
  assert.match(run.stderr, /unknown scenario "triple"/);
  assert.equal(run.stdout, '');
});

test('cross-instance --native-sink: the C sink holds the unsampled subscribers, and every delivery is still counted', { timeout: TEST_TIMEOUT_MS }, async () => {
  // Every 2nd subscriber records latency (a Node client), the others are the sink's; the split
  // puts both kinds on each instance.
  const [split, summary, ...rest] = reports(await runBench(['--mode', 'receipts', '--scenarios', 'split', '--native-sink', '--sample-every', '2']));
  assert.equal(rest.length, 0);
  assertComplete(split!, 'split', { A: SUBSCRIBERS / 2, B: SUBSCRIBERS / 2 });
  assert.equal(typeof (split!.cpu as Record<string, unknown>).sinks, 'number', 'the sinks’ CPU is reported');
  assert.equal(summary!.allDelivered, true);
});

test('cross-instance --native-sink refuses WebSocket', { timeout: TEST_TIMEOUT_MS }, async () => {
  const run = await runBench(['--native-sink', '--transport', 'ws']);
  assert.equal(run.exitCode, 64);
  assert.match(run.stderr, /--native-sink: TCP only/);
});
