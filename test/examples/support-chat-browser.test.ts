// examples/support-chat in Chromium: the example's own page (SockJS + stompjs, the browser code
// of a Spring app), served by the example backend, logged in by its session cookie, talking to
// stompd's SOCKJS_PATH. A customer on each SockJS transport in turn and an agent hold a
// conversation; each has its own browser context (its own cookie jar), as two people would.

import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { apiPublisher, buildSupportChat } from '../../examples/support-chat/backend';
import type { Message, SupportChat } from '../../examples/support-chat/backend';
import type { RunningServer } from '../../src/server';
import { SOCKJS_TRANSPORTS } from '../../src/transport/sockjs';
import { startBroker } from '../helpers/broker';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SECRET = 'support-chat-browser-secret-0123456789';
const WAIT_MS = 15_000;

interface ChatEvent {
  kind: string;
  [field: string]: unknown;
}

let chat: SupportChat;
let siteOrigin: string;
let broker: RunningServer;
let browser: Browser;
let publish: ((message: Message) => Promise<void>) | undefined;

async function openChat(transports: string): Promise<Page> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${siteOrigin}/?broker=${encodeURIComponent(`http://127.0.0.1:${broker.wsPort}/stomp`)}&transports=${transports}`);
  return page;
}

/** Waits until the page's chat recorded an event matching `matches`; returns it. */
async function event(page: Page, matches: (event: ChatEvent) => boolean, what: string): Promise<ChatEvent> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const events = await page.evaluate(() => (globalThis as unknown as { chat: { events: ChatEvent[] } }).chat.events);
    const found = events.find(matches);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`no ${what} within ${WAIT_MS} ms; the page saw ${JSON.stringify(events)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

before(async () => {
  chat = buildSupportChat({ secret: SECRET, publish: (message) => publish!(message) });
  await chat.app.listen({ host: '127.0.0.1', port: 0 });
  siteOrigin = `http://127.0.0.1:${(chat.app.server.address() as AddressInfo).port}`;
  broker = await startBroker({
    HTTP_PORT: '0',
    SOCKJS_PATH: '/stomp',
    ALLOWED_ORIGINS: siteOrigin,
    BACKEND_URL: `${siteOrigin}/stomp`,
    BACKEND_SECRET: SECRET,
    BACKEND_HOOKS: 'send,connect,subscribe,events',
    BACKEND_SUBSCRIBE_PATTERNS: '/topic/ticket.*',
  });
  publish = apiPublisher(`http://127.0.0.1:${broker.httpPort}`, undefined);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await broker?.stop();
  await chat?.app.close();
});

describe('examples/support-chat in Chromium over SockJS', { timeout: 180_000 }, () => {
  for (const transport of SOCKJS_TRANSPORTS) {
    it(`${transport}: a customer opens a ticket, an agent claims it, they chat, the customer's tab closes`, async () => {
      const agent = await openChat('websocket');
      const customer = await openChat(transport);
      const agentName = `agent-${transport}`;
      const customerName = `customer-${transport}`;
      assert.equal(await agent.evaluate((name) => (globalThis as unknown as { chat: { login(u: string, r: string): Promise<string> } }).chat.login(name, 'AGENT'), agentName), agentName);
      assert.equal(await customer.evaluate((name) => (globalThis as unknown as { chat: { login(u: string, r: string): Promise<string> } }).chat.login(name, 'CUSTOMER'), customerName), customerName);
      assert.equal((await event(customer, (e) => e.kind === 'connected', 'connection')).transport, transport, 'the page ran on the transport it was given');

      await customer.fill('#subject', `help over ${transport}`);
      await customer.click('#open');
      const entered = await event(customer, (e) => e.kind === 'entered', 'own ticket (reply)');
      const ticket = await event(agent, (e) => e.kind === 'ticket' && e.id === entered.id, 'the ticket on /topic/agents.tickets');
      assert.equal(ticket.subject, `help over ${transport}`);

      await agent.click(`#tickets button:has-text("#${String(entered.id)} ")`);
      assert.equal((await event(customer, (e) => e.kind === 'notify', 'the agent notice (toUser)')).agent, agentName);
      await event(customer, (e) => e.kind === 'room' && e.system === `${agentName} joined`, 'the join notice');

      await customer.fill('#text', 'my card was charged twice');
      await customer.click('#send');
      await event(agent, (e) => e.kind === 'room' && e.text === 'my card was charged twice', "the customer's message");
      await agent.fill('#text', 'refunded');
      await agent.click('#send');
      await event(customer, (e) => e.kind === 'room' && e.text === 'refunded', "the agent's answer");
      // The agent's typing subscription came before its answer (one session's frames are handled in order).
      await customer.fill('#text', 'thanks');
      await agent.waitForSelector(`#typing:has-text("${customerName} is typing")`, { timeout: WAIT_MS }); // a return value

      await customer.context().close(); // the tab goes away without a DISCONNECT frame
      const left = await event(agent, (e) => e.kind === 'room' && typeof e.system === 'string' && e.system.startsWith(`${customerName} left`), 'the leave notice from the DISCONNECT event');
      assert.match(String(left.system), /left \((socket-closed|heartbeat-timeout)\)$/);
      await agent.context().close();
    });
  }
});
