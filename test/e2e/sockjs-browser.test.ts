// SockJS in a real browser (Debian's Chromium, driven by playwright-core): the page a Spring app
// would serve — sockjs-client and @stomp/stompjs from <script> tags — authenticated by the
// `access_token` cookie its login set, each SockJS transport forced once, across origins.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser, BrowserContext } from 'playwright-core';
import type { RunningServer } from '../../src/server';
import { SOCKJS_TRANSPORTS } from '../../src/transport/sockjs';
import { startBroker } from '../helpers/broker';
import { SECRET, mint } from '../helpers/jwt';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const NODE_MODULES = path.resolve(__dirname, '../../../node_modules');

/** The app's own page and the two client bundles, served from node_modules as a CDN would. */
const ASSETS: Record<string, { file: string; type: string }> = {
  '/sockjs.min.js': { file: path.join(NODE_MODULES, 'sockjs-client/dist/sockjs.min.js'), type: 'text/javascript' },
  '/stomp.umd.min.js': { file: path.join(NODE_MODULES, '@stomp/stompjs/bundles/stomp.umd.min.js'), type: 'text/javascript' },
};
const PAGE = '<!doctype html><html><head><script src="/sockjs.min.js"></script><script src="/stomp.umd.min.js"></script></head><body>chat</body></html>';

let broker: RunningServer;
let site: http.Server;
let siteOrigin: string;
let browser: Browser;
let context: BrowserContext;

before(async () => {
  site = http.createServer((request, response) => {
    const asset = ASSETS[request.url ?? ''];
    if (asset !== undefined) {
      response.writeHead(200, { 'Content-Type': asset.type });
      fs.createReadStream(asset.file).pipe(response);
      return;
    }
    response.writeHead(200, { 'Content-Type': 'text/html' });
    response.end(PAGE);
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  siteOrigin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  broker = await startBroker({ SOCKJS_PATH: '/stomp', JWT_SECRET: SECRET, ALLOWED_ORIGINS: siteOrigin, HEARTBEAT: '1000,1000' });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  context = await browser.newContext();
  // What the app's login would have set: cookies are per host, not per port, so the page's
  // cookie goes with its requests to the broker's port too (same site).
  await context.addCookies([{ name: 'access_token', value: await mint(SECRET, { sub: 'alice', role: 'CUSTOMER' }), domain: '127.0.0.1', path: '/' }]);
});

after(async () => {
  await browser?.close();
  await broker?.stop();
  site?.close();
});

interface PageResult {
  userName: string | undefined;
  body: string;
  transport: string;
}

describe('SockJS in Chromium', { timeout: 120000 }, () => {
  for (const transport of SOCKJS_TRANSPORTS) {
    it(`${transport}: the page's stompjs client connects with its cookie and gets its own user message`, async () => {
      const page = await context.newPage();
      try {
        await page.goto(`${siteOrigin}/`);
        const result = await page.evaluate(
          ({ url, forced }) =>
            new Promise<PageResult>((resolve, reject) => {
              const globals = globalThis as unknown as {
                SockJS: new (url: string, reserved: null, options: { transports: string[] }) => { transport?: string; _transport?: { transportName?: string } };
                StompJs: {
                  Client: new (config: Record<string, unknown>) => {
                    activate(): void;
                    deactivate(): Promise<void>;
                    subscribe(d: string, cb: (m: { body: string }) => void, h?: Record<string, string>): void;
                    publish(p: Record<string, unknown>): void;
                    watchForReceipt(id: string, cb: () => void): void;
                    webSocket?: { transport?: string };
                  };
                };
              };
              let socket: { transport?: string } | undefined;
              let userName: string | undefined;
              const client = new globals.StompJs.Client({
                webSocketFactory: () => (socket = new globals.SockJS(url, null, { transports: [forced] })),
                reconnectDelay: 0,
                onConnect: (frame: { headers: Record<string, string> }) => {
                  userName = frame.headers['user-name'];
                  client.watchForReceipt('subscribed', () => client.publish({ destination: `/user/${userName}/queue/notify`, body: `hello ${forced}` }));
                  client.subscribe(
                    '/user/queue/notify',
                    (message) => {
                      resolve({ userName, body: message.body, transport: socket?.transport ?? '?' });
                      void client.deactivate();
                    },
                    { receipt: 'subscribed' },
                  );
                },
                onStompError: (frame: { headers: Record<string, string> }) => reject(new Error(frame.headers['message'])),
              });
              client.activate();
              setTimeout(() => reject(new Error('no message within 30 s')), 30000);
            }),
          { url: `http://127.0.0.1:${broker.wsPort}/stomp`, forced: transport },
        );
        assert.equal(result.userName, 'alice', 'authenticated by the access_token cookie');
        assert.equal(result.body, `hello ${transport}`);
        assert.equal(result.transport, transport, 'sockjs-client used the transport it was given');
      } finally {
        await page.close();
      }
    });
  }

  it('a page from an origin not in ALLOWED_ORIGINS cannot open a SockJS session', async () => {
    const page = await context.newPage();
    try {
      // Same page, other origin: localhost is not 127.0.0.1 to the Origin check.
      await page.goto(siteOrigin.replace('127.0.0.1', 'localhost'));
      const outcome = await page.evaluate(
        (url) =>
          new Promise<string>((resolve) => {
            const SockJS = (globalThis as unknown as { SockJS: new (url: string) => { onopen: () => void; onclose: (e: { code: number }) => void } }).SockJS;
            const socket = new SockJS(url);
            socket.onopen = () => resolve('open');
            socket.onclose = (event) => resolve(`closed ${event.code}`);
          }),
        `http://127.0.0.1:${broker.wsPort}/stomp`,
      );
      assert.match(outcome, /^closed \d+$/);
    } finally {
      await page.close();
    }
  });
});
