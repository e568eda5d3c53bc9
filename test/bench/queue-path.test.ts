// bench/queue-path as a user runs it, in a tiny configuration, against this build and (as
// --dist) the same build named explicitly: every case reports its CPU times. No thresholds.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

const QUEUE_PATH_JS = path.resolve(__dirname, '../../bench/queue-path.js');

test('bench/queue-path: deep, flow and topic report the CPU ms of each run and their median', { timeout: 60_000 }, async () => {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [QUEUE_PATH_JS, '--runs', '2', '--messages', '2000', '--depth', '500', '--dist', path.resolve(__dirname, '../..')], { timeout: 50_000 }, (error, out, err) => {
      if (error !== null) reject(new Error(`${error.message}\n${err}`));
      else resolve(out);
    });
  });
  const lines = stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { case: string; runs: number; cpuMs: number[]; medianCpuMs: number });
  assert.deepEqual(
    lines.map((l) => l.case),
    ['deep', 'flow', 'topic'],
  );
  for (const line of lines) {
    assert.equal(line.cpuMs.length, 2);
    assert.ok(line.cpuMs.every((ms) => ms >= 0));
    assert.ok(line.cpuMs.includes(line.medianCpuMs));
  }
});
