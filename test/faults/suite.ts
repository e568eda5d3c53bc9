// The fault suite (issue 20): random schedules of faults under a client workload against
// three stompd processes and a real Redis, each history judged by the checker. One test per
// schedule, named by its seed; a failure prints the violations and the command that replays it.
// The schedules can be dealt over several files (FAULT_SHARDS of them), so that each ends well
// within a runner's per-file timeout; bench/fault-schedules.ts runs them all in one.
//
//   FAULT_SCHEDULES   how many random schedules (default 30, to keep `npm test` within CI's
//                     10 minutes; REGRESSION_SEEDS run too; bench/faults.ts: 50)
//   FAULT_SEED        run this one schedule only (a replay)
//   FAULT_BASE_SEED   schedules are "<base>-<i>" (default: random, printed)
//   FAULT_SHARDS      how many files share them (default 5; bench/faults.ts sets 1)
//   FAULT_HISTORY_DIR where failing histories are written as JSON (default: the temp dir)
// `npm run test:faults -- --schedules 1000` / `-- --seed <seed>` set these.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { check, describeViolations } from './checker';
import { FaultCluster } from './cluster';
import type { HistoryBounds } from './history';
import { ScheduleRun, modeOf } from './schedule';
import type { ScheduleTiming } from './schedule';

/** Short timings, so that a schedule takes seconds: the reaping bound is 4 heart-beats. */
const INSTANCE_HEARTBEAT_MS = 200;
const REAP_BOUND_MS = 4 * INSTANCE_HEARTBEAT_MS;
/** The reaping bound plus a Redis reconnect back-off (≤ 1 s) and slack for a loaded machine. */
const BOUNDS: HistoryBounds = { convergeMs: 3000, replaceMs: 3000 };
const TIMING: ScheduleTiming = { opsMs: 2000, opGapMs: 120, quietMs: BOUNDS.convergeMs + 300, drainMs: BOUNDS.convergeMs + 1500 };
const SLOTS = ['A', 'B', 'C'];

/**
 * Schedules that once found a violation, run every time beside the random ones (a seed
 * makes the same faults at the same moments; timings within them still vary run to run).
 */
export const REGRESSION_SEEDS = [
  '911-67', // instance killed, Redis restarted empty before its reap: its members stayed listed
  '911-138', // lease lost again and again without a reap: queue messages left pending
  '3000-21', // Redis restarted empty, a watcher's list read mid-repair: corrections wrong for it
  '941565-29', // two watchers of a new room at once: a list read before its first decision skipped a JOIN
  '7200-42', // Redis restarted empty: the periodic repair dropped a LEAVE Redis forgot
  '941644-29', // instance killed, Redis restarted empty before the reap, the user back within the audit's confirm period
];

// A runner that gives up on this file (its timeout) sends SIGTERM, which skips 'exit' handlers:
// exit instead, so that the helpers' handlers kill the brokers and Redis they started.
process.once('SIGTERM', () => process.exit(143));

/** The shard-th share of the schedules, run in this test file. */
export function defineFaultSuite(shard: number): void {
  const count = Number(process.env.FAULT_SCHEDULES ?? 30);
  const shards = Number(process.env.FAULT_SHARDS ?? 5);
  // One base for every file of a run: the day's minute, unless given (printed either way).
  const base = process.env.FAULT_BASE_SEED ?? String(Math.floor(Date.now() / 60_000) % 1_000_000);
  const all = process.env.FAULT_SEED !== undefined ? [process.env.FAULT_SEED] : [...REGRESSION_SEEDS, ...Array.from({ length: count }, (_, i) => `${base}-${i}`)];
  const seeds = all.filter((_, i) => i % shards === shard);
  const historyDir = process.env.FAULT_HISTORY_DIR ?? path.join(os.tmpdir(), 'stompd-fault-histories');
  const origin = process.env.FAULT_SEED !== undefined ? 'a replay' : `base seed ${base}`;
  if (seeds.length > 0) process.stderr.write(`fault suite, shard ${shard + 1}/${shards}: ${seeds.length} schedule(s), ${origin}\n`);

  for (const mode of ['reject', 'replace'] as const) {
    const mine = seeds.filter((seed) => modeOf(seed) === mode);
    if (mine.length === 0) continue;
    describe(`fault schedules, SINGLE_SESSION=${mode}`, { timeout: 60_000 + mine.length * 60_000 }, () => {
      let cluster: FaultCluster;

      before(async () => {
        cluster = await FaultCluster.start({ slots: SLOTS, mode, instanceHeartbeatMs: INSTANCE_HEARTBEAT_MS, presenceDestinations: '/topic/room.*' });
      });

      after(async () => {
        await cluster?.stop();
      });

      for (const seed of mine) it(`schedule ${seed}`, { timeout: 120_000 }, () => runOne(cluster, seed, historyDir));
    });
  }
}

async function runOne(cluster: FaultCluster, seed: string, historyDir: string): Promise<void> {
  const run = new ScheduleRun(cluster, seed, TIMING, BOUNDS, REAP_BOUND_MS);
  const logsFrom = Object.fromEntries(SLOTS.map((slot) => [slot, cluster.logs(slot).length]));
  const history = await run.run();
  // A process that crashed says why on stderr (its last few kB): kept before a wedged slot is replaced.
  const stderr = Object.fromEntries(SLOTS.map((slot) => [slot, cluster.stderr(slot).slice(-4000)]));
  // Each schedule starts from answering instances, so that a failure belongs to the schedule that caused it.
  for (const slot of run.wedged) await cluster.replace(slot);
  const violations = check(history);
  if (violations.length === 0) return;
  fs.mkdirSync(historyDir, { recursive: true });
  const file = path.join(historyDir, `${seed}.json`);
  // The brokers' own account of the schedule (warnings and up, and what they say of
  // Redis, reaping and lost sessions), beside the history.
  const isTelling = (l: { msg?: string; level?: number }): boolean => (l.level ?? 0) >= 40 || /reap|lost|Redis|dead/i.test(l.msg ?? '');
  const logs = Object.fromEntries(SLOTS.map((slot) => [slot, cluster.logs(slot).slice(logsFrom[slot]).filter(isTelling)]));
  fs.writeFileSync(file, JSON.stringify({ faults: run.faults, history, logs, stderr }, null, 1));
  const faults = run.faults.map((f) => `${f.kind}${f.kind.startsWith('redis-') ? '' : ` ${f.slot}`} at ${Math.round(f.atMs)} ms for ${Math.round(f.durationMs)} ms`).join(', ');
  assert.fail(`${describeViolations(history, violations)}\n  faults (times from the first operation): ${faults}\n  history: ${file}\n  replay: npm run test:faults -- --seed ${seed}`);
}
