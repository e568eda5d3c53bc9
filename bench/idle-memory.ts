// Idle memory per connection: a broker in this process, N idle connected TCP and N idle
// connected WebSocket sessions opened by a child process; the broker's heapUsed and RSS are
// compared (after a forced GC) before and after they connect.
//
//   npx tsc -p . && node --expose-gc dist/bench/idle-memory.js [connectionsPerTransport=2000]
//
// Prints one JSON line. Run it before and after a change that touches per-connection state.

import { fork } from 'node:child_process';
import net from 'node:net';
import WebSocket from 'ws';
import { loadConfig } from '../src/config';
import { startServer } from '../src/server';

const CONNECT = Buffer.from('CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:idle\n\n\0');

interface Sample {
  heapUsed: number;
  rss: number;
  external: number;
  arrayBuffers: number;
}

function sample(): Sample {
  for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.();
  const { heapUsed, rss, external, arrayBuffers } = process.memoryUsage();
  return { heapUsed, rss, external, arrayBuffers };
}

/** Child: open `count` TCP and `count` WS sessions, tell the parent, then idle until killed. */
async function clients(tcpPort: number, wsPort: number, count: number): Promise<void> {
  const keep: unknown[] = [];
  const untilConnected = (onData: (listener: (chunk: Buffer) => void) => void): Promise<void> =>
    new Promise((resolve) => {
      let seen = '';
      onData((chunk) => {
        seen += chunk.toString();
        if (seen.includes('CONNECTED')) resolve();
      });
    });
  const BATCH = 100;
  for (let i = 0; i < count; i += BATCH) {
    const batch: Promise<void>[] = [];
    for (let j = i; j < Math.min(count, i + BATCH); j++) {
      const socket = net.connect(tcpPort, '127.0.0.1', () => socket.write(CONNECT));
      keep.push(socket);
      batch.push(untilConnected((listener) => socket.on('data', listener)));
      const ws = new WebSocket(`ws://127.0.0.1:${wsPort}/ws`, ['v12.stomp']);
      ws.on('open', () => ws.send(CONNECT));
      keep.push(ws);
      batch.push(untilConnected((listener) => ws.on('message', (data: Buffer) => listener(data))));
    }
    await Promise.all(batch);
  }
  process.send!({ ready: keep.length });
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 2000);
  const config = loadConfig({ HOST: '127.0.0.1', STOMP_PORT: '0', WS_PORT: '0', LOG_LEVEL: 'silent', HEARTBEAT: '0,0', MAX_CONNECTIONS_PER_ADDRESS: '0', HTTP_PORT: 'off' });
  const server = await startServer(config);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const before = sample();
  const child = fork(__filename, ['--clients', String(server.tcpPort), String(server.wsPort), String(count)]);
  await new Promise<void>((resolve) => child.once('message', () => resolve()));
  await new Promise((resolve) => setTimeout(resolve, 500));
  const after = sample();
  const sessions = [...server.sessions()].length;
  child.kill('SIGKILL');
  const perConnection = (key: keyof Sample) => Math.round((after[key] - before[key]) / sessions);
  console.log(
    JSON.stringify({
      sessions,
      heapUsedPerConnection: perConnection('heapUsed'),
      rssPerConnection: perConnection('rss'),
      externalPerConnection: perConnection('external'),
      before,
      after,
    }),
  );
  await server.stop();
  process.exit(0);
}

if (process.argv[2] === '--clients') {
  void clients(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]));
} else {
  void main();
}
