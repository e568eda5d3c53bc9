// README's "Without Docker" commands, run exactly as written (each line through `sh -c`,
// from the checkout, as real processes): redis-server, two `npm start` sharing it, then the
// same behind nginx on a sed-made copy of deploy/nginx.conf. Only the port numbers the
// commands choose (after "=", "--port " or "127.0.0.1:") and the /tmp file names are swapped
// for free ones, so that the test never meets the machine's own Redis or a broker someone
// runs on the defaults; what sed matches in deploy/nginx.conf stays as written.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IMessage } from '@stomp/stompjs';
import WebSocket from 'ws';
import { freePort } from '../helpers/free-port';
import type { SessionStats, UserSessions } from '../helpers/api-shapes';
import { ApiClient } from '../helpers/http';
import { RawClient, header } from '../helpers/raw-client';
import { until } from '../helpers/until';

const ROOT = path.resolve(__dirname, '../../..');
/** npm start under load: npm's own start-up, then the broker's and Redis's connection. */
const READY_TIMEOUT_MS = 60_000;
const DELIVERY_TIMEOUT_MS = 10_000;
/** Clients connect from here; nginx, the instances' trusted proxy, is 127.0.0.1. */
const CLIENT_ADDRESS = '127.0.0.2';

/** The commands of README's ```sh block marked `<!-- scale-out-test step="<step>" -->`. */
function readmeCommands(readme: string, step: string): string[] {
  const marker = `<!-- scale-out-test step="${step}" -->`;
  const at = readme.indexOf(marker);
  assert.notEqual(at, -1, `README has no ${marker}`);
  const block = /^```sh\n([\s\S]*?)^```$/m.exec(readme.slice(at + marker.length));
  assert.ok(
    block !== null &&
      readme
        .slice(at + marker.length)
        .trimStart()
        .startsWith('```sh'),
    `${marker} is not followed by a sh block`,
  );
  return block[1]!.split('\n').filter((line) => line.trim() !== '' && !line.trimStart().startsWith('#'));
}

const PORT_CHOICE = /(?<=(?:=|--port |127\.0\.0\.1:))\d{4,5}\b/g;

class Rewriter {
  readonly ports = new Map<number, number>();
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-scale-out-'));

  async rewrite(command: string): Promise<string> {
    for (const match of command.matchAll(PORT_CHOICE)) {
      const port = Number(match[0]);
      if (!this.ports.has(port)) this.ports.set(port, await freePort());
    }
    return command.replace(PORT_CHOICE, (port) => String(this.ports.get(Number(port)))).replace(/\/tmp\/stompd-nginx/g, path.join(this.dir, 'stompd-nginx'));
  }

  port(readmePort: number): number {
    const port = this.ports.get(readmePort);
    assert.ok(port !== undefined, `README's commands do not choose port ${readmePort}`);
    return port;
  }
}

interface Running {
  command: string;
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
}

const running: Running[] = [];

function isServer(command: string): boolean {
  return /\bnpm start\b/.test(command) || /^\s*(redis-server|nginx)\b/.test(command);
}

/** Run one README line in its own process group (to stop npm, its shell and node together). */
function run(command: string, logDir: string): Running {
  const log = path.join(logDir, `${running.length}.log`);
  const fd = fs.openSync(log, 'a');
  // Output to a file: nginx opens /dev/stdout for its access log, which a socket pair cannot be.
  const child = spawn('sh', ['-c', command], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir() }, stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const entry = { command, child, log, exited };
  running.push(entry);
  return entry;
}

function tail(entry: Running): string {
  return fs.readFileSync(entry.log, 'utf8').slice(-2000);
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Run a README block: servers stay up (every port the block chose must accept), other commands must exit 0. */
async function runBlock(commands: string[], rewriter: Rewriter): Promise<Running[]> {
  const started: Running[] = [];
  for (const readmeCommand of commands) {
    const command = await rewriter.rewrite(readmeCommand);
    const entry = run(command, rewriter.dir);
    if (isServer(readmeCommand)) {
      started.push(entry);
      // Up before the next line, as a reader waits for each terminal: the instances connect to
      // Redis at start, and nginx would mark an instance it cannot reach yet as failed.
      await waitForPorts(
        [entry],
        [...command.matchAll(PORT_CHOICE)].map((m) => Number(m[0])),
      );
    } else {
      assert.equal(await entry.exited, 0, `${readmeCommand}\n${tail(entry)}`);
    }
  }
  const ports = commands.flatMap((c) => [...c.matchAll(PORT_CHOICE)].map((m) => rewriter.port(Number(m[0]))));
  await waitForPorts(started, ports);
  return started;
}

async function waitForPorts(processes: Running[], ports: number[]): Promise<void> {
  await until(
    async () => {
      const dead = processes.find((p) => p.child.exitCode !== null);
      if (dead !== undefined) throw new Error(`${dead.command} exited ${dead.child.exitCode}:\n${tail(dead)}`);
      return (await Promise.all(ports.map(accepts))).every(Boolean);
    },
    `ports ${ports.join(', ')} to accept connections`,
    READY_TIMEOUT_MS,
    200,
  );
}

async function stopAll(processes: Running[]): Promise<void> {
  await Promise.all(
    processes.map(async (p) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      try {
        process.kill(-p.child.pid!, 'SIGTERM');
      } catch {
        return; // already gone
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-p.child.pid!, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }, 10_000);
      await p.exited;
      clearTimeout(timer);
    }),
  );
}

const stompjsClients: Client[] = [];
const rawClients: RawClient[] = [];

function connectWs(port: number, login: string): Promise<{ client: Client; server: string }> {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${port}/ws`, ['v12.stomp'], { localAddress: CLIENT_ADDRESS }),
      connectHeaders: { login },
      reconnectDelay: 0,
      onConnect: (frame) => resolve({ client, server: frame.headers.server ?? '' }),
      onStompError: (frame) => reject(new Error(frame.headers.message)),
      onWebSocketError: () => reject(new Error(`websocket error on port ${port}`)),
    });
    stompjsClients.push(client);
    client.activate();
  });
}

async function connectTcp(port: number, login: string): Promise<{ client: RawClient; server: string }> {
  const client = await RawClient.tcp(port, CLIENT_ADDRESS);
  rawClients.push(client);
  return { client, server: header(await client.connect({ login }), 'server') ?? '' };
}

/** A WebSocket subscriber hears what a TCP publisher sends (again and again until it does: the relay subscribes asynchronously). */
async function crosses(subscriber: Client, publisher: RawClient, destination: string): Promise<void> {
  const received = new Promise<IMessage>((resolve) => subscriber.subscribe(destination, resolve));
  let isReceived = false;
  void received.then(() => (isReceived = true));
  await until(
    () => {
      publisher.sendFrame('SEND', { destination }, 'across instances');
      return isReceived;
    },
    `a message on ${destination}`,
    DELIVERY_TIMEOUT_MS,
    200,
  );
  assert.equal((await received).body, 'across instances');
}

let readme: string;
const rewriter = new Rewriter();

before(() => {
  readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
});

after(async () => {
  await Promise.all(stompjsClients.map((c) => c.deactivate()));
  for (const c of rawClients) c.destroy();
  await stopAll(running);
  if (process.env.KEEP_SCALE_OUT_LOGS === undefined) fs.rmSync(rewriter.dir, { recursive: true, force: true });
  else console.log(rewriter.dir);
});

describe("README's scale-out commands, run as written", { timeout: 240_000 }, () => {
  it('redis-server and two npm start: one broker across both instances', async () => {
    const started = await runBlock(readmeCommands(readme, 'instances'), rewriter);
    const subscriber = await connectWs(rewriter.port(15674), 'on-a');
    const publisher = await connectTcp(rewriter.port(61623), 'on-b');
    assert.deepEqual([subscriber.server, publisher.server], ['stompd-a', 'stompd-b']);
    await crosses(subscriber.client, publisher.client, '/topic/scale-out');
    // The session API of either instance lists both instances' sessions.
    const stats = await new ApiClient(rewriter.port(8081)).ok<SessionStats>('/api/session/stats');
    assert.equal(stats.totalActiveSessions, 2, JSON.stringify(stats));
    assert.equal(Object.keys(stats.perInstance).length, 2, JSON.stringify(stats));
    await subscriber.client.deactivate();
    publisher.client.destroy();
    // The next block starts the instances again, behind nginx; Redis stays.
    await stopAll(started.filter((p) => /\bnpm start\b/.test(p.command)));
  });

  it('then nginx in front: both transports reach both instances, and the instances see the client, not nginx', async () => {
    await runBlock(readmeCommands(readme, 'nginx'), rewriter);
    const servers = new Set<string>();
    let wsClient: Client | undefined;
    for (let i = 0; i < 6 && servers.size < 2; i++) {
      const landed = await connectWs(rewriter.port(15674), `ws-${i}`);
      servers.add(landed.server);
      if (wsClient === undefined) wsClient = landed.client;
      else await landed.client.deactivate();
    }
    assert.deepEqual([...servers].sort(), ['stompd-a', 'stompd-b']);
    const tcp = await connectTcp(rewriter.port(61613), 'tcp-through-nginx');
    await crosses(wsClient!, tcp.client, '/topic/scale-out.nginx');
    const api = new ApiClient(rewriter.port(8082));
    const tcpSession = await api.ok<UserSessions>('/api/session/user/tcp-through-nginx');
    assert.match(tcpSession.sessions[0]!.remoteAddress, /^127\.0\.0\.2:\d+$/);
    const wsSession = await api.ok<UserSessions>('/api/session/user/ws-0');
    assert.equal(wsSession.sessions[0]!.remoteAddress, CLIENT_ADDRESS);
  });
});
