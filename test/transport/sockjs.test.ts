// SockJS (SOCKJS_PATH) with the clients Spring apps use: sockjs-client as @stomp/stompjs's
// webSocketFactory, each transport forced once, against the same session core as /ws.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IFrame, IMessage, StompConfig } from '@stomp/stompjs';
import SockJS from 'sockjs-client';
import WebSocket from 'ws';
import { ConfigError, loadConfig } from '../../src/config';
import type { RunningServer } from '../../src/server';
import type { DisconnectEvent } from '../../src/session/events';
import { SOCKJS_TRANSPORTS, SockJsConnection } from '../../src/transport/sockjs';
import { startTestBackend } from '../helpers/backend';
import { startBroker } from '../helpers/broker';
import { until } from '../helpers/until';

type SockJsTransport = (typeof SOCKJS_TRANSPORTS)[number];

let broker: RunningServer;
const clients: Client[] = [];

function sockjsUrl(query = ''): string {
  return `http://127.0.0.1:${broker.wsPort}/stomp${query}`;
}

/** A stompjs client over SockJS with only `transport` allowed; resolves once CONNECTED. */
function sockjsClient(transport: SockJsTransport, config: StompConfig = {}, url = sockjsUrl()): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new SockJS(url, null, { transports: [transport] }),
      reconnectDelay: 0,
      ...config,
      onConnect: () => resolve(client),
      onStompError: (frame) => {
        config.onStompError?.(frame);
        reject(new Error(frame.headers.message));
      },
      onWebSocketClose: (event) => {
        config.onWebSocketClose?.(event);
        reject(new Error(`closed before CONNECTED: ${JSON.stringify(event)}`));
      },
    });
    clients.push(client);
    client.activate();
  });
}

function wsClient(login: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${broker.wsPort}/ws`, ['v12.stomp']),
      connectHeaders: { login },
      reconnectDelay: 0,
      onConnect: () => resolve(client),
      onStompError: (frame) => reject(new Error(frame.headers.message)),
    });
    clients.push(client);
    client.activate();
  });
}

function receipt(client: Client, id: string): Promise<void> {
  return new Promise((resolve) => client.watchForReceipt(id, () => resolve()));
}

async function subscribed(client: Client, destination: string, onMessage: (message: IMessage) => void): Promise<void> {
  const id = `sub-${Math.random()}`;
  const done = receipt(client, id);
  client.subscribe(destination, onMessage, { receipt: id });
  await done;
}

/** Subscribes (RECEIPT awaited), then hands back the first message still to come (wrapped: an async function would wait for it). */
async function firstMessage(client: Client, destination: string): Promise<{ next: Promise<IMessage> }> {
  let take!: (message: IMessage) => void;
  const next = new Promise<IMessage>((resolve) => (take = resolve));
  await subscribed(client, destination, (m) => take(m));
  return { next };
}

function sockjsSessionOf(userId: string): SockJsConnection | undefined {
  for (const session of broker.sessions()) {
    if (session.userId === userId && session.connection instanceof SockJsConnection) return session.connection;
  }
  return undefined;
}

function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method, headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on('error', reject);
    request.end();
  });
}

before(async () => {
  broker = await startBroker({ SOCKJS_PATH: '/stomp', HEARTBEAT: '1000,1000', ALLOWED_ORIGINS: 'http://app.example' }, {}, {});
});

after(async () => {
  await Promise.all(clients.map((c) => c.deactivate()));
  await broker.stop();
});

describe('SockJS with sockjs-client and @stomp/stompjs', { timeout: 60000 }, () => {
  for (const transport of SOCKJS_TRANSPORTS) {
    it(`${transport}: CONNECT, SUBSCRIBE, SEND both ways with a /ws client, receipts, heart-beats negotiated`, async () => {
      const user = `sockjs-${transport}`;
      const client = await sockjsClient(transport, { connectHeaders: { login: user }, heartbeatIncoming: 1000, heartbeatOutgoing: 1000 });
      assert.equal(client.connectedVersion, '1.2');
      assert.equal(sockjsSessionOf(user)?.sockjsTransport, transport, 'the transport forced is the one the session runs on');
      const ws = await wsClient(`ws-peer-${transport}`);

      const fromWs = await firstMessage(client, `/topic/sockjs.${transport}`);
      ws.publish({ destination: `/topic/sockjs.${transport}`, body: 'ünïcode from /ws ✓', headers: { 'x-app': 'chat' } });
      const message = await fromWs.next;
      assert.equal(message.body, 'ünïcode from /ws ✓');
      assert.equal(message.headers['x-app'], 'chat');

      const toWs = await firstMessage(ws, `/topic/back.${transport}`);
      const sent = receipt(client, `r-${transport}`);
      client.publish({ destination: `/topic/back.${transport}`, body: 'hello over SockJS', headers: { receipt: `r-${transport}` } });
      await sent;
      assert.equal((await toWs.next).body, 'hello over SockJS');

      // User destinations, as Spring apps use them.
      const own = await firstMessage(client, '/user/queue/notify');
      ws.publish({ destination: `/user/${user}/queue/notify`, body: 'for you' });
      assert.equal((await own.next).body, 'for you');
    });
  }

  it('xhr-polling: server heart-beats keep an idle client connected, and the session ends when the client leaves', async () => {
    const user = 'idle-poller';
    let closedEarly = false;
    const client = await sockjsClient('xhr-polling', { connectHeaders: { login: user }, heartbeatIncoming: 500, heartbeatOutgoing: 500, onWebSocketClose: () => (closedEarly = true) });
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal(closedEarly, false, 'stompjs saw no silence over 6 heart-beat intervals');
    assert.ok(client.connected);
    assert.ok(sockjsSessionOf(user) !== undefined);
    await client.deactivate();
    await until(() => sockjsSessionOf(user) === undefined, 'the session to end after the client left', 15000);
  });

  for (const transport of ['websocket', 'xhr-streaming'] as const) {
    it(`${transport}: a client that stops heart-beating while its transport stays open is found dead (heart-beat timeout, as on /ws)`, async () => {
      // sockjs-client without stompjs: CONNECT promises a heart-beat every 300 ms, then silence.
      const socket = new SockJS(sockjsUrl(), null, { transports: [transport] });
      const received: string[] = [];
      const closed = new Promise<void>((resolve) => (socket.onclose = () => resolve()));
      socket.onmessage = (event) => received.push(String(event.data));
      await new Promise<void>((resolve) => (socket.onopen = () => resolve()));
      socket.send('CONNECT\naccept-version:1.2\nlogin:silent-' + transport + '\nheart-beat:300,0\n\n\0');
      const reason = new Promise<string>((resolve) => {
        const listener = (event: DisconnectEvent): void => {
          if (event.session.userId !== `silent-${transport}`) return;
          broker.events.off('disconnect', listener);
          resolve(event.reason);
        };
        broker.events.on('disconnect', listener);
      });
      await until(() => received.some((data) => data.startsWith('CONNECTED')), 'CONNECTED');
      assert.equal(await reason, 'heartbeat-timeout');
      await closed;
    });
  }

  it('a SockJS client that stops polling is a slow consumer: its topic messages are dropped (counted), memory stays bounded', async () => {
    const limited = await startBroker({ SOCKJS_PATH: '/stomp', WRITE_BUFFER_LIMIT_BYTES: '65536' });
    try {
      // The xhr-polling protocol by hand: a client that polls until subscribed, then stops.
      const base = `http://127.0.0.1:${limited.wsPort}/stomp/000/slowreader`;
      const post = async (suffix: string, body?: string): Promise<string> => {
        const response = await fetch(`${base}/${suffix}`, { method: 'POST', ...(body === undefined ? {} : { body, headers: { 'content-type': 'text/plain' } }) });
        return response.text();
      };
      assert.equal((await post('xhr')).trim(), 'o');
      await post('xhr_send', JSON.stringify(['CONNECT\naccept-version:1.2\nlogin:slow-reader\nheart-beat:0,0\n\n\0', 'SUBSCRIBE\nid:1\ndestination:/topic/flood\nreceipt:r1\n\n\0']));
      let polled = '';
      while (!polled.includes('receipt-id:r1')) polled += await post('xhr');
      const publisher = await new Promise<Client>((resolve) => {
        const c = new Client({ webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${limited.wsPort}/ws`, ['v12.stomp']), reconnectDelay: 0, onConnect: () => resolve(c) });
        clients.push(c);
        c.activate();
      });
      const body = 'x'.repeat(16 * 1024);
      for (let i = 0; i < 200; i++) publisher.publish({ destination: '/topic/flood', body }); // 3.2 MB, no poll
      const session = () => [...limited.sessions()].find((s) => s.userId === 'slow-reader');
      await until(() => (session()?.droppedMessages ?? 0) > 0, 'drops for the reader that stopped polling');
      const held = session()!.connection.bufferedBytes;
      assert.ok(held < 1024 * 1024, `held ${held} bytes for it, not the 3.2 MB published`);
      assert.ok(session()!.isOpen, 'policy drop: the session stays');
      await publisher.deactivate();
    } finally {
      await limited.stop();
    }
  });

  it('a frame over MAX_FRAME_BYTES gets ERROR FRAME_TOO_LARGE, as on /ws', async () => {
    const client = await sockjsClient('xhr-streaming', { connectHeaders: { login: 'too-large' } });
    const error = new Promise<IFrame>((resolve) => (client.onStompError = resolve));
    client.publish({ destination: '/topic/big', body: 'x'.repeat(4 * 1024 * 1024 + 10) });
    assert.match((await error).headers.message ?? '', /^FRAME_TOO_LARGE/);
  });

  it('a body that is not UTF-8 closes the SockJS session with ERROR BINARY_NOT_SUPPORTED (never a corrupt frame); /ws subscribers get it', async () => {
    const sockjs = await sockjsClient('websocket', { connectHeaders: { login: 'text-only' } });
    const ws = await wsClient('binary-publisher');
    const wsGot = await firstMessage(ws, '/topic/binary');
    const error = new Promise<IFrame>((resolve) => (sockjs.onStompError = resolve));
    let corrupt = 0;
    await subscribed(sockjs, '/topic/binary', () => corrupt++);
    ws.publish({ destination: '/topic/binary', binaryBody: new Uint8Array([0xff, 0x00, 0xfe]), headers: { 'content-type': 'application/octet-stream' } });
    assert.match((await error).headers.message ?? '', /^BINARY_NOT_SUPPORTED/);
    await until(() => sockjsSessionOf('text-only') === undefined, 'the SockJS session to end');
    assert.deepEqual([...(await wsGot.next).binaryBody], [0xff, 0x00, 0xfe]);
    assert.equal(corrupt, 0, 'no corrupt MESSAGE reached the SockJS client');
  });

  it('the Origin check of /ws applies to every SockJS request; the other SockJS transports are not served', async () => {
    assert.equal((await get(sockjsUrl('/info'), { origin: 'http://evil.example' })).status, 403);
    const info = await get(sockjsUrl('/info'), { origin: 'http://app.example' });
    assert.equal(info.status, 200);
    assert.equal((JSON.parse(info.body) as { websocket: boolean }).websocket, true);
    assert.equal((await get(sockjsUrl('/info'))).status, 200, 'no Origin: not a browser, not cross-site');
    assert.equal((await get(sockjsUrl('/000/abcdefgh/xhr_streaming'), { origin: 'http://evil.example' }, 'POST')).status, 403);
    for (const other of ['/000/abcdefgh/jsonp', '/000/abcdefgh/eventsource', '/000/abcdefgh/htmlfile', '/iframe.html', '/000/abcdefgh/nonsense', '/a/b']) {
      assert.equal((await get(sockjsUrl(other))).status, 404, other);
    }
    const refused = new WebSocket(`ws://127.0.0.1:${broker.wsPort}/stomp/000/abcdefgh/websocket`, { origin: 'http://evil.example' });
    const status = await new Promise<number>((resolve) => refused.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0)));
    assert.equal(status, 403);
  });

  it('<path>/websocket is plain STOMP over WebSocket, as /ws (Spring serves it beside SockJS): same session core, same Origin check', async () => {
    const client = await new Promise<Client>((resolve, reject) => {
      const c = new Client({
        webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${broker.wsPort}/stomp/websocket?access_token=kept`, ['v12.stomp']),
        connectHeaders: { login: 'raw-ws' },
        reconnectDelay: 0,
        onConnect: () => resolve(c),
        onStompError: (frame) => reject(new Error(frame.headers.message)),
      });
      clients.push(c);
      c.activate();
    });
    const session = [...broker.sessions()].find((s) => s.userId === 'raw-ws');
    assert.ok(session !== undefined && !(session.connection instanceof SockJsConnection), 'a WebSocket session like /ws');
    assert.equal(session.peer.url, '/ws?access_token=kept');
    const echo = await firstMessage(client, '/topic/raw');
    client.publish({ destination: '/topic/raw', body: 'plain' });
    assert.equal((await echo.next).body, 'plain');
    await client.deactivate();
    const refused = new WebSocket(`ws://127.0.0.1:${broker.wsPort}/stomp/websocket`, { origin: 'http://evil.example' });
    const status = await new Promise<number>((resolve) => refused.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0)));
    assert.equal(status, 403);
  });

  for (const transport of SOCKJS_TRANSPORTS)
    it(`${transport}: SENDs to a slow backend hook reach it one at a time and in order (later sends wait unread)`, async () => {
      const backend = await startTestBackend();
      let inFlight = 0;
      let maxInFlight = 0;
      backend.on('send', async (call: Record<string, unknown>) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 300));
        inFlight--;
        return { reply: [{ destination: '/queue/done', body: String(call.lookup) }] };
      });
      const hooked = await startBroker({ SOCKJS_PATH: '/stomp', BACKEND_URL: backend.url });
      try {
        const client = await sockjsClient(transport, { connectHeaders: { login: 'slow-app' } }, `http://127.0.0.1:${hooked.wsPort}/stomp`);
        const done: string[] = [];
        const allDone = new Promise<void>((resolve) =>
          client.subscribe('/user/queue/done', (m) => {
            done.push(m.body);
            if (done.length === 4) resolve();
          }),
        );
        const paused = until(() => [...hooked.sessions()].some((s) => s.connection instanceof SockJsConnection && s.connection.isReadingPaused), 'the session to stop reading while the hook runs');
        for (const step of ['a', 'b', 'c', 'd']) client.publish({ destination: `/app/${step}` });
        await paused;
        await allDone;
        assert.deepEqual(done, ['/a', '/b', '/c', '/d']);
        assert.equal(maxInFlight, 1);
        await client.deactivate();
      } finally {
        await hooked.stop();
        await backend.close();
      }
    });

  it("the cookie-credential rule of /ws holds for SockJS: another site's page cannot ride the access_token cookie", async () => {
    const jwtBroker = await startBroker({ SOCKJS_PATH: '/stomp', JWT_SECRET: 'sockjs-cookie-rule-secret-0123456789abcdef' });
    try {
      const url = (suffix: string) => `http://127.0.0.1:${jwtBroker.wsPort}/stomp${suffix}`;
      const foreign = await get(url('/info'), { origin: 'http://evil.example', cookie: 'access_token=eyJ.x.y' });
      assert.equal(foreign.status, 403);
      assert.match(foreign.body, /cookie credential/);
      assert.equal((await get(url('/000/abcdefgh/xhr_streaming'), { origin: 'http://evil.example', cookie: 'access_token=eyJ.x.y' }, 'POST')).status, 403);
      const own = await get(url('/info'), { origin: `http://127.0.0.1:${jwtBroker.wsPort}`, host: `127.0.0.1:${jwtBroker.wsPort}`, cookie: 'access_token=eyJ.x.y' });
      assert.equal(own.status, 200, "the broker's own origin may");
      assert.equal((await get(url('/info'), { origin: 'http://evil.example' })).status, 200, 'no cookie: nothing to ride');
    } finally {
      await jwtBroker.stop();
    }
  });

  it('behind a trusted proxy, the SockJS session has the client address its X-Forwarded-For names, as on /ws', async () => {
    const proxied = await startBroker({ SOCKJS_PATH: '/stomp', TRUSTED_PROXIES: '127.0.0.1' });
    try {
      const client = new Client({
        webSocketFactory: () =>
          new SockJS(`http://127.0.0.1:${proxied.wsPort}/stomp`, null, { transports: ['websocket'], transportOptions: { websocket: { headers: { 'x-forwarded-for': '203.0.113.7' } } } } as SockJS.Options),
        connectHeaders: { login: 'behind-proxy' },
        reconnectDelay: 0,
      });
      clients.push(client);
      const connected = new Promise<void>((resolve) => (client.onConnect = () => resolve()));
      client.activate();
      await connected;
      const session = [...proxied.sessions()].find((s) => s.userId === 'behind-proxy');
      assert.ok(session?.connection instanceof SockJsConnection);
      assert.match(session.peer.remoteAddress, /^203\.0\.113\.7(:|$)/);
      await client.deactivate();
    } finally {
      await proxied.stop();
    }
  });

  it('an xhr_send body over the limit is refused before it is read (413)', async () => {
    const response = await new Promise<number>((resolve, reject) => {
      const request = http.request(sockjsUrl('/000/oversized/xhr_send'), { method: 'POST', headers: { 'content-length': String(20 * 1024 * 1024) } }, (r) => resolve(r.statusCode ?? 0));
      request.on('error', reject);
      request.end();
    });
    assert.equal(response, 413);
  });

  it('the opening request (its URL with access_token, its headers, its address) is the session peer, as on /ws', async () => {
    // This broker runs AUTH=none; the URL and headers reach the session all the same.
    const client = await sockjsClient('xhr-polling', { connectHeaders: { login: 'peer-check' } }, sockjsUrl('?access_token=abc'));
    const connection = sockjsSessionOf('peer-check');
    assert.ok(connection !== undefined);
    assert.match(connection.peer.url ?? '', /\/stomp\/[^/]+\/[^/]+\/xhr\?access_token=abc$/);
    assert.match(connection.peer.remoteAddress, /^127\.0\.0\.1:\d+$/);
    assert.equal(typeof connection.peer.headers?.['host'], 'string');
    await client.deactivate();
  });
});

describe('SOCKJS_PATH', () => {
  it('is off by default; a bad path, one that overlaps WS_PATH, or WS_PORT=off stops the start naming SOCKJS_PATH', () => {
    assert.equal(loadConfig({}).sockjsPath, undefined);
    assert.equal(loadConfig({ SOCKJS_PATH: '/stomp' }).sockjsPath, '/stomp');
    assert.equal(loadConfig({ SOCKJS_PATH: '/api/v1/stomp-sockjs' }).sockjsPath, '/api/v1/stomp-sockjs');
    for (const env of [{ SOCKJS_PATH: 'stomp' }, { SOCKJS_PATH: '/stomp/' }, { SOCKJS_PATH: '/st.mp' }, { SOCKJS_PATH: '/ws' }, { SOCKJS_PATH: '/a', WS_PATH: '/a/ws' }, { SOCKJS_PATH: '/stomp', WS_PORT: 'off' }]) {
      assert.throws(
        () => loadConfig(env),
        (e: unknown) => e instanceof ConfigError && e.variable === 'SOCKJS_PATH',
        JSON.stringify(env),
      );
    }
  });
});

describe('SockJS loading', { timeout: 30000 }, () => {
  it('without SOCKJS_PATH the process never loads sockjs; with it, it does', () => {
    for (const sockjsPath of ['', '/stomp']) {
      const script = `
        const { startBroker } = require(${JSON.stringify(path.resolve(__dirname, '../helpers/broker.js'))});
        startBroker({ HEARTBEAT: '0,0', SOCKJS_PATH: '${sockjsPath}' }).then(async (b) => {
          const loaded = Object.keys(require.cache).filter((f) => f.includes('/node_modules/sockjs/') || f.endsWith('/src/transport/sockjs.js'));
          await b.stop();
          process.stdout.write(String(loaded.length));
        });`;
      const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
      assert.equal(result.status, 0, result.stderr);
      if (sockjsPath === '') assert.equal(result.stdout, '0');
      else assert.ok(Number(result.stdout) > 2, `loaded ${result.stdout} modules`);
    }
  });
});
