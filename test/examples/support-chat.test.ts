// examples/support-chat (a Spring support chat's controllers as a Fastify backend) with stompd
// and unchanged stompjs clients, cookie-authenticated: the whole conversation through the
// hooks. The backend validates every call against the OpenAPI document's `webhooks`
// schemas, so the published contract is the one stompd speaks.

import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IFrame, IMessage } from '@stomp/stompjs';
import SockJS from 'sockjs-client';
import WebSocket from 'ws';
import { apiPublisher, buildSupportChat } from '../../examples/support-chat/backend';
import type { Message, SupportChat } from '../../examples/support-chat/backend';
import { hookWebhooks } from '../../src/http/hook-schemas';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';

const SECRET = 'support-chat-signing-secret-0123456789';
const TIMEOUT_MS = 10_000;

let chat: SupportChat;
let backendUrl: string;
let broker: RunningServer;
let publish: ((message: Message) => Promise<void>) | undefined;
/** Hook calls the backend refused (a call that does not match the documented schema gets 400). */
const refusedCalls: string[] = [];
const clients: Client[] = [];

async function login(userId: string, role: 'CUSTOMER' | 'AGENT'): Promise<string> {
  const response = await fetch(`${backendUrl}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId, role }) });
  assert.equal(response.status, 200);
  return (response.headers.get('set-cookie') ?? '').split(';', 1)[0]!;
}

/** An unchanged stompjs client whose handshake carries the browser's cookie (as a browser sends it). */
function connect(cookie: string | undefined): Promise<{ client: Client; connected: IFrame }> {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${broker.wsPort}/ws`, ['v12.stomp'], cookie === undefined ? {} : { headers: { cookie } }),
      reconnectDelay: 0,
      onConnect: (connected) => resolve({ client, connected }),
      onStompError: (frame) => reject(new Error(frame.headers.message)),
    });
    clients.push(client);
    client.activate();
  });
}

/** Subscribes (RECEIPT awaited); `next()` is the next message not taken yet. */
async function subscription(client: Client, destination: string): Promise<{ next(): Promise<IMessage> }> {
  const arrived: IMessage[] = [];
  const waiting: ((message: IMessage) => void)[] = [];
  const receipt = `r-${Math.random()}`;
  const subscribed = new Promise<void>((resolve) => client.watchForReceipt(receipt, () => resolve()));
  client.subscribe(
    destination,
    (message) => {
      const taker = waiting.shift();
      if (taker) taker(message);
      else arrived.push(message);
    },
    { receipt },
  );
  await subscribed;
  return {
    next: () =>
      arrived.length > 0
        ? Promise.resolve(arrived.shift()!)
        : new Promise<IMessage>((resolve, reject) => {
            waiting.push(resolve);
            setTimeout(() => reject(new Error(`nothing on ${destination} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS).unref();
          }),
  };
}

function sendWithReceipt(client: Client, destination: string, body: unknown): Promise<void> {
  const receipt = `s-${Math.random()}`;
  const done = new Promise<void>((resolve) => client.watchForReceipt(receipt, () => resolve()));
  client.publish({ destination, body: JSON.stringify(body), headers: { receipt, 'content-type': 'application/json' } });
  return done;
}

before(async () => {
  const callSchemas = Object.fromEntries(Object.entries(hookWebhooks).map(([hook, webhook]) => [hook, webhook.post.requestBody.content['application/json'].schema]));
  chat = buildSupportChat({ secret: SECRET, callSchemas, publish: (message) => publish!(message) });
  chat.app.addHook('onResponse', async (request, reply) => {
    if (request.url.startsWith('/stomp/') && reply.statusCode >= 400) refusedCalls.push(`${request.url} ${reply.statusCode}`);
  });
  await chat.app.listen({ host: '127.0.0.1', port: 0 });
  backendUrl = `http://127.0.0.1:${(chat.app.server.address() as AddressInfo).port}`;
  broker = await startBroker({
    HTTP_PORT: '0',
    SOCKJS_PATH: '/stomp',
    BACKEND_URL: `${backendUrl}/stomp`,
    BACKEND_SECRET: SECRET,
    BACKEND_HOOKS: 'send,connect,subscribe,events,refresh',
    BACKEND_SUBSCRIBE_PATTERNS: '/topic/ticket.*',
  });
  publish = apiPublisher(`http://127.0.0.1:${broker.httpPort}`, undefined);
});

after(async () => {
  await Promise.all(clients.map((c) => c.deactivate()));
  await broker?.stop();
  await chat?.app.close();
});

describe('examples/support-chat behind stompd', { timeout: 90_000 }, () => {
  it('a customer and an agent hold a support conversation through the hooks, with the browser code of the Spring app', async () => {
    await assert.rejects(connect(undefined), /UNAUTHENTICATED/, 'no session cookie: refused by the CONNECT hook');

    const agent = await connect(await login('alex', 'AGENT'));
    assert.equal(agent.connected.headers['user-name'], 'alex', 'the cookie decided the user');
    const newTickets = await subscription(agent.client, '/topic/agents.tickets');
    const openBefore = await subscription(agent.client, '/app/tickets.open'); // @SubscribeMapping
    assert.deepEqual(JSON.parse((await openBefore.next()).body), []);

    const customer = await connect(await login('carol', 'CUSTOMER'));
    const myTicket = await subscription(customer.client, '/user/queue/ticket');
    const notices = await subscription(customer.client, '/user/queue/notify');
    await sendWithReceipt(customer.client, '/app/ticket.open', { subject: 'refund' });
    const ticket = JSON.parse((await myTicket.next()).body) as { id: string; customer: string; subject: string };
    assert.deepEqual({ customer: ticket.customer, subject: ticket.subject }, { customer: 'carol', subject: 'refund' });
    assert.equal((JSON.parse((await newTickets.next()).body) as { id: string }).id, ticket.id, '@SendTo reached the agents');

    // Only the ticket's customer and agent may subscribe to it (SUBSCRIBE hook).
    const mallory = await connect(await login('mallory', 'CUSTOMER'));
    const malloryErrors = await subscription(mallory.client, '/user/queue/errors');
    const refused = new Promise<IFrame>((resolve) => (mallory.client.onStompError = resolve));
    const otherMallory = await connect(await login('mallory2', 'CUSTOMER'));
    const forbidden = new Promise<IFrame>((resolve) => (otherMallory.client.onStompError = resolve));
    otherMallory.client.subscribe(`/topic/ticket.${ticket.id}`, () => assert.fail('not her ticket'));
    assert.match((await forbidden).headers.message ?? '', /^FORBIDDEN/);

    const customerRoom = await subscription(customer.client, `/topic/ticket.${ticket.id}`);
    await sendWithReceipt(agent.client, '/app/ticket.claim', { ticketId: ticket.id });
    assert.deepEqual(JSON.parse((await notices.next()).body), { ticketId: ticket.id, agent: 'alex' }, 'convertAndSendToUser');
    assert.deepEqual(JSON.parse((await customerRoom.next()).body), { system: 'alex joined' });
    const agentRoom = await subscription(agent.client, `/topic/ticket.${ticket.id}`);
    const agentTyping = await subscription(agent.client, `/topic/ticket.${ticket.id}.typing`);

    await sendWithReceipt(customer.client, '/app/chat.send', { ticketId: ticket.id, text: 'I was charged twice' });
    for (const room of [customerRoom, agentRoom]) {
      const message = await room.next();
      assert.deepEqual(JSON.parse(message.body), { from: 'carol', text: 'I was charged twice' });
      assert.equal(message.headers['x-ticket'], ticket.id);
    }

    // @MessageExceptionHandler: the error reaches the sender only, and its connection stays.
    mallory.client.publish({ destination: '/app/chat.send', body: JSON.stringify({ ticketId: ticket.id, text: 'hi' }) });
    const error = await malloryErrors.next();
    assert.equal(error.headers['x-error-code'], 'NOT_IN_TICKET');
    await sendWithReceipt(mallory.client, '/app/ticket.open', { subject: 'mine' });
    assert.ok(mallory.client.connected);
    await Promise.race([refused.then(() => assert.fail('no ERROR for a non-fatal error')), new Promise((resolve) => setTimeout(resolve, 200))]);

    // A return value goes to /topic + the @MessageMapping path.
    customer.client.publish({ destination: `/app/ticket.${ticket.id}.typing`, body: '' });
    assert.deepEqual(JSON.parse((await agentTyping.next()).body), { userId: 'carol' });

    // The customer's tab dies without DISCONNECT: the DISCONNECT event tells the backend, which tells the ticket.
    (customer.client.webSocket as unknown as WebSocket).terminate();
    assert.deepEqual(JSON.parse((await agentRoom.next()).body), { system: 'carol left (socket-closed)' });
    assert.equal(chat.tickets.get(ticket.id)?.isCustomerOnline, false);

    assert.deepEqual(refusedCalls, [], 'every call was signed and matched the OpenAPI schemas');
  });

  it('the OpenAPI document served by stompd holds those schemas as webhooks, one per hook', async () => {
    const response = await fetch(`http://127.0.0.1:${broker.httpPort}/api/openapi.json`);
    const doc = (await response.json()) as { openapi: string; webhooks: Record<string, { post: { requestBody: unknown; responses: Record<string, unknown> } }> };
    assert.match(doc.openapi, /^3\.1\./, 'webhooks need OpenAPI 3.1');
    assert.deepEqual(Object.keys(doc.webhooks).sort(), ['connect', 'events', 'refresh', 'send', 'subscribe']);
    assert.deepEqual(doc.webhooks, JSON.parse(JSON.stringify(hookWebhooks)), 'the document serves the schemas the backend validated against');
    for (const hook of ['send', 'connect', 'subscribe', 'refresh']) assert.ok(doc.webhooks[hook]!.post.responses['200'], `${hook} documents its answer`);
  });

  // sockjs-client in Node passes headers to its websocket transport only; the xhr ones carry
  // a browser's cookies in test/examples/support-chat-browser.test.ts.
  for (const transport of ['websocket'] as const) {
    it(`over SockJS (${transport}): the cookie of the session's requests logs the customer in; none: refused`, async () => {
      const sockjsClient = (cookie: string | undefined) =>
        new Client({
          // In Node, sockjs-client sends what transportOptions says; a browser sends its cookies itself.
          webSocketFactory: () =>
            new SockJS(`http://127.0.0.1:${broker.wsPort}/stomp`, null, { transports: [transport], transportOptions: { [transport]: cookie === undefined ? {} : { headers: { cookie } } } } as SockJS.Options),
          reconnectDelay: 0,
        });
      const anonymous = sockjsClient(undefined);
      clients.push(anonymous);
      const refused = new Promise<IFrame>((resolve) => (anonymous.onStompError = resolve));
      anonymous.activate();
      assert.match((await refused).headers.message ?? '', /^UNAUTHENTICATED/, 'no cookie: refused by the CONNECT hook, never admitted');

      const dora = sockjsClient(await login(`dora-${transport}`, 'CUSTOMER'));
      clients.push(dora);
      const connected = new Promise<IFrame>((resolve, reject) => {
        dora.onConnect = resolve;
        dora.onStompError = (frame) => reject(new Error(frame.headers.message));
      });
      dora.activate();
      assert.equal((await connected).headers['user-name'], `dora-${transport}`);
      const myTicket = await subscription(dora, '/user/queue/ticket');
      await sendWithReceipt(dora, '/app/ticket.open', { subject: `over ${transport}` });
      assert.equal((JSON.parse((await myTicket.next()).body) as { subject: string }).subject, `over ${transport}`);
      await dora.deactivate();
      assert.deepEqual(refusedCalls, []);
    });
  }
});
