// A real nginx (the binary on PATH or in /usr/sbin) running the repository's own
// deploy/nginx.conf, as the current user, on ephemeral ports: the lines the conf's header
// names are replaced by local addresses, and only what a non-installed run needs is added
// (pid file, temp directories, the stream module where it is a separate .so, as on Debian).

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../helpers/free-port';

export const NGINX_CONF = path.resolve(__dirname, '../../../deploy/nginx.conf');
/** The variant that ends TLS at nginx (wss:// on 15673, STOMP over TLS on 61614). */
export const NGINX_TLS_CONF = path.resolve(__dirname, '../../../deploy/nginx-tls.conf');

/** For NGINX_TLS_CONF: the certificate and key its ssl_certificate lines are pointed at. */
export interface NginxTls {
  cert: string;
  key: string;
}

const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5000;

/** Where docker-compose.yml's instances are, as the conf names them. */
export interface Upstream {
  wsPort: number;
  tcpPort: number;
}

export interface NginxProcess {
  readonly wsPort: number;
  readonly tcpPort: number;
  /** The rewritten conf nginx runs. */
  readonly conf: string;
  stop(): Promise<void>;
}

function nginxBinary(): string {
  const onPath = spawnSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' }).stdout.trim();
  // /usr/sbin is not on a normal user's PATH.
  const found = [onPath, '/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'].find((p) => p !== '' && fs.existsSync(p));
  if (found === undefined) throw new Error('nginx is not installed (apt-get install -y nginx libnginx-mod-stream); the load-balancer test needs a real one');
  return found;
}

/** What `nginx -V` says about its build: compiled-in temp paths and how the stream module comes. */
function buildInfo(binary: string): { tempPathDirectives: string[]; streamModule: string | undefined } {
  const result = spawnSync(binary, ['-V'], { encoding: 'utf8' });
  const text = `${result.stdout}${result.stderr}`;
  // --http-client-body-temp-path=… → client_body_temp_path; unset ones default under the prefix (-p).
  const tempPathDirectives = [...text.matchAll(/--http-([a-z-]+)-temp-path=/g)].map((m) => `${m[1]!.replace(/-/g, '_')}_temp_path`);
  let streamModule: string | undefined;
  if (/--with-stream=dynamic\b/.test(text)) {
    const modulesPath = /--modules-path=(\S+)/.exec(text)?.[1] ?? '/usr/lib/nginx/modules';
    streamModule = path.join(modulesPath, 'ngx_stream_module.so');
    if (!fs.existsSync(streamModule)) throw new Error(`${streamModule} is missing (apt-get install -y libnginx-mod-stream): deploy/nginx.conf proxies raw TCP with the stream module`);
  } else if (!/--with-stream\b/.test(text)) {
    throw new Error('this nginx has no stream module: deploy/nginx.conf proxies raw TCP with it');
  }
  return { tempPathDirectives, streamModule };
}

/**
 * deploy/nginx.conf with each `from` line (compared without its indentation) replaced by
 * `to`. Every `from` must occur exactly once: a conf edited without the test fails here.
 */
export function replaceLines(conf: string, replacements: [from: string, to: string][]): string {
  const lines = conf.split('\n');
  for (const [from, to] of replacements) {
    const at = lines.flatMap((line, i) => (line.trim() === from ? [i] : []));
    if (at.length !== 1) throw new Error(`deploy/nginx.conf: expected the line "${from}" exactly once, found it ${at.length} times`);
    const line = lines[at[0]!]!;
    lines[at[0]!] = line.slice(0, line.length - line.trimStart().length) + to;
  }
  return lines.join('\n');
}

export function localConf(conf: string, ports: { ws: number; tcp: number }, upstreams: Record<'stompd-a' | 'stompd-b', Upstream>, dir: string, build: ReturnType<typeof buildInfo>, tls?: NginxTls): string {
  if (tls !== undefined) {
    // Both the http and the stream server carry them: every such line.
    conf = conf.replace(/^(\s*)ssl_certificate (\S+);$/gm, `$1ssl_certificate ${tls.cert};`).replace(/^(\s*)ssl_certificate_key (\S+);$/gm, `$1ssl_certificate_key ${tls.key};`);
  }
  let local = replaceLines(conf, [
    tls === undefined ? ['listen 15674;', `listen 127.0.0.1:${ports.ws};`] : ['listen 15673 ssl;', `listen 127.0.0.1:${ports.ws} ssl;`],
    tls === undefined ? ['listen 61613;', `listen 127.0.0.1:${ports.tcp};`] : ['listen 61614 ssl;', `listen 127.0.0.1:${ports.tcp} ssl;`],
    ['server stompd-a:15674;', `server 127.0.0.1:${upstreams['stompd-a'].wsPort};`],
    ['server stompd-b:15674;', `server 127.0.0.1:${upstreams['stompd-b'].wsPort};`],
    ['server stompd-a:61613;', `server 127.0.0.1:${upstreams['stompd-a'].tcpPort};`],
    ['server stompd-b:61613;', `server 127.0.0.1:${upstreams['stompd-b'].tcpPort};`],
    ['server stompd-a:15674 max_fails=1 fail_timeout=10s;', `server 127.0.0.1:${upstreams['stompd-a'].wsPort} max_fails=1 fail_timeout=10s;`],
    ['server stompd-b:15674 max_fails=1 fail_timeout=10s;', `server 127.0.0.1:${upstreams['stompd-b'].wsPort} max_fails=1 fail_timeout=10s;`],
  ]);
  const tempPaths = build.tempPathDirectives.map((directive) => `    ${directive} ${path.join(dir, directive)};`);
  local = replaceLines(local, [['http {', ['http {', ...tempPaths].join('\n')]]);
  if (build.streamModule !== undefined) local = `load_module ${build.streamModule};\n${local}`;
  return local;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Every nginx a test file started; SIGTERM makes the master take its workers down too. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGTERM');
});

/** nginx on deploy/nginx.conf, or with `tls` on deploy/nginx-tls.conf. */
export async function startNginx(upstreams: Record<'stompd-a' | 'stompd-b', Upstream>, tls?: NginxTls): Promise<NginxProcess> {
  const binary = nginxBinary();
  const build = buildInfo(binary);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-nginx-'));
  // Run as root (CI in a container), nginx's workers switch to an unprivileged user.
  fs.chmodSync(dir, 0o755);
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const ports = { ws: await freePort(), tcp: await freePort() };
    const conf = localConf(fs.readFileSync(tls === undefined ? NGINX_CONF : NGINX_TLS_CONF, 'utf8'), ports, upstreams, dir, build, tls);
    const confPath = path.join(dir, 'nginx.conf');
    fs.writeFileSync(confPath, conf);
    // The conf logs access to /dev/stdout, which cannot be opened on a socket (what 'pipe'
    // gives a child): a file, as in a container.
    const accessLog = fs.openSync(path.join(dir, 'access.log'), 'a');
    const child = spawn(binary, ['-p', `${dir}/`, '-e', 'stderr', '-c', confPath, '-g', `daemon off; pid ${path.join(dir, 'nginx.pid')};`], { stdio: ['ignore', accessLog, 'pipe'] });
    fs.closeSync(accessLog);
    running.add(child);
    child.once('exit', () => running.delete(child));
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const deadline = Date.now() + START_TIMEOUT_MS;
    let isUp = false;
    while (!isUp && child.exitCode === null && Date.now() < deadline) {
      isUp = (await canConnect(ports.ws)) && (await canConnect(ports.tcp));
      if (!isUp) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (isUp) {
      return {
        wsPort: ports.ws,
        tcpPort: ports.tcp,
        conf,
        async stop() {
          child.kill('SIGTERM'); // fast shutdown: SIGQUIT would wait for every WebSocket to end
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
          await exited(child);
          clearTimeout(timer);
        },
      };
    }
    child.kill('SIGTERM');
    await exited(child);
    lastError = new Error(`nginx did not start: ${stderr.trim().slice(-1000)}`);
    if (!stderr.includes('Address already in use')) break; // a port taken since the probe: try others
  }
  throw lastError;
}
