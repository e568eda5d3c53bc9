// nats-server (the Debian package's binary on PATH) as a child process: the native anchor
// stompd is measured beside (bench/anchor). Client and WebSocket listeners on random loopback
// ports (port -1), read back from its log; optionally pinned to a core (taskset), which also
// gives the Go runtime one processor, as Node has one thread for JavaScript.
//
// Invariants: its output is read for its whole life; stop() always ends it (SIGKILL after a
// grace period).

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface NatsProcess {
  readonly pid: number;
  readonly tcpPort: number;
  readonly wsPort: number;
  readonly version: string;
  /** Set once it has exited. */
  readonly hasExited: boolean;
  logTail(): string;
  stop(graceMs?: number): Promise<void>;
  kill(): void;
}

export function hasNatsServer(): boolean {
  return spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).stdout.trim() !== '';
}

/** Defaults otherwise (max_pending 64 MB per client: the bench's window keeps far below it). */
const CONFIG = `host: "127.0.0.1"
port: -1
websocket {
  host: "127.0.0.1"
  port: -1
  no_tls: true
}
`;

export function startNatsServer(cpu: number | undefined, readyTimeoutMs: number): Promise<NatsProcess> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stompd-bench-nats-'));
  const configPath = path.join(dir, 'nats.conf');
  writeFileSync(configPath, CONFIG);
  const serverCommand = ['nats-server', '-c', configPath];
  const [command, ...args] = cpu === undefined ? serverCommand : ['taskset', '-c', String(cpu), ...serverCommand];
  const child = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  let hasExited = false;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      hasExited = true;
      rmSync(dir, { recursive: true, force: true });
      resolve();
    }),
  );
  child.stdout.resume();
  return new Promise((resolve, reject) => {
    let tcpPort: number | undefined;
    let wsPort: number | undefined;
    let version = '?';
    let isSettled = false;
    const fail = (reason: string): void => {
      if (isSettled) return;
      isSettled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`nats-server did not start: ${reason}\n${tail.join('\n')}`));
    };
    const timer = setTimeout(() => fail(`not ready within ${readyTimeoutMs} ms`), readyTimeoutMs);
    child.once('error', (error) => fail(error.message));
    child.once('exit', (code) => fail(`exited with code ${code}`));
    let partial = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        tail.push(line);
        if (tail.length > 20) tail.shift();
        version = /Version:\s+(\S+)/.exec(line)?.[1] ?? version;
        tcpPort ??= numberOr(/Listening for client connections on [\d.]+:(\d+)/.exec(line)?.[1]);
        wsPort ??= numberOr(/Listening for websocket clients on ws:\/\/[\d.]+:(\d+)/.exec(line)?.[1]);
        if (!line.includes('Server is ready') || isSettled) continue;
        if (tcpPort === undefined || wsPort === undefined) {
          fail('no listening ports in its log');
          continue;
        }
        isSettled = true;
        clearTimeout(timer);
        resolve({
          pid: child.pid!,
          tcpPort,
          wsPort,
          version,
          get hasExited() {
            return hasExited;
          },
          logTail: () => tail.join('\n'),
          stop: async (graceMs = 5000) => {
            if (hasExited) return;
            child.kill('SIGTERM');
            const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
            await exited;
            clearTimeout(killer);
          },
          kill: () => {
            if (!hasExited) child.kill('SIGKILL');
          },
        });
      }
    });
  });
}

function numberOr(raw: string | undefined): number | undefined {
  return raw === undefined ? undefined : Number(raw);
}
