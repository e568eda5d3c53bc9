// The container files, checked without a Docker engine: the Dockerfile copies only what
// exists and .dockerignore lets through, runs the package's own bin, exposes the default
// ports, and its HEALTHCHECK script answers as a probe should against a live broker;
// docker-compose.yml and deploy/nginx.conf name the same services and ports.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CONFIG_DEFAULTS } from '../../src/config';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { freePort } from '../helpers/free-port';

const ROOT = path.resolve(__dirname, '../../..');
const read = (file: string): string => fs.readFileSync(path.join(ROOT, file), 'utf8');

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function instructions(dockerfile: string): { keyword: string; args: string }[] {
  return dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [keyword, ...rest] = line.split(/\s+/);
      return { keyword: keyword!.toUpperCase(), args: rest.join(' ') };
    });
}

/** Whether .dockerignore keeps `file` out of the build context (Go filepath.Match patterns, `!` re-includes, last match wins). */
function isIgnored(dockerignore: string, file: string): boolean {
  let ignored = false;
  for (const raw of dockerignore.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const isException = line.startsWith('!');
    const pattern = (isException ? line.slice(1) : line).replace(/^\/+|\/+$/g, '');
    const source = pattern
      .split('')
      .map((c) => (c === '*' ? '[^/]*' : c === '?' ? '[^/]' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
      .join('')
      .replace(/\[\^\/\]\*\[\^\/\]\*/g, '.*');
    const regex = new RegExp(`^${source}$`);
    // A pattern that matches a directory excludes everything below it.
    const segments = file.split('/');
    const matches = segments.some((_, i) => regex.test(segments.slice(0, i + 1).join('/')));
    if (matches) ignored = !isException;
  }
  return ignored;
}

function probe(env: Record<string, string>): { status: number | null; stderr: string } {
  const result = spawnSync(process.execPath, [path.join(ROOT, 'deploy/healthcheck.js')], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', timeout: 10_000 });
  return { status: result.status, stderr: result.stderr };
}

describe('Dockerfile and .dockerignore', () => {
  const steps = instructions(read('Dockerfile'));
  const runtime = steps.slice(steps.map((s) => s.keyword).lastIndexOf('FROM'));

  it('copies from the context only files that exist and .dockerignore lets through', () => {
    const dockerignore = read('.dockerignore');
    const sources = steps.filter((s) => s.keyword === 'COPY' && !s.args.startsWith('--from')).flatMap((s) => s.args.split(/\s+/).slice(0, -1));
    assert.ok(sources.includes('src') && sources.includes('package-lock.json'), sources.join(' '));
    for (const source of sources) {
      assert.ok(fs.existsSync(path.join(ROOT, source)), `${source} does not exist`);
      assert.ok(!isIgnored(dockerignore, source), `.dockerignore excludes ${source}`);
    }
    // What must stay out: a host's node_modules (here, a symlink) and build output.
    for (const excluded of ['node_modules', 'dist/src/main.js', '.git']) assert.ok(isIgnored(dockerignore, excluded), excluded);
  });

  it('runs the package bin as a non-root user, production dependencies only, default ports exposed', () => {
    const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string> };
    const cmd = runtime.find((s) => s.keyword === 'CMD');
    assert.deepEqual(JSON.parse(cmd!.args), ['node', pkg.bin.stompd]);
    const user = runtime.find((s) => s.keyword === 'USER');
    assert.ok(user && !/^(root|0)(:|$)/.test(user.args), `USER ${user?.args}`);
    assert.ok(
      runtime.some((s) => s.keyword === 'RUN' && /npm ci\b.*--omit=dev/.test(s.args)),
      'the runtime stage installs with --omit=dev',
    );
    const exposed = runtime.filter((s) => s.keyword === 'EXPOSE').flatMap((s) => s.args.split(/\s+/));
    assert.deepEqual(exposed.sort(), [CONFIG_DEFAULTS.STOMP_PORT, CONFIG_DEFAULTS.WS_PORT].sort());
    const healthcheck = runtime.find((s) => s.keyword === 'HEALTHCHECK');
    assert.match(healthcheck!.args, /CMD \["node", "deploy\/healthcheck\.js"\]$/);
    assert.ok(
      runtime.some((s) => s.keyword === 'COPY' && s.args.startsWith('deploy/healthcheck.js ')),
      'the runtime stage copies the health probe',
    );
  });
});

describe('deploy/healthcheck.js, the HEALTHCHECK probe', () => {
  let broker: RunningServer;

  before(async () => {
    broker = await startBroker();
  });

  after(async () => {
    await broker.stop();
  });

  it('exits 0 when the STOMP port accepts a connection, on HOST=0.0.0.0 too', () => {
    assert.equal(probe({ STOMP_PORT: String(broker.tcpPort) }).status, 0);
    assert.equal(probe({ STOMP_PORT: String(broker.tcpPort), HOST: '0.0.0.0' }).status, 0);
  });

  it('exits 1 when nothing listens, naming the address', async () => {
    const port = await freePort();
    const result = probe({ STOMP_PORT: String(port) });
    assert.equal(result.status, 1);
    assert.match(result.stderr, new RegExp(`127\\.0\\.0\\.1:${port}`));
  });

  it('probes the WebSocket port when STOMP_PORT is off', async () => {
    assert.equal(probe({ STOMP_PORT: 'off', WS_PORT: String(broker.wsPort) }).status, 0);
    assert.equal(probe({ STOMP_PORT: 'off', WS_PORT: String(await freePort()) }).status, 1);
  });
});

describe('docker-compose.yml and deploy/nginx.conf agree', () => {
  const compose = read('docker-compose.yml');
  const nginx = read('deploy/nginx.conf');

  it('mounts the tested nginx.conf, and nginx proxies to the compose services on their ports', () => {
    assert.match(compose, /^\s+- \.\/deploy\/nginx\.conf:\/etc\/nginx\/nginx\.conf:ro$/m);
    const upstreams = [...nginx.matchAll(/^\s*server (stompd-[a-z]+):(\d+);/gm)].map((m) => `${m[1]}:${m[2]}`).sort();
    assert.deepEqual(upstreams, ['stompd-a:15674', 'stompd-a:61613', 'stompd-b:15674', 'stompd-b:61613']);
    for (const service of ['stompd-a', 'stompd-b', 'redis', 'lb']) assert.match(compose, new RegExp(`^  ${service}:$`, 'm'), service);
    assert.match(compose, /^\s+STOMP_PORT: "61613"$/m);
    assert.match(compose, /^\s+WS_PORT: "15674"$/m);
    assert.match(compose, /^\s+REDIS_URL: redis:\/\/redis:6379$/m);
    // A fixed INSTANCE_ID would make a restarted container take its dead predecessor's sessions for its own.
    assert.doesNotMatch(compose, /^\s+INSTANCE_ID:/m);
  });

  it("the instances trust nginx's fixed address for client addresses, and keep the per-address cap on", () => {
    const lbAddress = /^ {2}lb:$[\s\S]*?ipv4_address: (\S+)$/m.exec(compose)?.[1];
    assert.ok(lbAddress !== undefined, 'lb has a fixed ipv4_address');
    assert.match(compose, new RegExp(`^\\s+TRUSTED_PROXIES: ${lbAddress.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(compose, /^\s+PROXY_PROTOCOL: "1"$/m);
    assert.doesNotMatch(compose, /^\s+MAX_CONNECTIONS_PER_ADDRESS: "0"$/m, 'the cap stays on');
    assert.match(nginx, /^\s+proxy_protocol on;$/m);
    assert.match(nginx, /^\s+proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;$/m);
  });

  it('publishes ports on loopback only: the instances run without authentication', () => {
    const published = [...compose.matchAll(/^\s+- "([^"]*:\d+)"$/gm)].map((m) => m[1]!);
    assert.deepEqual(published.sort(), ['127.0.0.1:15674:15674', '127.0.0.1:61613:61613']);
  });
});
