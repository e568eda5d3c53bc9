// Soak: does every Redis key have a TTL or an owner that deletes it? Two instances on one
// redis-server; sessions come and go, each joining a few rooms of its own (room names are the
// clients' choice: here 100,000 distinct ones by default), one instance is killed (kill -9)
// and started again now and then. At the end the workload stops, the TTLs run out, and the
// key count and Redis memory are compared with the baseline; what is left is listed by key
// shape.
//
//   node dist/bench/soak-keys.js [--rooms 100000] [--rooms-per-session 20] [--parallel 16]
//                                [--restart-every-ms 10000] [--ttl-wait-ms 75000]

import net from 'node:net';
import path from 'node:path';
import Redis from 'ioredis';
import { spawnStompd } from './broker-process';
import type { StompdProcess } from './broker-process';
import { startRedisServer } from './redis-process';

interface Options {
  rooms: number;
  roomsPerSession: number;
  parallel: number;
  restartEveryMs: number;
  ttlWaitMs: number;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { rooms: 100_000, roomsPerSession: 20, parallel: 16, restartEveryMs: 10_000, ttlWaitMs: 75_000 };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i]!.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof Options;
    const value = Number(argv[i + 1]);
    if (!(name in options) || !Number.isFinite(value) || value < 0) throw new Error(`bad option ${argv[i]} ${argv[i + 1] ?? ''}`);
    options[name] = value;
  }
  return options;
}

const MAIN = path.resolve(__dirname, '../src/main.js');
const ENV = { PRESENCE_DESTINATIONS: '/topic/room.**', INSTANCE_HEARTBEAT_MS: '500', HEARTBEAT: '0,0', SINGLE_SESSION: 'off' };

/** One session: CONNECT, SUBSCRIBE to `rooms` (each with a receipt), DISCONNECT with a receipt. */
function session(port: number, login: string, rooms: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    let receipts = 0;
    const timer = setTimeout(() => socket.destroy(new Error('session timed out')), 30_000);
    socket.on('connect', () => {
      let frames = `CONNECT\naccept-version:1.2\nhost:soak\nlogin:${login}\n\n\0`;
      rooms.forEach((room, i) => (frames += `SUBSCRIBE\nid:${i}\ndestination:${room}\nreceipt:r${i}\n\n\0`));
      frames += 'DISCONNECT\nreceipt:bye\n\n\0';
      socket.write(frames);
    });
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      let end: number;
      while ((end = received.indexOf('\0')) !== -1) {
        const frame = received.slice(0, end).replace(/^\n+/, '');
        received = received.slice(end + 1);
        if (frame.startsWith('ERROR')) socket.destroy(new Error(frame.split('\n').find((l) => l.startsWith('message:')) ?? 'ERROR'));
        if (frame.startsWith('RECEIPT')) receipts++;
      }
      if (receipts === rooms.length + 1) socket.end();
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (receipts === rooms.length + 1) resolve();
      else reject(new Error(`closed after ${receipts} of ${rooms.length + 1} receipts`));
    });
    socket.on('error', () => undefined);
  });
}

async function keyShapes(redis: Redis): Promise<Map<string, number>> {
  const shapes = new Map<string, number>();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      const shape = key.replace(/\{[^}]*\}/g, '{…}');
      shapes.set(shape, (shapes.get(shape) ?? 0) + 1);
    }
  } while (cursor !== '0');
  return shapes;
}

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const server = await startRedisServer(undefined, 10_000);
  const redis = new Redis(server.url);
  const start = (): Promise<StompdProcess> => spawnStompd({ mainPath: MAIN, env: { ...ENV, REDIS_URL: server.url }, nodeArgs: [], cpu: undefined, readyTimeoutMs: 15_000 });
  const instances: StompdProcess[] = [await start(), await start()];
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const baseline = { keys: await redis.dbsize(), memory: await usedMemory(redis) };
  console.log(`baseline: ${baseline.keys} keys, ${(baseline.memory / 1e6).toFixed(2)} MB`);

  let nextRoom = 0;
  let sessions = 0;
  let failures = 0;
  let restarts = 0;
  let peakKeys = baseline.keys;
  const startedAt = Date.now();
  const restartTimer = setInterval(() => {
    const victim = restarts++ % 2;
    instances[victim]!.kill();
    void start().then((fresh) => (instances[victim] = fresh));
  }, options.restartEveryMs);
  const worker = async (w: number): Promise<void> => {
    while (nextRoom < options.rooms) {
      const target = instances[(sessions + w) % instances.length]!;
      if (target.exit !== undefined || target.tcpPort === undefined) {
        await new Promise((resolve) => setTimeout(resolve, 50)); // being restarted
        continue;
      }
      const rooms: string[] = [];
      for (let i = 0; i < options.roomsPerSession && nextRoom < options.rooms; i++) rooms.push(`/topic/room.soak-${nextRoom++}`);
      try {
        await session(target.tcpPort, `user-${w}-${sessions}`, rooms);
        sessions++;
      } catch {
        failures++; // its instance was killed under it: the reaper cleans up after it
      }
      if (sessions % 200 === 0) peakKeys = Math.max(peakKeys, await redis.dbsize());
    }
  };
  await Promise.all(Array.from({ length: options.parallel }, (_, w) => worker(w)));
  clearInterval(restartTimer);
  const ranMs = Date.now() - startedAt;
  const atEnd = { keys: await redis.dbsize(), memory: await usedMemory(redis) };
  console.log(`workload: ${options.rooms} rooms, ${sessions} sessions (${failures} cut by a kill -9), ${restarts} instance restarts in ${(ranMs / 1000).toFixed(1)} s`);
  console.log(`at the end of the workload: ${atEnd.keys} keys (peak ${peakKeys}), ${(atEnd.memory / 1e6).toFixed(2)} MB`);
  await new Promise((resolve) => setTimeout(resolve, options.ttlWaitMs));
  const afterTtls = { keys: await redis.dbsize(), memory: await usedMemory(redis) };
  console.log(`after ${options.ttlWaitMs / 1000} s: ${afterTtls.keys} keys, ${(afterTtls.memory / 1e6).toFixed(2)} MB (baseline ${baseline.keys} keys, ${(baseline.memory / 1e6).toFixed(2)} MB)`);
  for (const [shape, count] of [...(await keyShapes(redis))].sort((a, b) => b[1] - a[1])) console.log(`  ${count}\t${shape}`);
  await Promise.all(instances.map((i) => i.stop()));
  redis.disconnect();
  await server.stop();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
