// bench/app-hook as a user runs it: the compiled script as a child process in a tiny
// configuration (its own stompd and trivial backend). Asserts the report's shape and that
// every round trip and direct message arrived; no wall-clock thresholds.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

const APP_HOOK_JS = path.resolve(__dirname, '../../bench/app-hook.js');

test('bench/app-hook reports round trips, fixed-rate latency and the direct SEND next to them', { timeout: 90_000 }, async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [APP_HOOK_JS, '--quiet', '--subscribers', '5', '--publishers', '4', '--messages', '300', '--rate', '200', '--seconds', '1', '--timeout', '30'], { timeout: 80_000 }, (error, out, err) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout: out, stderr: err });
    });
  });
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout.trim()) as Record<string, Record<string, Record<string, unknown>>>;
  for (const kind of ['appHook', 'directSend']) {
    const throughput = report[kind]!.throughput!;
    assert.equal(throughput.messages, 300);
    assert.ok((throughput.perSecond as number) > 0);
    const atRate = report[kind]!.atRate!;
    assert.equal(atRate.rate, 200);
    assert.equal(atRate.delivered, 200);
    const latency = atRate.latencyMs as { samples: number; p50: number; p99: number };
    assert.equal(latency.samples, 200);
    assert.ok(latency.p99 >= latency.p50);
  }
  assert.equal((report as unknown as { brokerLog: { errorLines: number } }).brokerLog.errorLines, 0);
});
