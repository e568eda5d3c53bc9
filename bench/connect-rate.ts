// `node dist/bench/connect-rate.js [--sessions N] [--concurrency C] [--transport tcp|ws] [--rounds R] [--single-session reject|off] [--cpu-prof DIR]`
//
// How fast one broker admits new sessions, embedded and with Redis (REDIS_URL): N clients,
// each a distinct user, open a connection and complete CONNECT → CONNECTED, at most C at
// a time; the sessions stay open until the round ends (as a room filling up would). Reported
// per round: sessions/s over the whole round, broker CPU per session, and (Redis) the
// commands Redis ran per session. The rounds alternate embedded / Redis on the same machine
// so the ratio is taken within one run. One redis-server for the whole run, a fresh key
// prefix per round.

import Redis from 'ioredis';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { spawnStompd } from './broker-process';
import { processCpuSeconds } from './cpu';
import { LoadClient } from './load-client';
import type { Endpoint, Transport } from './load-client';
import { startRedisServer } from './redis-process';

interface Options {
  sessions: number;
  concurrency: number;
  transport: Transport;
  rounds: number;
  singleSession: string;
  /** Write each broker's CPU profile (node --cpu-prof) into this directory. */
  cpuProfDir: string | undefined;
}

function parse(argv: readonly string[]): Options {
  const options: Options = { sessions: 5000, concurrency: 200, transport: 'tcp', rounds: 3, singleSession: 'reject', cpuProfDir: undefined };
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${name} needs a value`);
    if (name === '--sessions') options.sessions = Number.parseInt(value, 10);
    else if (name === '--concurrency') options.concurrency = Number.parseInt(value, 10);
    else if (name === '--transport' && (value === 'tcp' || value === 'ws')) options.transport = value;
    else if (name === '--rounds') options.rounds = Number.parseInt(value, 10);
    else if (name === '--single-session') options.singleSession = value;
    else if (name === '--cpu-prof') options.cpuProfDir = value;
    else throw new Error(`unknown option ${name} ${value}`);
  }
  return options;
}

interface RoundResult {
  mode: 'embedded' | 'redis';
  sessionsPerSecond: number;
  brokerCpuMicrosPerSession: number;
  redisCommandsPerSession: Record<string, number> | undefined;
  failed: number;
}

/** Calls per command Redis ran so far (scripts' inner calls included, as Redis counts them). */
async function commandsRun(admin: Redis): Promise<Map<string, number>> {
  const calls = new Map<string, number>();
  for (const line of (await admin.info('commandstats')).split('\r\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (match !== null) calls.set(match[1]!, Number(match[2]));
  }
  return calls;
}

/** Per session, the commands that ran at least 0.1 times a session, most first. */
function perSession(before: Map<string, number>, after: Map<string, number>, sessions: number): Record<string, number> {
  const rows: [string, number][] = [];
  for (const [command, calls] of after) {
    const each = Math.round(((calls - (before.get(command) ?? 0)) / sessions) * 10) / 10;
    if (each >= 0.1 && command !== 'info') rows.push([command, each]);
  }
  return Object.fromEntries(rows.sort((a, b) => b[1] - a[1]));
}

async function round(options: Options, mode: 'embedded' | 'redis', redisUrl: string, index: number, admin: Redis): Promise<RoundResult> {
  const env: Record<string, string> = { HEARTBEAT: '0,0', MAX_CONNECTIONS_PER_ADDRESS: '0', SINGLE_SESSION: options.singleSession };
  if (mode === 'redis') Object.assign(env, { REDIS_URL: redisUrl, REDIS_PREFIX: `cr${index}:`, INSTANCE_ID: `connect-rate-${index}` });
  const broker = await spawnStompd({
    mainPath: path.join(__dirname, '..', 'src', 'main.js'),
    env,
    nodeArgs: options.cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', path.join(options.cpuProfDir, mode)],
    cpu: undefined,
    readyTimeoutMs: 20_000,
  });
  const endpoint: Endpoint = { host: '127.0.0.1', tcpPort: broker.tcpPort, wsPort: broker.wsPort, wsPath: '/ws', login: undefined, passcode: undefined };
  const clients: LoadClient[] = [];
  let failed = 0;
  try {
    // Warm-up: the first connections pay for JIT and Redis script loading.
    for (let i = 0; i < 50; i++) clients.push(await LoadClient.open(options.transport, { ...endpoint, login: `warm-${index}-${i}` }, 10_000));
    const cpuBefore = processCpuSeconds(broker.pid) ?? 0;
    const commandsBefore = mode === 'redis' ? await commandsRun(admin) : undefined;
    const started = performance.now();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < options.sessions) {
        const i = next++;
        try {
          clients.push(await LoadClient.open(options.transport, { ...endpoint, login: `u-${index}-${i}` }, 30_000));
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, () => worker()));
    const seconds = (performance.now() - started) / 1000;
    const cpu = (processCpuSeconds(broker.pid) ?? 0) - cpuBefore;
    const commands = commandsBefore === undefined ? undefined : perSession(commandsBefore, await commandsRun(admin), options.sessions);
    return {
      mode,
      sessionsPerSecond: Math.round(options.sessions / seconds),
      brokerCpuMicrosPerSession: Math.round((cpu * 1e6) / options.sessions),
      redisCommandsPerSession: commands,
      failed,
    };
  } finally {
    for (const c of clients) c.close();
    await broker.stop();
  }
}

async function main(): Promise<void> {
  const options = parse(process.argv.slice(2));
  const redis = await startRedisServer(undefined, 10_000);
  const admin = new Redis(redis.url);
  const results: RoundResult[] = [];
  try {
    for (let r = 0; r < options.rounds; r++) {
      for (const mode of ['embedded', 'redis'] as const) {
        const result = await round(options, mode, redis.url, r * 2 + (mode === 'redis' ? 1 : 0), admin);
        results.push(result);
        process.stdout.write(`${JSON.stringify({ round: r + 1, transport: options.transport, sessions: options.sessions, concurrency: options.concurrency, ...result })}\n`);
      }
    }
  } finally {
    admin.disconnect();
    await redis.stop();
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const rate = (mode: string): number => median(results.filter((r) => r.mode === mode).map((r) => r.sessionsPerSecond));
  process.stdout.write(`${JSON.stringify({ summary: true, transport: options.transport, embedded: rate('embedded'), redis: rate('redis'), ratio: Math.round((rate('redis') / rate('embedded')) * 100) / 100 })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
