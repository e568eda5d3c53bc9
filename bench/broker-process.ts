// The broker under test as a child process: `node dist/src/main.js` on ephemeral loopback
// ports, so that it runs on its own core and the load generator never shares its event loop.
//
// Invariants: the child's stdout is read for its whole life (pino writes synchronously, and
// a full pipe would stall the broker); the bound ports come from its "stompd listening"
// log line; stop() always ends the child, with SIGKILL if SIGTERM is not enough.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { DROP_LOG_MESSAGE } from '../src/session/dropped-message-log';

export interface SpawnStompdOptions {
  /** Path of the compiled main.js. */
  mainPath: string;
  /** Environment on top of STOMP_PORT=0 WS_PORT=0 HOST=127.0.0.1 LOG_LEVEL=info. */
  env: Readonly<Record<string, string>>;
  /** Extra node flags, e.g. --cpu-prof. */
  nodeArgs: readonly string[];
  /** Run it under `taskset -c cpu`. */
  cpu: number | undefined;
  readyTimeoutMs: number;
}

/** What the broker's log said during the run that a benchmark should report. */
export interface BrokerLogStats {
  /** Sessions that dropped messages (slow consumer): distinct sessionIds of the drop lines. */
  slowConsumerSessions: number;
  /** Sum of droppedMessages over the drop lines (each counts the drops since the session's previous one). */
  droppedMessagesLogged: number;
  /** Sessions the broker closed itself: kicked, ERROR sent, heart-beat timeout. */
  sessionsClosedByBroker: number;
  errorLines: number;
  /** With Redis: this instance lost its liveness (no refresh for a TTL, taken for dead and reaped, key expired). */
  livenessLost: number;
  /** With Redis: other instances this one reaped as dead. */
  reapedOthers: number;
}

/** Log lines that say an instance's liveness lapsed (src/cluster/membership.ts). */
const LIVENESS_LOST_LINES = ['no liveness refresh for a TTL', 'this instance was taken for dead and reaped', "this instance's liveness key had expired without a reap"];

export interface BrokerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StompdProcess {
  readonly pid: number;
  readonly tcpPort: number | undefined;
  readonly wsPort: number | undefined;
  readonly logStats: BrokerLogStats;
  /** Set once the child has exited. */
  readonly exit: BrokerExit | undefined;
  /** The last lines of its stdout and stderr, for diagnosing a failure. */
  logTail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<BrokerExit>;
  /** SIGKILL now, synchronously: for a bench that must leave at once. */
  kill(): void;
}

const TAIL_LINES = 20;
const BROKER_CLOSE_REASONS = new Set(['kicked', 'error-sent', 'heartbeat-timeout']);

export function spawnStompd(options: SpawnStompdOptions): Promise<StompdProcess> {
  const nodeCommand = [process.execPath, ...options.nodeArgs, options.mainPath];
  const [command, ...args] = options.cpu === undefined ? nodeCommand : ['taskset', '-c', String(options.cpu), ...nodeCommand];
  const child = spawn(command!, args, {
    // Every bench client comes from 127.0.0.1: the per-address cap (1000 by default) would
    // refuse the 1001st connection of a 1000-subscriber fan-out.
    env: { ...process.env, STOMP_PORT: '0', WS_PORT: '0', HTTP_PORT: 'off', HOST: '127.0.0.1', LOG_LEVEL: 'info', MAX_CONNECTIONS_PER_ADDRESS: '0', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  const remember = (line: string): void => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
  };
  const logStats: BrokerLogStats = { slowConsumerSessions: 0, droppedMessagesLogged: 0, sessionsClosedByBroker: 0, errorLines: 0, livenessLost: 0, reapedOthers: 0 };
  const droppingSessions = new Set<string>();
  let exit: BrokerExit | undefined;
  const exited = new Promise<BrokerExit>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
  });

  return new Promise((resolve, reject) => {
    let isReady = false;
    const fail = (reason: string): void => {
      if (isReady) return;
      isReady = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`stompd did not start: ${reason}\n${tail.join('\n')}`));
    };
    const timer = setTimeout(() => fail(`no "stompd listening" line within ${options.readyTimeoutMs} ms`), options.readyTimeoutMs);
    child.once('error', (error) => fail(error.message));
    child.once('exit', (code, signal) => fail(`exited (code ${code}, signal ${signal})`));

    onLines(child.stderr, remember);
    onLines(child.stdout, (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        remember(line);
        return;
      }
      const level = typeof entry.level === 'number' ? entry.level : 0;
      if (level >= 40 || entry.msg === 'stompd listening') remember(line);
      if (level >= 50) logStats.errorLines++;
      if (entry.msg === DROP_LOG_MESSAGE && typeof entry.droppedMessages === 'number') {
        droppingSessions.add(String(entry.sessionId));
        logStats.slowConsumerSessions = droppingSessions.size;
        logStats.droppedMessagesLogged += entry.droppedMessages;
      }
      if (entry.msg === 'session closed' && BROKER_CLOSE_REASONS.has(String(entry.reason))) logStats.sessionsClosedByBroker++;
      if (typeof entry.msg === 'string' && LIVENESS_LOST_LINES.some((start) => (entry.msg as string).startsWith(start))) logStats.livenessLost++;
      if (entry.msg === 'reaped a dead instance') logStats.reapedOthers++;
      if (entry.msg === 'stompd listening' && !isReady) {
        isReady = true;
        clearTimeout(timer);
        resolve({
          pid: child.pid!,
          tcpPort: typeof entry.stompPort === 'number' ? entry.stompPort : undefined,
          wsPort: typeof entry.wsPort === 'number' ? entry.wsPort : undefined,
          logStats,
          get exit() {
            return exit;
          },
          logTail: () => tail.join('\n'),
          stop: (graceMs = 5000) => stop(child, exited, graceMs),
          kill: () => {
            if (exit === undefined) child.kill('SIGKILL');
          },
        });
      }
    });
  });
}

async function stop(child: ChildProcess, exited: Promise<BrokerExit>, graceMs: number): Promise<BrokerExit> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    const result = await exited;
    clearTimeout(timer);
    return result;
  }
  return exited;
}

function onLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const line of lines) if (line !== '') onLine(line);
  });
}
