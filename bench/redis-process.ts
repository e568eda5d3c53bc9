// The Redis the cross-instance bench runs its brokers against: a `redis-server` child (the
// binary on PATH) on an ephemeral loopback port, no persistence, optionally pinned to a core.
//
// Invariants: the child's output is drained for its whole life; stop() always ends it
// (SIGKILL after a grace period); a port taken between the probe and the start is retried.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';

export interface RedisProcess {
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL now, synchronously: for a bench that must leave at once. */
  kill(): void;
}

const START_ATTEMPTS = 5;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function hasRedisServer(): boolean {
  return spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim() !== '';
}

function startOnce(port: number, cpu: number | undefined, readyTimeoutMs: number): Promise<RedisProcess> {
  const serverCommand = ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', ''];
  const [command, ...args] = cpu === undefined ? serverCommand : ['taskset', '-c', String(cpu), ...serverCommand];
  const child: ChildProcess = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.resume();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    let output = '';
    const fail = (reason: string): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`redis-server on port ${port} did not start: ${reason}\n${output.slice(-500)}`));
    };
    const timer = setTimeout(() => fail(`not ready within ${readyTimeoutMs} ms`), readyTimeoutMs);
    const onEarlyExit = (code: number | null): void => fail(`exited with code ${code}`);
    child.once('error', (error) => fail(error.message));
    child.once('exit', onEarlyExit);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (!output.includes('Ready to accept connections')) return;
      clearTimeout(timer);
      child.off('exit', onEarlyExit);
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      resolve({
        pid: child.pid!,
        port,
        url: `redis://127.0.0.1:${port}`,
        stop: async (graceMs = 5000) => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.kill('SIGTERM');
          const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
          await exited;
          clearTimeout(killer);
        },
        kill: () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        },
      });
    };
    child.stdout!.on('data', onData);
  });
}

export async function startRedisServer(cpu: number | undefined, readyTimeoutMs: number): Promise<RedisProcess> {
  let lastError: unknown;
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    try {
      return await startOnce(await freePort(), cpu, readyTimeoutMs);
    } catch (error) {
      lastError = error; // most likely the port was taken between the probe and the start
    }
  }
  throw lastError;
}
