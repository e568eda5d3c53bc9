// The load balancer of docker-compose.yml, proven without Docker: a real nginx runs the
// repository's deploy/nginx.conf (upstreams and listen ports rewritten to local ones) in
// front of two real stompd processes sharing a real Redis. Each instance says who it is in
// CONNECTED's `server` header (SERVER_NAME), so a test knows where nginx put a client.
// nginx runs on 127.0.0.1, the instances trust it (TRUSTED_PROXIES, PROXY_PROTOCOL=1), and
// clients connect from 127.0.0.2 (loopback too), so the session API can show whose address
// it took: the client's, named by nginx, or nginx's own.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IMessage } from '@stomp/stompjs';
import WebSocket from 'ws';
import { CONFIG_DEFAULTS } from '../../src/config';
import { parseHeartbeat } from '../../src/session/heartbeat';
import { BrokerProcess } from '../helpers/broker-process';
import type { UserSessions } from '../helpers/api-shapes';
import { ApiClient } from '../helpers/http';
import { RawClient, header } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import stompit from 'stompit';
import { makeCertificates } from '../helpers/certificates';
import type { Certificates } from '../helpers/certificates';
import { NGINX_CONF, startNginx } from './nginx-process';
import type { NginxProcess } from './nginx-process';

const DELIVERY_TIMEOUT_MS = 10_000;
/** Where clients connect from; nginx (and so the instances' only trusted proxy) is on 127.0.0.1. */
const CLIENT_ADDRESS = '127.0.0.2';
/** Round robin alternates between the two; the margin covers an instance nginx briefly marked failed. */
const MAX_LANDING_TRIES = 10;

let redis: RedisServer;
let a: BrokerProcess;
let b: BrokerProcess;
let nginx: NginxProcess;
/** deploy/nginx-tls.conf in front of the same instances, with certificates made by openssl. */
let nginxTls: NginxProcess;
let certs: Certificates;
const stompitClients: stompit.Client[] = [];
const clients: Client[] = [];
const rawClients: RawClient[] = [];

interface Landed {
  client: Client;
  /** CONNECTED's server header: which instance took the connection. */
  server: string;
}

function connectStomp(port: number, login = 'guest'): Promise<Landed> {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${port}/ws`, ['v12.stomp'], { localAddress: CLIENT_ADDRESS }),
      connectHeaders: { login },
      reconnectDelay: 0,
      onConnect: (frame) => resolve({ client, server: frame.headers.server ?? '' }),
      onStompError: (frame) => reject(new Error(frame.headers.message)),
      onWebSocketError: () => reject(new Error(`websocket error on port ${port}`)),
      onWebSocketClose: (event: { code: number }) => reject(new Error(`websocket closed on port ${port}: ${event.code}`)),
    });
    clients.push(client);
    client.activate();
  });
}

/** Connect through nginx until a connection lands on `server`. */
async function connectThroughNginxTo(server: string): Promise<Client> {
  const seen: string[] = [];
  for (let i = 0; i < MAX_LANDING_TRIES; i++) {
    const landed = await connectStomp(nginx.wsPort);
    if (landed.server === server) return landed.client;
    seen.push(landed.server);
    await landed.client.deactivate();
  }
  throw new Error(`no connection through nginx landed on ${server}: ${seen.join(', ')}`);
}

/** Publish again and again until `received` resolves: the subscriber's instance may still be joining the Redis channel. */
async function publishUntil<T>(publish: () => void, received: Promise<T>): Promise<T> {
  let isReceived = false;
  void received.then(
    () => (isReceived = true),
    () => undefined,
  );
  const deadline = Date.now() + DELIVERY_TIMEOUT_MS;
  while (!isReceived && Date.now() < deadline) {
    publish();
    await Promise.race([received.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 200))]);
  }
  if (!isReceived) await Promise.race([received, Promise.reject(new Error(`nothing delivered within ${DELIVERY_TIMEOUT_MS} ms`))]);
  return received;
}

function firstMessage(client: Client, destination: string): Promise<IMessage> {
  return new Promise((resolve) => {
    const subscription = client.subscribe(destination, (message) => {
      subscription.unsubscribe();
      resolve(message);
    });
  });
}

/** nginx time ("90", "90s", "5m", "1h", "500ms") in ms. */
function nginxTimeMs(value: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  const rest = value.replace(/(\d+)(ms|s|m|h|d)?/g, (_, n: string, unit: string | undefined) => {
    total += Number(n) * units[unit ?? 's']!;
    return '';
  });
  assert.equal(rest, '', `not an nginx time: ${value}`);
  return total;
}

/** The values of `directive` set directly in the block reached through `blocks` (e.g. ["stream", "server"]). */
function directiveValues(conf: string, blocks: string[], directive: string): string[] {
  const stack: string[] = [];
  const values: string[] = [];
  for (const raw of conf.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (line.endsWith('{')) stack.push(line.slice(0, -1).trim());
    else if (line === '}') stack.pop();
    else if (stack.join(' / ') === blocks.join(' / ') && line.startsWith(`${directive} `)) values.push(line.slice(directive.length, -1).trim());
  }
  return values;
}

/** What docker-compose.yml sets, with nginx's address here; the per-address cap stays on. */
const BEHIND_NGINX = { TRUSTED_PROXIES: '127.0.0.1', PROXY_PROTOCOL: '1', MAX_CONNECTIONS_PER_ADDRESS: '1000', HTTP_PORT: '0' };

/** The remoteAddress the session API of `instance` shows for `userId`'s one session. */
async function addressInSessionApi(instance: BrokerProcess, userId: string): Promise<string> {
  const body = await new ApiClient(instance.httpPort).ok<UserSessions>(`/api/session/user/${userId}`);
  assert.equal(body.sessions.length, 1, JSON.stringify(body));
  return body.sessions[0]!.remoteAddress;
}

before(async () => {
  redis = await startRedis();
  [a, b] = await Promise.all([BrokerProcess.start({ ...BEHIND_NGINX, REDIS_URL: redis.url, SERVER_NAME: 'stompd-a' }), BrokerProcess.start({ ...BEHIND_NGINX, REDIS_URL: redis.url, SERVER_NAME: 'stompd-b' })]);
  const upstreams = {
    'stompd-a': { wsPort: a.wsPort, tcpPort: a.tcpPort },
    'stompd-b': { wsPort: b.wsPort, tcpPort: b.tcpPort },
  };
  certs = makeCertificates();
  [nginx, nginxTls] = await Promise.all([startNginx(upstreams), startNginx(upstreams, { cert: certs.serverCert, key: certs.serverKey })]);
});

after(async () => {
  await Promise.all(clients.map((c) => c.deactivate()));
  for (const raw of rawClients) raw.destroy();
  for (const c of stompitClients) c.destroy(new Error('test over'));
  await Promise.all([nginx?.stop(), nginxTls?.stop()]);
  certs?.remove();
  await Promise.all([a?.stop(), b?.stop()]);
  await redis?.stop();
});

describe('deploy/nginx.conf in front of two instances sharing Redis', { timeout: 60_000 }, () => {
  it('spreads WebSocket connections over both instances (no stickiness)', async () => {
    const servers = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const landed = await connectStomp(nginx.wsPort);
      servers.add(landed.server);
      await landed.client.deactivate();
    }
    assert.deepEqual([...servers].sort(), ['stompd-a', 'stompd-b']);
  });

  it('a WebSocket publisher through nginx on instance A reaches a subscriber connected to instance B', async () => {
    const subscriber = await connectStomp(b.wsPort);
    assert.equal(subscriber.server, 'stompd-b');
    const received = firstMessage(subscriber.client, '/topic/deploy.ws');
    const publisher = await connectThroughNginxTo('stompd-a');
    const message = await publishUntil(() => publisher.publish({ destination: '/topic/deploy.ws', body: 'through nginx, from A to B' }), received);
    assert.equal(message.body, 'through nginx, from A to B');
  });

  it('raw STOMP over TCP through nginx (stream) reaches a subscriber on the other instance', async () => {
    const publisher = await RawClient.tcp(nginx.tcpPort, CLIENT_ADDRESS);
    rawClients.push(publisher);
    const landedOn = header(await publisher.connect(), 'server');
    assert.ok(landedOn === 'stompd-a' || landedOn === 'stompd-b', `landed on ${landedOn}`);
    const other = landedOn === 'stompd-a' ? b : a;
    const subscriber = await RawClient.tcp(other.tcpPort, CLIENT_ADDRESS);
    rawClients.push(subscriber);
    assert.notEqual(header(await subscriber.connect(), 'server'), landedOn);
    subscriber.sendFrame('SUBSCRIBE', { id: 's1', destination: '/topic/deploy.tcp', receipt: 'r1' });
    await subscriber.expect('RECEIPT');
    const message = await publishUntil(() => publisher.sendFrame('SEND', { destination: '/topic/deploy.tcp' }, 'through the stream proxy'), subscriber.expect('MESSAGE', DELIVERY_TIMEOUT_MS));
    assert.equal(message.body.toString(), 'through the stream proxy');
  });

  it("the session API shows the client's address, not nginx's: X-Forwarded-For on WebSocket, PROXY protocol on TCP", async () => {
    const ws = await connectStomp(nginx.wsPort, 'behind-nginx-ws');
    const wsInstance = ws.server === 'stompd-a' ? a : b;
    // X-Forwarded-For carries no port.
    assert.equal(await addressInSessionApi(wsInstance, 'behind-nginx-ws'), CLIENT_ADDRESS);
    const tcp = await RawClient.tcp(nginx.tcpPort, CLIENT_ADDRESS);
    rawClients.push(tcp);
    const tcpInstance = header(await tcp.connect({ login: 'behind-nginx-tcp' }), 'server') === 'stompd-a' ? a : b;
    assert.match(await addressInSessionApi(tcpInstance, 'behind-nginx-tcp'), /^127\.0\.0\.2:\d+$/);
    await ws.client.deactivate();
  });

  it('keeps idle connections longer than a heart-beating client may stay silent', () => {
    const conf = fs.readFileSync(NGINX_CONF, 'utf8');
    const heartbeat = parseHeartbeat(CONFIG_DEFAULTS.HEARTBEAT)!;
    // Default heart-beat interval × grace: how long stompd lets a live peer stay silent.
    const silenceMs = Math.max(heartbeat.sendMs, heartbeat.receiveMs) * Number(CONFIG_DEFAULTS.HEARTBEAT_GRACE);
    const timeouts: [string, string[]][] = [
      ['proxy_read_timeout', directiveValues(conf, ['http', 'server', 'location = /ws'], 'proxy_read_timeout')],
      ['proxy_send_timeout', directiveValues(conf, ['http', 'server', 'location = /ws'], 'proxy_send_timeout')],
      ['stream proxy_timeout', directiveValues(conf, ['stream', 'server'], 'proxy_timeout')],
    ];
    for (const [name, values] of timeouts) {
      // Set explicitly, once: nginx's own defaults are not this file's decision.
      assert.equal(values.length, 1, `${name}: expected one value, found ${JSON.stringify(values)}`);
      assert.ok(nginxTimeMs(values[0]!) > silenceMs, `${name} ${values[0]} is not above ${silenceMs} ms`);
    }
  });

  it("deploy/nginx-tls.conf: STOMP over TLS (stompit) and wss:// (stompjs) end at nginx, and the instances see the client's address", async () => {
    const ca = [fs.readFileSync(certs.caCert)];
    const overTls = await new Promise<stompit.Client>((resolve, reject) => {
      // localAddress is a net option tls.connect takes too (its types leave it out).
      const options = { host: '127.0.0.1', port: nginxTls.tcpPort, ssl: true, ca, localAddress: CLIENT_ADDRESS, connectHeaders: { host: '/', login: 'tls-at-nginx', 'heart-beat': '0,0' } };
      const client = stompit.connect(options as stompit.connect.ConnectOptions, (error, connected) => (error ? reject(error) : resolve(connected)));
      client.on('error', () => undefined);
      stompitClients.push(client);
    });
    // The registry is shared: either instance's session API lists every session.
    assert.match(await addressInSessionApi(a, 'tls-at-nginx'), /^127\.0\.0\.2:\d+$/);
    const wss = await new Promise<Landed>((resolve, reject) => {
      const client = new Client({
        webSocketFactory: () => new WebSocket(`wss://127.0.0.1:${nginxTls.wsPort}/ws`, ['v12.stomp'], { ca, localAddress: CLIENT_ADDRESS }),
        connectHeaders: { login: 'wss-at-nginx' },
        reconnectDelay: 0,
        onConnect: (frame) => resolve({ client, server: frame.headers.server ?? '' }),
        onWebSocketError: () => reject(new Error('wss error through nginx')),
      });
      clients.push(client);
      client.activate();
    });
    assert.equal(await addressInSessionApi(b, 'wss-at-nginx'), CLIENT_ADDRESS);
    // Messages cross: the wss client hears what the TLS client publishes.
    const received = firstMessage(wss.client, '/topic/deploy.tls');
    const message = await publishUntil(() => overTls.send({ destination: '/topic/deploy.tls' }).end('through TLS at nginx'), received);
    assert.equal(message.body, 'through TLS at nginx');
  });

  it('sends every new connection to the survivor when an instance dies', async () => {
    await a.kill();
    for (let i = 0; i < 4; i++) {
      const landed = await connectStomp(nginx.wsPort);
      assert.equal(landed.server, 'stompd-b');
      await landed.client.deactivate();
    }
    const publisher = await RawClient.tcp(nginx.tcpPort, CLIENT_ADDRESS);
    rawClients.push(publisher);
    assert.equal(header(await publisher.connect(), 'server'), 'stompd-b');
  });
});
