// Real Redis for tests: a `redis-server` child process on an ephemeral port (the binary on
// PATH), or a 3-master Redis Cluster made of three of them and `redis-cli --cluster create`.
// Nothing is mocked: the broker talks to these exactly as it would in production.
//
// REDIS_URL, when set, is used by tests that only need "a Redis" (startRedis({ shared: true }));
// tests that stop, kill or restart Redis always start their own.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { freePort } from './free-port';

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** SIGTERM, wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL: the server vanishes, clients see their connections drop. */
  kill(): Promise<void>;
  /** Start again on the same port (data kept only if `appendonly`). */
  restart(): Promise<void>;
  /** Run a redis-cli command against it; returns stdout. */
  cli(...args: string[]): string;
}

export interface RedisCluster {
  /** "host:port,host:port,host:port", as REDIS_CLUSTER_NODES takes it. */
  readonly nodes: string;
  readonly servers: RedisServer[];
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;

/** A port that is free now, and (for a cluster node) whose bus port (port + 10000) is too. */
async function portFor(withBusPort: boolean): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await freePort();
    if (!withBusPort) return port;
    if (port + 10000 > 65535) continue;
    const isBusFree = await new Promise<boolean>((resolve) => {
      const probe = net.createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port + 10000, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (isBusFree) return port;
  }
  throw new Error('no free port pair for a cluster node');
}

function redisServerBinary(): string {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim();
  if (found === '') throw new Error('redis-server is not on PATH (apt-get install -y redis-server); the Redis tests need a real one');
  return found;
}

function waitReady(child: ChildProcess, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`redis-server on ${port} not ready in ${READY_TIMEOUT_MS} ms: ${output.slice(-500)}`)), READY_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server on ${port} exited (${code}) before it was ready: ${output.slice(-500)}`));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export interface StartRedisOptions {
  /** Keep data across restart (AOF in a temp dir). */
  appendonly?: boolean;
  /** Extra redis-server arguments. */
  args?: string[];
  /** Cluster node: --cluster-enabled yes (the port's bus port must be free too). */
  isClusterNode?: boolean;
}

/** Every server a test file started, stopped at exit even if a test forgot. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

// A file's tests are over and reported, yet something (a Redis client reconnecting to a
// server a failed test never stopped) keeps its process alive: end it, with the outcome the
// runner recorded, rather than hang the whole run.
after(() => {
  setTimeout(() => {
    process.stderr.write('test file still running 10 s after its last test: handles left open; exiting\n');
    process.exit(process.exitCode ?? 0);
  }, 10_000).unref();
});

export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const binary = redisServerBinary();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-redis-'));
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await portFor(options.isClusterNode === true);
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      options.appendonly ? 'yes' : 'no',
      '--daemonize',
      'no',
      '--loglevel',
      'notice',
      '--logfile',
      '',
      ...(options.isClusterNode ? ['--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000'] : []),
      ...(options.args ?? []),
    ];
    let child: ChildProcess;
    const launch = async (): Promise<void> => {
      child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      running.add(child);
      child.once('exit', () => running.delete(child));
      child.stderr?.resume();
      await waitReady(child, port);
    };
    try {
      await launch();
    } catch (error) {
      lastError = error;
      continue; // the port was taken between the probe and the start: try another
    }
    const server: RedisServer = {
      url: `redis://127.0.0.1:${port}`,
      port,
      async stop() {
        child.kill('SIGTERM');
        await exited(child);
      },
      async kill() {
        child.kill('SIGKILL');
        await exited(child);
      },
      async restart() {
        await exited(child);
        let restartError: unknown;
        for (let tries = 0; tries < 20; tries++) {
          try {
            await launch();
            return;
          } catch (error) {
            restartError = error; // the old socket may linger a moment
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
        throw restartError;
      },
      cli(...cliArgs: string[]) {
        const result = spawnSync('redis-cli', ['-p', String(port), ...cliArgs], { encoding: 'utf8' });
        if (result.status !== 0) throw new Error(`redis-cli ${cliArgs.join(' ')}: ${result.stderr}`);
        return result.stdout;
      },
    };
    return server;
  }
  throw lastError;
}

/** Three masters, all 16384 slots assigned, cluster_state:ok on every node. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const servers: RedisServer[] = [];
  try {
    for (let i = 0; i < 3; i++) servers.push(await startRedis({ isClusterNode: true }));
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...servers.map((s) => `127.0.0.1:${s.port}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (const server of servers) {
      while (!server.cli('cluster', 'info').includes('cluster_state:ok')) {
        if (Date.now() > deadline) throw new Error('the cluster did not reach cluster_state:ok');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } catch (error) {
    await Promise.all(servers.map((s) => s.stop()));
    throw error;
  }
  return {
    nodes: servers.map((s) => `127.0.0.1:${s.port}`).join(','),
    servers,
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}
