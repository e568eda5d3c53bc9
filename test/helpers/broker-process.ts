// A stompd instance as its own process (`node dist/src/main.js`), for multi-instance tests:
// several of them against one Redis, killed with SIGKILL to play a crashed instance. Ports
// are ephemeral and read from the "stompd listening" log line.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';

const MAIN = path.resolve(__dirname, '../../src/main.js');
const START_TIMEOUT_MS = 15000;

export interface LogLine {
  msg?: string;
  level?: number;
  [field: string]: unknown;
}

export class BrokerProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  tcpPort = 0;
  wsPort = 0;
  /** 0 when off (no TLS_CERT_FILE). */
  stompTlsPort = 0;
  wssPort = 0;
  /** 0 unless the env sets HTTP_PORT. */
  httpPort = 0;
  instanceId: string;
  private stderr = '';
  private readonly exited: Promise<number | null>;
  private readonly waiters: (() => void)[] = [];

  private constructor(child: ChildProcess, instanceId: string) {
    this.child = child;
    this.instanceId = instanceId;
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf('\n')) !== -1) {
        const text = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          this.lines.push(JSON.parse(text) as LogLine);
        } catch {
          this.lines.push({ msg: text });
        }
        for (const wake of this.waiters.splice(0)) wake();
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
  }

  static async start(env: Record<string, string>): Promise<BrokerProcess> {
    const instanceId = env.INSTANCE_ID ?? `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const child = spawn(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', STOMP_PORT: '0', WS_PORT: '0', HTTP_PORT: 'off', LOG_LEVEL: 'info', INSTANCE_ID: instanceId, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const broker = new BrokerProcess(child, instanceId);
    running.add(broker);
    const listening = await broker
      .waitForLog((line) => line.msg === 'stompd listening', START_TIMEOUT_MS)
      .catch((error: unknown) => {
        child.kill('SIGKILL');
        throw new Error(`${(error as Error).message}; stderr: ${broker.stderr}`);
      });
    broker.tcpPort = listening.stompPort as number;
    broker.wsPort = listening.wsPort as number;
    broker.stompTlsPort = (listening.stompTlsPort as number | undefined) ?? 0;
    broker.wssPort = (listening.wssPort as number | undefined) ?? 0;
    if (env.HTTP_PORT !== undefined && env.HTTP_PORT !== 'off') {
      broker.httpPort = (await broker.waitForLog((line) => typeof line.httpPort === 'number', START_TIMEOUT_MS)).httpPort as number;
    }
    return broker;
  }

  /** What the process wrote to stderr so far (Node's own notices, e.g. the inspector's address). */
  get errorOutput(): string {
    return this.stderr;
  }

  /** The first log line (already seen or still to come) that `match` accepts. */
  async waitForLog(match: (line: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find(match);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0 || this.child.exitCode !== null) throw new Error(`no matching log line within ${timeoutMs} ms (exit ${this.child.exitCode})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** SIGKILL: the instance vanishes without cleaning anything up. */
  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM and wait for the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    return this.exited;
  }
}

// Tests stop their brokers themselves (finally / after); whatever is left when the test file's
// process exits is killed. (No module-level after(): a helper file has no tests of its own,
// and the runner would be left with a hook and nothing to run it after.)
const running = new Set<BrokerProcess>();
process.once('exit', () => {
  for (const b of running) b.child.kill('SIGKILL');
});
