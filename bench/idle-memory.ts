// Idle memory per session: what N connected, subscribed, heart-beating and otherwise silent
// clients cost the broker in resident memory (VmRSS of its process). The picture of a quiet
// chat room at night: every client connected with heart-beats on, subscribed to one room.
//
//   npm run bench:idle-memory -- [--sessions 10000] [--transport tcp|ws|both] [--redis]
//   node dist/bench/idle-memory.js --help
//
// Per transport, a fresh stompd process (embedded, or with --redis on a redis-server this
// bench starts) runs with --inspect on loopback, so that a full GC can be forced from outside
// before each reading (no hook in the broker itself). The broker's VmRSS and heap are read
// after start-up (baseline), once every session is in ("connected"), and again after two
// heart-beat intervals in which both sides beat ("steady"); KB/session = (reading −
// baseline) / sessions. One JSON line per transport on stdout; progress on stderr.
//
// Invariants: the clients run in this process, the broker in its own; every session must
// still be open at the last reading (a session the broker closed would flatter it); the
// clients connect from --source-addresses loopback addresses (127.0.0.1, .2, ...) so that
// 10,000 connections never run short of ephemeral ports.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { spawnStompd } from './broker-process';
import type { StompdProcess } from './broker-process';
import { InspectorSession } from './inspector';
import type { RemoteMemoryUsage } from './inspector';
import { LoadClient } from './load-client';
import type { Endpoint, Transport } from './load-client';
import { startRedisServer } from './redis-process';
import type { RedisProcess } from './redis-process';

interface Options {
  sessions: number;
  transports: Transport[];
  heartbeatMs: number;
  topics: number;
  sourceAddresses: number;
  connectBatch: number;
  isRedis: boolean;
  /** The compiled main.js to run (another build, to compare before and after a change). */
  mainPath: string;
  /** Write heap snapshots of the broker at the baseline and steady readings, per transport, into this directory. */
  heapSnapshotDir: string | undefined;
  brokerEnv: Record<string, string>;
  isQuiet: boolean;
}

const USAGE = `Usage: node dist/bench/idle-memory.js [options]

Resident memory per idle session of a stompd process; one JSON line per transport on stdout.

  --sessions N            idle sessions per transport (default 10000)
  --transport tcp|ws|both (default both; a fresh broker per transport)
  --heartbeat-ms MS       heart-beat both ways, asked in CONNECT; clients beat at this rate (default 10000)
  --topics K              session i subscribes to /topic/idle-room-(i mod K) (default 100)
  --source-addresses A    connect from 127.0.0.1 .. 127.0.0.A (default 4)
  --connect-batch C       connections opened at once (default 200)
  --redis                 a redis-server of its own, and REDIS_URL for the broker
  --main PATH             the compiled main.js to measure (default this build's)
  --heap-snapshot DIR     write the broker's heap at the baseline and steady readings to DIR/idle-<transport>[-baseline].heapsnapshot
  --broker-env K=V        environment for the broker (repeatable)
  --quiet                 no progress on stderr
  --help                  this text

Needs ulimit -n above the session count (the broker inherits this process's limit).
`;

const HANDSHAKE_TIMEOUT_MS = 30_000;
const BROKER_READY_TIMEOUT_MS = 15_000;
const SETTLE_MS = 2000;
const HEARTBEAT = Buffer.from('\n');

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      sessions: { type: 'string' },
      transport: { type: 'string' },
      'heartbeat-ms': { type: 'string' },
      topics: { type: 'string' },
      'source-addresses': { type: 'string' },
      'connect-batch': { type: 'string' },
      redis: { type: 'boolean' },
      main: { type: 'string' },
      'heap-snapshot': { type: 'string' },
      'broker-env': { type: 'string', multiple: true },
      quiet: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return undefined;
  const integer = (name: string, raw: string | undefined, fallback: number, min: number): number => {
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < min) throw new Error(`--${name}=${JSON.stringify(raw)}: expected an integer >= ${min}`);
    return Number(raw);
  };
  const transport = values.transport ?? 'both';
  if (transport !== 'tcp' && transport !== 'ws' && transport !== 'both') throw new Error(`--transport=${JSON.stringify(transport)}: expected tcp, ws or both`);
  const brokerEnv: Record<string, string> = {};
  for (const pair of values['broker-env'] ?? []) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new Error(`--broker-env=${JSON.stringify(pair)}: expected KEY=VALUE`);
    brokerEnv[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return {
    sessions: integer('sessions', values.sessions, 10_000, 1),
    transports: transport === 'both' ? ['tcp', 'ws'] : [transport],
    heartbeatMs: integer('heartbeat-ms', values['heartbeat-ms'], 10_000, 100),
    topics: integer('topics', values.topics, 100, 1),
    sourceAddresses: integer('source-addresses', values['source-addresses'], 4, 1),
    connectBatch: integer('connect-batch', values['connect-batch'], 200, 1),
    isRedis: values.redis ?? false,
    mainPath: path.resolve(values.main ?? path.join(__dirname, '../src/main.js')),
    heapSnapshotDir: values['heap-snapshot'],
    brokerEnv,
    isQuiet: values.quiet ?? false,
  };
}

interface Reading {
  rssKiB: number;
  heapUsedKiB: number;
  externalKiB: number;
  arrayBuffersKiB: number;
}

/** The broker's VmRSS from /proc, and its heap as it sees it, after a full GC. */
async function readBroker(inspector: InspectorSession, pid: number): Promise<Reading> {
  await inspector.collectGarbage();
  const usage: RemoteMemoryUsage = await inspector.memoryUsage();
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (rss === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return { rssKiB: Number(rss), heapUsedKiB: kib(usage.heapUsed), externalKiB: kib(usage.external), arrayBuffersKiB: kib(usage.arrayBuffers) };
}

function kib(bytes: number): number {
  return Math.round(bytes / 1024);
}

function perSession(reading: Reading, baseline: Reading, sessions: number): Record<keyof Reading, number> {
  const per = (key: keyof Reading): number => Math.round(((reading[key] - baseline[key]) / sessions) * 100) / 100;
  return { rssKiB: per('rssKiB'), heapUsedKiB: per('heapUsedKiB'), externalKiB: per('externalKiB'), arrayBuffersKiB: per('arrayBuffersKiB') };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Adds each client to `clients` as soon as it is connected. */
async function openSessions(options: Options, transport: Transport, broker: StompdProcess, clients: LoadClient[], progress: (line: string) => void): Promise<void> {
  const heartbeat = `${options.heartbeatMs},${options.heartbeatMs}`;
  for (let start = 0; start < options.sessions; start += options.connectBatch) {
    const end = Math.min(options.sessions, start + options.connectBatch);
    const batch: Promise<void>[] = [];
    for (let index = start; index < end; index++) {
      const endpoint: Endpoint = {
        host: '127.0.0.1',
        tcpPort: broker.tcpPort,
        wsPort: broker.wsPort,
        wsPath: '/ws',
        login: `idle-${index}`,
        passcode: undefined,
        heartbeat,
        localAddress: `127.0.0.${1 + (index % options.sourceAddresses)}`,
      };
      batch.push(
        (async () => {
          const client = await LoadClient.open(transport, endpoint, HANDSHAKE_TIMEOUT_MS);
          clients.push(client);
          await client.subscribe(`/topic/idle-room-${index % options.topics}`, `idle-${index}`, () => undefined, undefined, HANDSHAKE_TIMEOUT_MS);
        })(),
      );
    }
    const outcomes = await Promise.allSettled(batch);
    const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failure !== undefined) {
      throw new Error(`session ${clients.length} of ${options.sessions} failed: ${failure.reason instanceof Error ? failure.reason.message : String(failure.reason)}`);
    }
    if (end % 2000 === 0 || end === options.sessions) progress(`${transport}: ${end}/${options.sessions} sessions connected and subscribed`);
  }
}

async function measure(options: Options, transport: Transport, redis: RedisProcess | undefined, progress: (line: string) => void): Promise<Record<string, unknown>> {
  const env: Record<string, string> = { ...options.brokerEnv };
  if (redis !== undefined) {
    env.REDIS_URL = redis.url;
    env.REDIS_PREFIX = `idle-${process.pid}-${transport}:`;
  }
  const broker = await spawnStompd({ mainPath: options.mainPath, env, nodeArgs: ['--inspect=127.0.0.1:0'], cpu: undefined, readyTimeoutMs: BROKER_READY_TIMEOUT_MS });
  const clients: LoadClient[] = [];
  let beater: NodeJS.Timeout | undefined;
  let inspector: InspectorSession | undefined;
  try {
    const inspectorUrl = /ws:\/\/127\.0\.0\.1:\d+\/[\w-]+/.exec(broker.logTail())?.[0];
    if (inspectorUrl === undefined) throw new Error(`no inspector address in the broker's output:\n${broker.logTail()}`);
    inspector = await InspectorSession.open(inspectorUrl);
    await sleep(SETTLE_MS);
    const baseline = await readBroker(inspector, broker.pid);
    if (options.heapSnapshotDir !== undefined) await inspector.writeHeapSnapshot(path.join(options.heapSnapshotDir, `idle-${transport}-baseline.heapsnapshot`));
    progress(`${transport}: broker pid ${broker.pid}${redis ? ` (REDIS_URL ${redis.url})` : ''}, baseline RSS ${baseline.rssKiB} KiB`);

    // The clients keep their side of the heart-beat contract, from their first moment: one
    // byte per session per interval.
    beater = setInterval(() => {
      for (const client of clients) client.write(HEARTBEAT);
    }, options.heartbeatMs);
    const startedAt = Date.now();
    await openSessions(options, transport, broker, clients, progress);
    const connectSeconds = (Date.now() - startedAt) / 1000;
    await sleep(SETTLE_MS);
    const connected = await readBroker(inspector, broker.pid);
    progress(`${transport}: connected: RSS ${connected.rssKiB} KiB; waiting two heart-beat intervals`);
    await sleep(2 * options.heartbeatMs + SETTLE_MS);
    const steady = await readBroker(inspector, broker.pid);
    const closed = clients.filter((client) => client.isClosed);
    if (closed.length > 0) throw new Error(`${closed.length} sessions ended while idle (first: ${closed[0]!.closeReason})`);
    if (broker.exit !== undefined) throw new Error(`the broker exited (code ${broker.exit.code}, signal ${broker.exit.signal})`);
    if (options.heapSnapshotDir !== undefined) {
      const file = path.join(options.heapSnapshotDir, `idle-${transport}.heapsnapshot`);
      await inspector.writeHeapSnapshot(file);
      progress(`${transport}: heap snapshot in ${file}`);
    }
    return {
      transport,
      mode: redis === undefined ? 'embedded' : 'redis',
      sessions: options.sessions,
      heartbeatMs: options.heartbeatMs,
      topics: options.topics,
      perSessionKiB: { connected: perSession(connected, baseline, options.sessions), steady: perSession(steady, baseline, options.sessions) },
      baseline,
      connected,
      steady,
      connectSeconds,
      brokerLog: broker.logStats,
      main: options.mainPath,
    };
  } finally {
    clearInterval(beater);
    inspector?.close();
    for (const client of clients) client.close();
    await broker.stop();
  }
}

function fdLimit(): number {
  const raw = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  return raw === 'unlimited' ? Number.POSITIVE_INFINITY : Number(raw);
}

async function main(): Promise<number> {
  let options: Options | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`idle-memory: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 64;
  }
  if (options === undefined) {
    process.stdout.write(USAGE);
    return 0;
  }
  const progress = options.isQuiet ? () => undefined : (line: string) => process.stderr.write(`idle-memory: ${line}\n`);
  const limit = fdLimit();
  if (limit < options.sessions + 256) {
    process.stderr.write(`idle-memory: ulimit -n is ${limit}, too low for ${options.sessions} sessions; raise it (ulimit -n ${options.sessions + 1024})\n`);
    return 1;
  }
  const redis = options.isRedis ? await startRedisServer(undefined, 10_000) : undefined;
  try {
    for (const transport of options.transports) {
      const result = await measure(options, transport, redis, progress);
      process.stdout.write(`${JSON.stringify(result)}\n`);
      const { steady } = result.perSessionKiB as { steady: Reading };
      progress(`${transport}: ${steady.rssKiB} KiB RSS per session at steady state (heap ${steady.heapUsedKiB} KiB)`);
    }
  } finally {
    await redis?.stop();
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`idle-memory: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
