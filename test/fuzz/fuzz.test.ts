// CI's fuzz pass (issue 20, point 9): 10^5 mutated frames through `bench/fuzz.ts` against a
// live broker process; the run itself checks crash, bystanders and heap, and exits non-zero
// with its reasons. `npm run fuzz` runs 10^6.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';

describe('fuzz: mutated frames against a live broker', { timeout: 240_000 }, () => {
  it('10^5 frames over TCP and WebSocket: no crash, bystanders served, heap back near the baseline', async () => {
    const seed = String(Date.now() % 1_000_000_000);
    const child = spawn(process.execPath, [path.join(__dirname, '../../bench/fuzz.js'), '--frames', '100000', '--seed', seed], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, `fuzz run failed (seed ${seed}):\n${stdout}\n${stderr}`);
    const figures = JSON.parse(stdout.trim().split('\n').pop()!) as { frames: number; connections: number; failures: string[] };
    assert.equal(figures.frames, 100_000);
    assert.deepEqual(figures.failures, []);
    assert.ok(figures.connections > 1000, `frames spread over many connections (${figures.connections})`);
  });
});
