// bench/queue as a user runs it, in a tiny configuration: the embedded broker and two
// instances on a real redis-server. Asserts every message arrived once and the report's
// shape; no wall-clock thresholds.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

const QUEUE_JS = path.resolve(__dirname, '../../bench/queue.js');

test('bench/queue: embedded and redis modes deliver every message once and report messages/s and p99', { timeout: 60_000 }, async () => {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [QUEUE_JS, '--messages', '400', '--runs', '1', '--modes', 'embedded,redis', '--window', '100'], { timeout: 50_000 }, (error, out, err) => {
      if (error !== null) reject(new Error(`${error.message}\n${err}`));
      else resolve(out);
    });
  });
  const lines = stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const runs = lines.filter((l) => l.run !== undefined);
  assert.deepEqual(
    runs.map((r) => r.mode),
    ['embedded', 'redis'],
  );
  for (const run of runs) {
    assert.equal(run.messages, 400);
    assert.equal(run.duplicates, 0);
    assert.ok((run.messagesPerSec as number) > 0);
    assert.ok((run.latencyMs as { p99: number }).p99 > 0);
  }
  assert.deepEqual(
    lines.filter((l) => l.median !== undefined).map((l) => l.median),
    ['embedded', 'redis'],
  );
});
