// The package as users run it: `npm start` is the broker itself (SIGTERM reaches it, nothing
// is left on the ports), a checkout without dist/ says to build, and the tarball `npm pack`
// makes installs a working `stompd` command without shipping tests.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { RawClient, header } from '../helpers/raw-client';

const ROOT = path.resolve(__dirname, '../../..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-package-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

async function isPortFree(port: number): Promise<boolean> {
  const probe = net.createServer();
  return new Promise((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

describe('npm start', { timeout: 60000 }, () => {
  it('runs the broker itself: SIGTERM to npm stops it gracefully and frees its ports', async () => {
    const npm = spawn(NPM, ['start'], {
      cwd: ROOT,
      env: { ...process.env, STOMP_PORT: '0', WS_PORT: '0', HTTP_PORT: 'off', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: Record<string, unknown>[] = [];
    const npmExit = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
    let brokerPid: number | undefined;
    try {
      const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
        let pending = '';
        const timer = setTimeout(() => reject(new Error('npm start did not report listening')), 30000);
        npm.stdout.on('data', (chunk: Buffer) => {
          pending += chunk.toString();
          let eol: number;
          while ((eol = pending.indexOf('\n')) !== -1) {
            const text = pending.slice(0, eol);
            pending = pending.slice(eol + 1);
            if (!text.startsWith('{')) continue; // npm's own "> stompd@… start" banner
            const line = JSON.parse(text) as Record<string, unknown>;
            lines.push(line);
            if (line.msg === 'stompd listening') {
              clearTimeout(timer);
              resolve(line);
            }
          }
        });
        npm.once('exit', (code) => reject(new Error(`npm start exited with ${code}`)));
      });
      brokerPid = listening.pid as number;
      const stompPort = listening.stompPort as number;
      const wsPort = listening.wsPort as number;
      const client = await RawClient.tcp(stompPort);
      try {
        await client.connect({ login: 'maria' });

        npm.kill('SIGTERM');
        assert.match(header(await client.expect('ERROR', 10000), 'message') ?? '', /^SERVER_SHUTDOWN/, 'sessions are closed as in a graceful stop');
      } finally {
        client.destroy();
      }
      assert.equal(await npmExit, 0, 'npm exits 0 when the broker does');
      assert.ok(
        lines.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM'),
        'the broker got SIGTERM',
      );
      assert.ok(lines.some((l) => l.msg === 'stompd stopped'));
      const deadline = Date.now() + 5000;
      while (isRunning(brokerPid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(isRunning(brokerPid), false, `the broker (pid ${brokerPid}) is gone, not orphaned`);
      assert.equal(await isPortFree(stompPort), true, 'STOMP port released');
      assert.equal(await isPortFree(wsPort), true, 'WebSocket port released');
    } finally {
      npm.kill('SIGKILL');
      if (brokerPid !== undefined && isRunning(brokerPid)) process.kill(brokerPid, 'SIGKILL');
    }
  });

  it('without dist/: one line saying to run `npm run build`, exit 1', () => {
    const checkout = path.join(dir, 'no-dist');
    fs.mkdirSync(checkout);
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(checkout, 'package.json'));
    const result = spawnSync(NPM, ['start'], { cwd: checkout, env: process.env, encoding: 'utf8', timeout: 30000 });
    assert.equal(result.status, 1);
    assert.equal(result.stderr.trim(), 'stompd: dist/src/main.js is missing: run `npm run build` first');
    assert.ok(!/Cannot find module|\n\s+at /.test(result.stdout + result.stderr), 'no stack trace');
  });
});

describe('npm pack', { timeout: 180000 }, () => {
  it('ships dist/src and README, no tests; the installed tarball runs `stompd`', () => {
    // --ignore-scripts: `npm test` has just built dist/ (prepare would build it again).
    const pack = spawnSync(NPM, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
    assert.equal(pack.status, 0, pack.stderr);
    const [packed] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
    const files = packed!.files.map((f) => f.path);
    for (const needed of ['package.json', 'README.md', 'dist/src/main.js', 'dist/src/server.js', 'dist/src/auth/users.js']) assert.ok(files.includes(needed), needed);
    // The pages and the demo's stompjs bundle ship too: nothing to build, nothing from a CDN.
    for (const needed of ['web/dashboard/index.html', 'web/dashboard/dashboard.js', 'web/demo/demo.js', 'web/style.css', 'dist/vendor/stomp.umd.min.js']) assert.ok(files.includes(needed), needed);
    const stray = files.filter((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/') || f.startsWith('test/') || f.startsWith('src/') || f.startsWith('frames/'));
    assert.deepEqual(stray, [], 'no tests, benches, sources or fixtures');

    const app = path.join(dir, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const tarball = path.join(dir, packed!.filename);
    const install = (mode: string) => spawnSync(NPM, ['install', mode, '--no-audit', '--no-fund', tarball], { cwd: app, encoding: 'utf8', timeout: 120000 });
    // The dependencies are in npm's cache after `npm ci`; their registry metadata may not be.
    let installed = install('--offline');
    if (installed.status !== 0) installed = install('--prefer-offline');
    assert.equal(installed.status, 0, installed.stderr);

    const npx = spawnSync(process.platform === 'win32' ? 'npx.cmd' : 'npx', ['--offline', 'stompd', '--version'], { cwd: app, encoding: 'utf8', timeout: 30000 });
    assert.equal(npx.status, 0, npx.stderr);
    assert.equal(npx.stdout.trim(), version);
    const bin = path.join(app, 'node_modules', '.bin', 'stompd');
    const help = spawnSync(bin, ['--help'], { cwd: app, encoding: 'utf8', timeout: 30000 });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^ {2}USERS_FILE +default: \(none\)$/m);
    assert.match(help.stdout, /^ {2}STOMP_PORT +default: 61613$/m);
  });

  it('the installed package serves the dashboard and the demo with its stompjs bundle', async () => {
    const bin = path.join(dir, 'app', 'node_modules', '.bin', 'stompd');
    assert.ok(fs.existsSync(bin), 'installed by the test before');
    const httpPort = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const child = spawn(bin, [], { env: { PATH: process.env.PATH ?? '', STOMP_PORT: '0', WS_PORT: '0', HTTP_PORT: String(httpPort), DEMO: '1', LOG_LEVEL: 'warn' }, stdio: 'ignore' });
    try {
      const get = async (url: string): Promise<number> => (await fetch(`http://127.0.0.1:${httpPort}${url}`)).status;
      const deadline = Date.now() + 20000;
      for (;;) {
        const status = await get('/dashboard').catch(() => 0);
        if (status === 200) break;
        assert.ok(Date.now() < deadline, 'the installed stompd serves /dashboard');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      for (const url of ['/dashboard/dashboard.js', '/demo', '/demo/demo.js', '/demo/stomp.umd.min.js']) assert.equal(await get(url), 200, url);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  });
});
