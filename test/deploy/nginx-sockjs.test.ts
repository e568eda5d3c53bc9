// SockJS behind the load balancer: a real nginx on deploy/nginx.conf in front of two stompd
// processes sharing Redis. SockJS's xhr transports make many HTTP requests per session; the
// conf hashes on the session id in their path, so each session's requests reach its
// instance, and sessions still spread over both.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IMessage } from '@stomp/stompjs';
import SockJS from 'sockjs-client';
import { BrokerProcess } from '../helpers/broker-process';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { startNginx } from './nginx-process';
import type { NginxProcess } from './nginx-process';

/** Sessions opened through nginx: all on one instance by chance has probability 2^-(n-1). */
const SESSIONS = 12;
const TIMEOUT_MS = 15_000;

let redis: RedisServer;
let a: BrokerProcess;
let b: BrokerProcess;
let nginx: NginxProcess;
const clients: Client[] = [];

function sockjsThroughNginx(transport: string, login: string): Promise<{ client: Client; server: string }> {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new SockJS(`http://127.0.0.1:${nginx.wsPort}/stomp`, null, { transports: [transport] }),
      connectHeaders: { login },
      reconnectDelay: 0,
      onConnect: (frame) => resolve({ client, server: frame.headers.server ?? '' }),
      onStompError: (frame) => reject(new Error(frame.headers.message)),
      onWebSocketClose: (event) => reject(new Error(`closed before CONNECTED: ${JSON.stringify(event)}`)),
    });
    clients.push(client);
    client.activate();
  });
}

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  const timeout = new Promise<T>((_, reject) => {
    setTimeout(() => reject(new Error(`${what}: nothing within ${TIMEOUT_MS} ms`)), TIMEOUT_MS).unref();
  });
  return Promise.race([promise, timeout]);
}

before(async () => {
  redis = await startRedis();
  [a, b] = await Promise.all([
    BrokerProcess.start({ REDIS_URL: redis.url, SERVER_NAME: 'stompd-a', SOCKJS_PATH: '/stomp' }),
    BrokerProcess.start({ REDIS_URL: redis.url, SERVER_NAME: 'stompd-b', SOCKJS_PATH: '/stomp' }),
  ]);
  nginx = await startNginx({
    'stompd-a': { wsPort: a.wsPort, tcpPort: a.tcpPort },
    'stompd-b': { wsPort: b.wsPort, tcpPort: b.tcpPort },
  });
});

after(async () => {
  await Promise.all(clients.map((c) => c.deactivate()));
  await nginx?.stop();
  await Promise.all([a?.stop(), b?.stop()]);
  await redis?.stop();
});

describe('deploy/nginx.conf: SockJS sessions stay on their instance', { timeout: 120_000 }, () => {
  for (const transport of ['xhr-polling', 'xhr-streaming', 'websocket']) {
    it(`${transport}: ${SESSIONS} sessions spread over both instances, and each keeps working (its requests reach its instance)`, async () => {
      const sessions = await Promise.all(Array.from({ length: SESSIONS }, (_, i) => sockjsThroughNginx(transport, `${transport}-user-${i}`)));
      assert.deepEqual([...new Set(sessions.map((s) => s.server))].sort(), ['stompd-a', 'stompd-b']);
      // Each session subscribes, then gets a user message sent by the next one (across instances
      // through Redis half the time): many polls and sends per session, all answered.
      const inboxes = sessions.map(({ client }, i) => {
        const subscribed = new Promise<void>((resolve) => client.watchForReceipt(`sub-${i}`, () => resolve()));
        let isDelivered = false;
        const message = new Promise<IMessage>((resolve) =>
          client.subscribe(
            '/user/queue/ping',
            (m) => {
              isDelivered = true;
              resolve(m);
            },
            { receipt: `sub-${i}` },
          ),
        );
        return { subscribed, message, isDelivered: () => isDelivered };
      });
      await withTimeout(Promise.all(inboxes.map((inbox) => inbox.subscribed)), 'subscriptions');
      const received = await Promise.all(
        inboxes.map(async (inbox, i) => {
          // The relay learns where each user is as their sessions register: publish until delivered.
          const sender = sessions[(i + 1) % SESSIONS]!.client;
          const deadline = Date.now() + TIMEOUT_MS;
          while (!inbox.isDelivered() && Date.now() < deadline) {
            sender.publish({ destination: `/user/${transport}-user-${i}/queue/ping`, body: `to ${i}` });
            await Promise.race([inbox.message, new Promise((resolve) => setTimeout(resolve, 500))]);
          }
          return (await withTimeout(inbox.message, `message to ${i}`)).body;
        }),
      );
      assert.deepEqual(
        received,
        Array.from({ length: SESSIONS }, (_, i) => `to ${i}`),
      );
      await Promise.all(sessions.map(({ client }) => client.deactivate()));
    });
  }
});
