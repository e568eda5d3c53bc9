// bench/fanout as a user runs it: the compiled script as a child process in a tiny
// configuration, once spawning its own stompd and once against a running broker (--target).
// Asserts the JSON report's shape and that every message reached every subscriber; no
// wall-clock thresholds, since CI machines differ.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { startBroker } from '../helpers/broker';

const FANOUT_JS = path.resolve(__dirname, '../../bench/fanout.js');
const TEST_TIMEOUT_MS = 30_000;
const SUBSCRIBERS = 20;
const MESSAGES = 200;

interface BenchRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

function runFanout(args: string[]): Promise<BenchRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FANOUT_JS, '--quiet', '--no-pin', '--timeout', '20', ...args], { timeout: TEST_TIMEOUT_MS - 5000 }, (error, stdout, stderr) => {
      const exitCode = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ exitCode, stdout, stderr });
    });
  });
}

function reports(run: BenchRun): Record<string, unknown>[] {
  assert.equal(run.exitCode, 0, `fanout exited with ${run.exitCode}\n${run.stderr}`);
  return run.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function assertComplete(report: Record<string, unknown>, transport: string, broker: string): void {
  assert.equal(report.broker, broker);
  assert.equal(report.transport, transport);
  assert.equal(report.subscribers, SUBSCRIBERS);
  assert.equal(report.messages, MESSAGES);
  assert.equal(typeof report.bodyBytes, 'number');
  assert.equal(report.expected, SUBSCRIBERS * MESSAGES);
  assert.equal(report.delivered, report.expected);
  assert.equal(report.drops, 0);
  assert.equal(report.endedBy, 'complete');
  assert.equal(report.lostSubscribers, 0);
  assert.equal(typeof report.seconds, 'number');
  assert.ok((report.deliveriesPerSec as number) > 0, 'deliveriesPerSec > 0');
  const latency = report.latencyMs as Record<'samples' | 'p50' | 'p99' | 'max', number>;
  assert.ok(latency.samples > 0, 'latency was sampled');
  assert.ok(latency.p50 >= 0 && latency.p50 <= latency.p99 && latency.p99 <= latency.max, `ordered percentiles: ${JSON.stringify(latency)}`);
  const cpu = report.cpu as Record<string, unknown>;
  assert.equal(typeof cpu.bench, 'number');
}

test('fanout spawns stompd and reports every delivery over TCP and WebSocket', { timeout: TEST_TIMEOUT_MS }, async () => {
  const run = await runFanout(['--subscribers', String(SUBSCRIBERS), '--messages', String(MESSAGES), '--transport', 'both']);
  const [tcp, ws, ...rest] = reports(run);
  assert.equal(rest.length, 0);
  assertComplete(tcp!, 'tcp', 'stompd');
  assertComplete(ws!, 'ws', 'stompd');
  for (const report of [tcp!, ws!]) {
    const memory = report.brokerMemory as Record<'rssMiB' | 'peakRssMiB', number>;
    assert.ok(memory.rssMiB > 0 && memory.peakRssMiB >= memory.rssMiB, `broker memory: ${JSON.stringify(memory)}`);
  }
  const brokerLog = tcp!.brokerLog as Record<string, number>;
  assert.deepEqual(brokerLog, { slowConsumerSessions: 0, droppedMessagesLogged: 0, sessionsClosedByBroker: 0, errorLines: 0, livenessLost: 0, reapedOthers: 0 });
});

test('fanout measures a running broker given by --target', { timeout: TEST_TIMEOUT_MS }, async () => {
  const broker = await startBroker();
  try {
    const target = `127.0.0.1:${broker.tcpPort}:${broker.wsPort}`;
    const run = await runFanout(['--target', target, '--label', 'in-test', '--subscribers', String(SUBSCRIBERS), '--messages', String(MESSAGES), '--login', 'bench']);
    const [tcp, ws] = reports(run);
    assertComplete(tcp!, 'tcp', 'in-test');
    assertComplete(ws!, 'ws', 'in-test');
    assert.equal(tcp!.brokerLog, undefined);
  } finally {
    await broker.stop();
  }
});

test('fanout refuses a target that is not loopback', { timeout: TEST_TIMEOUT_MS }, async () => {
  const run = await runFanout(['--target', '10.1.2.3:61613']);
  assert.equal(run.exitCode, 64);
  assert.match(run.stderr, /loopback/);
  assert.equal(run.stdout, '');
});

test('the trivial forwarder (bench/forwarder) serves as a --target yardstick', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { spawn } = await import('node:child_process');
  const forwarder = spawn(process.execPath, [path.resolve(__dirname, '../../bench/forwarder.js'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      forwarder.stdout.once('data', (chunk: Buffer) => resolve((JSON.parse(chunk.toString()) as { port: number }).port));
      forwarder.once('exit', (code) => reject(new Error(`forwarder exited with ${code}`)));
    });
    const [report] = reports(await runFanout(['--transport', 'tcp', '--subscribers', String(SUBSCRIBERS), '--messages', String(MESSAGES), '--target', `127.0.0.1:${port}`, '--label', 'forwarder']));
    assertComplete(report!, 'tcp', 'forwarder');
  } finally {
    forwarder.kill('SIGTERM');
  }
});

test('fanout --mode max with slow subscribers: the fast ones get everything, each slow one accounts for every message', { timeout: TEST_TIMEOUT_MS }, async () => {
  const run = await runFanout(['--transport', 'tcp', '--mode', 'max', '--subscribers', String(SUBSCRIBERS), '--slow', '2', '--messages', String(MESSAGES)]);
  const [report, ...rest] = reports(run);
  assert.equal(rest.length, 0);
  assert.equal(report!.mode, 'max');
  assert.equal(report!.messages, MESSAGES + 1, 'the marker after the run');
  assert.equal(report!.expected, (MESSAGES + 1) * (SUBSCRIBERS - 2), 'counted over the fast subscribers');
  assert.equal(report!.delivered, report!.expected);
  assert.equal(report!.drops, 0);
  assert.equal(report!.endedBy, 'complete');
  assert.equal(typeof report!.brokerCpuMicrosPerDelivery, 'number');
  const slow = report!.slow as { subscribers: number; received: number[]; toldDropped: number[]; isEveryMessageAccountedFor: boolean };
  assert.equal(slow.subscribers, 2);
  assert.equal(slow.isEveryMessageAccountedFor, true);
  slow.received.forEach((received, i) => assert.equal(received + slow.toldDropped[i]!, MESSAGES + 1, `slow subscriber ${i}`));
});

test('the forwarder holds RECEIPTs while a subscriber is behind, and serves --mode max over TCP and WebSocket', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { spawn } = await import('node:child_process');
  const forwarder = spawn(process.execPath, [path.resolve(__dirname, '../../bench/forwarder.js'), '0', '--ws-port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const ports = await new Promise<{ port: number; wsPort: number }>((resolve, reject) => {
      forwarder.stdout.once('data', (chunk: Buffer) => resolve(JSON.parse(chunk.toString()) as { port: number; wsPort: number }));
      forwarder.once('exit', (code) => reject(new Error(`forwarder exited with ${code}`)));
    });
    const [tcp, ws] = reports(
      await runFanout(['--transport', 'both', '--mode', 'max', '--subscribers', String(SUBSCRIBERS), '--messages', String(MESSAGES), '--target', `127.0.0.1:${ports.port}:${ports.wsPort}`, '--label', 'forwarder']),
    );
    assertComplete(tcp!, 'tcp', 'forwarder');
    assertComplete(ws!, 'ws', 'forwarder');
  } finally {
    forwarder.kill('SIGTERM');
  }
});

test('fanout --mode max: a slow subscriber the broker dropped for is told, by the marker, everything it missed', { timeout: TEST_TIMEOUT_MS }, async () => {
  // 4,000 × 4 KiB (16 MiB) is far more than the write limit (1 MiB) and the kernel's buffers
  // hold for a subscriber reading 10 messages a second: the broker must drop for it.
  const messages = 4000;
  const run = await runFanout(['--transport', 'tcp', '--mode', 'max', '--subscribers', String(SUBSCRIBERS), '--slow', '1', '--messages', String(messages), '--size', '4096']);
  const [report] = reports(run);
  assert.equal(report!.delivered, report!.expected, 'the fast subscribers got everything');
  assert.equal(report!.endedBy, 'complete');
  const slow = report!.slow as { received: number[]; toldDropped: number[]; isEveryMessageAccountedFor: boolean };
  assert.ok(slow.toldDropped[0]! > 0, `the broker dropped for the slow subscriber and said so (received ${slow.received[0]})`);
  assert.equal(slow.received[0]! + slow.toldDropped[0]!, messages + 1);
  assert.equal(slow.isEveryMessageAccountedFor, true);
});
