// The dashboard in a real browser (chromium) against an embedded broker with ADMIN_TOKEN: the
// sign-in form, a session a test client opens showing up with its subscriptions, search by
// user id, the kick button closing that client with ERROR KICKED, log out (after its
// confirmation) closing a user's sessions with LOGGED_OUT, the rates moving while messages
// flow, the totals, rooms, queues (depth, unacked, consumers, age), ERRORs by code, and a test
// message published from the form reaching a client. Then sign-in with an admin JWT (AUTH=jwt).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { RunningServer } from '../../src/server';
import { launchBrowser, pageErrors } from '../helpers/browser';
import { startBroker } from '../helpers/broker';
import { SECRET, mint } from '../helpers/jwt';
import { RawClient, clientsOfThisFile, connectedAs, header } from '../helpers/raw-client';
import { until } from '../helpers/until';

const TOKEN = 'dashboard-admin-token-0123456789';
/** Generous: the page refreshes every second, on a machine shared with other test files. */
const SEEN_MS = 15_000;

describe('dashboard in chromium (embedded mode)', { timeout: 120_000 }, () => {
  let broker: RunningServer;
  let browser: Browser;
  let page: Page;
  let errors: string[];
  const clients = clientsOfThisFile();

  before(async () => {
    broker = await startBroker({ HTTP_PORT: '0', ADMIN_TOKEN: TOKEN, HEARTBEAT: '0,0', PRESENCE_DESTINATIONS: '/topic/room.*' });
    browser = await launchBrowser();
    page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
    errors = pageErrors(page);
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
  });

  const row = (sessionId: string) => page.locator(`#sessions tr[data-session-id="${sessionId}"]`);

  it('asks for the admin credential, refuses a wrong one, and opens with the right one', async () => {
    await page.goto(`http://127.0.0.1:${broker.httpPort}/dashboard`);
    await page.locator('#login').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#board').isVisible(), false);
    await page.fill('#token', 'not-the-admin-token-at-all');
    await page.click('#login-form button[type=submit]');
    await page.locator('#login-error').waitFor({ state: 'visible' });
    assert.match(await page.locator('#login-error').innerText(), /invalid admin token/);
    await page.fill('#token', TOKEN);
    await page.click('#login-form button[type=submit]');
    await page.locator('#board').waitFor({ state: 'visible' });
    await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: SEEN_MS });
    // Kept for the tab: a reload stays signed in.
    await page.reload();
    await page.locator('#board').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#login').isVisible(), false);
  });

  it('shows a session a client opens, with its transport, address and subscriptions; search by user id', async () => {
    const carol = await connectedAs(clients, broker.tcpPort!, 'carol');
    carol.sendFrame('SUBSCRIBE', { id: 's1', destination: '/topic/room.7', receipt: 'r1' });
    await carol.expect('RECEIPT');
    const dave = await RawClient.ws(broker.wsPort!);
    clients.push(dave);
    const daveSession = header(await dave.connect({ login: 'dave' }), 'session')!;
    const carolSession = [...broker.sessions()].find((s) => s.userId === 'carol')!.id;

    await row(carolSession).waitFor({ timeout: SEEN_MS });
    await row(carolSession).locator('td', { hasText: '/topic/room.7' }).waitFor({ timeout: SEEN_MS });
    const cells = await row(carolSession).locator('td').allInnerTexts();
    assert.equal(cells[0], 'carol');
    assert.equal(cells[2], 'tcp');
    assert.match(cells[3]!, /^127\.0\.0\.1:\d+$/);
    await row(daveSession).waitFor({ timeout: SEEN_MS });
    assert.equal((await row(daveSession).locator('td').allInnerTexts())[2], 'ws');

    // The totals: as many sessions and users as the broker has, each with its connection.
    const tile = async (id: string) => Number(await page.locator(`#total-${id}`).innerText());
    await until(
      async () => {
        const sessions = [...broker.sessions()];
        const users = new Set(sessions.map((s) => s.userId)).size;
        return (await tile('sessions')) === sessions.length && (await tile('users')) === users && (await tile('connections')) >= sessions.length;
      },
      'the totals match the broker',
      SEEN_MS,
      200,
    );

    // The room carol is in, with her as its member.
    await page.locator('#rooms tr', { hasText: '/topic/room.7' }).locator('li', { hasText: 'carol' }).waitFor({ timeout: SEEN_MS });

    await page.fill('#search-user', 'dave');
    await page.click('#session-search button[type=submit]');
    await until(async () => (await row(carolSession).count()) === 0, 'carol filtered out', SEEN_MS);
    assert.equal(await row(daveSession).count(), 1);
    await page.click('#search-clear');
    await row(carolSession).waitFor({ timeout: SEEN_MS });
  });

  it('the kick button closes that client with ERROR KICKED; the ERROR shows under its code', async () => {
    const erin = await connectedAs(clients, broker.tcpPort!, 'erin');
    const erinSession = [...broker.sessions()].find((s) => s.userId === 'erin')!.id;
    await row(erinSession).waitFor({ timeout: SEEN_MS });
    await row(erinSession).locator('button.kick').click();
    const error = await erin.expect('ERROR', SEEN_MS);
    assert.match(header(error, 'message')!, /^KICKED/);
    await erin.waitClosed(SEEN_MS);
    await until(async () => (await row(erinSession).count()) === 0, 'the kicked session gone from the table', SEEN_MS);
    await page.locator('#errors tr[data-code="KICKED"]').waitFor({ timeout: SEEN_MS });
  });

  it('log out asks first, then closes every session of the user with LOGGED_OUT', async () => {
    const first = await connectedAs(clients, broker.tcpPort!, 'frank');
    const second = await connectedAs(clients, broker.tcpPort!, 'frank');
    const frankSession = [...broker.sessions()].find((s) => s.userId === 'frank')!.id;
    await row(frankSession).waitFor({ timeout: SEEN_MS });

    // Dismissed: nothing happens.
    page.once('dialog', (dialog) => void dialog.dismiss());
    await row(frankSession).locator('button.logout').click();
    await first.expectSilence(300);

    let question = '';
    page.once('dialog', (dialog) => {
      question = dialog.message();
      void dialog.accept();
    });
    await row(frankSession).locator('button.logout').click();
    for (const client of [first, second]) {
      assert.match(header(await client.expect('ERROR', SEEN_MS), 'message')!, /^LOGGED_OUT/);
      await client.waitClosed(SEEN_MS);
    }
    assert.match(question, /Log frank out everywhere/);
  });

  it('rates move while messages flow, and the chart draws them', async () => {
    const subscriber = await connectedAs(clients, broker.tcpPort!, 'watcher');
    subscriber.sendFrame('SUBSCRIBE', { id: 's1', destination: '/topic/ticks', receipt: 'r1' });
    await subscriber.expect('RECEIPT');
    const publisher = await connectedAs(clients, broker.tcpPort!, 'ticker');
    let isFlowing = true;
    const flow = (async () => {
      while (isFlowing) {
        for (let i = 0; i < 20; i++) publisher.sendFrame('SEND', { destination: '/topic/ticks' }, `tick ${i}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    try {
      const rate = async (name: string) => Number((await page.locator(`#rate-${name}`).innerText()).replace(/[^\d.]/g, ''));
      await until(async () => (await rate('published')) > 0 && (await rate('delivered')) > 0, 'published and delivered rates above 0', SEEN_MS, 200);
    } finally {
      isFlowing = false;
      await flow;
    }
    const rate = Number((await page.locator('#rate-published').innerText()).replace(/[^\d.]/g, ''));
    assert.ok(rate > 0);
  });

  it('publishes a test message from the form to a subscribed client', async () => {
    const reader = await connectedAs(clients, broker.tcpPort!, 'reader');
    reader.sendFrame('SUBSCRIBE', { id: 's1', destination: '/topic/dashboard-test', receipt: 'r1' });
    await reader.expect('RECEIPT');
    await page.fill('#publish input[name=destination]', '/topic/dashboard-test');
    await page.fill('#publish textarea[name=body]', 'hello from the dashboard');
    await page.click('#publish button[type=submit]');
    const message = await reader.expect('MESSAGE', SEEN_MS);
    assert.equal(message.body.toString(), 'hello from the dashboard');
    await page.locator('#publish-result', { hasText: 'published' }).waitFor({ timeout: SEEN_MS });
  });

  it('queues: depth, unacked, consumers and the age of the oldest message', async () => {
    const queueRow = page.locator('#queues tr', { hasText: '/queue/dashboard-held' });
    const cells = async () => (await queueRow.locator('td').allInnerTexts()).slice(1);
    await page.fill('#publish input[name=destination]', '/queue/dashboard-held');
    await page.fill('#publish textarea[name=body]', 'held for a consumer');
    await page.click('#publish button[type=submit]');
    // Stored, nobody consuming: depth 1, and its age shown.
    await until(async () => (await queueRow.count()) === 1 && /^1 0 0 \d+ (ms|s)$/.test((await cells()).join(' ')), 'the held message in the queues table', SEEN_MS, 200);
    // Taken by a consumer that does not ack it: unacked 1, one consumer.
    const consumer = await connectedAs(clients, broker.tcpPort!, 'consumer');
    consumer.sendFrame('SUBSCRIBE', { id: 'q', destination: '/queue/dashboard-held', ack: 'client' });
    await consumer.expect('MESSAGE', SEEN_MS);
    await until(async () => /^0 1 1 \d+ (ms|s)$/.test((await cells()).join(' ')), 'the message unacked by its one consumer', SEEN_MS, 200);
  });

  it('signing out forgets the credential', async () => {
    await page.click('#sign-out');
    await page.locator('#login').waitFor({ state: 'visible' });
    await page.reload();
    await page.locator('#login').waitFor({ state: 'visible' });
    assert.deepEqual(
      errors.filter((e) => !/401/.test(e)),
      [],
      'no script errors in the page',
    );
  });
});

describe('dashboard sign-in with an admin JWT (AUTH=jwt)', { timeout: 60_000 }, () => {
  let broker: RunningServer;
  let browser: Browser;

  before(async () => {
    broker = await startBroker({ HTTP_PORT: '0', JWT_SECRET: SECRET, ADMIN_ROLES: 'ADMIN', HEARTBEAT: '0,0' });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
  });

  it('a JWT without an admin role is refused with its reason; one with it opens the dashboard', async () => {
    const page = await (await browser.newContext()).newPage();
    const errors = pageErrors(page);
    await page.goto(`http://127.0.0.1:${broker.httpPort}/dashboard`);
    await page.fill('#token', await mint(SECRET, { sub: 'agent', role: 'AGENT' }));
    await page.click('#login-form button[type=submit]');
    await page.locator('#login-error').waitFor({ state: 'visible' });
    assert.match(await page.locator('#login-error').innerText(), /role/i);
    await page.fill('#token', await mint(SECRET, { sub: 'root', role: 'ADMIN' }));
    await page.click('#login-form button[type=submit]');
    await page.locator('#board').waitFor({ state: 'visible' });
    await page.locator('#live', { hasText: /^live/ }).waitFor({ timeout: SEEN_MS });
    assert.deepEqual(
      errors.filter((e) => !/40[13]/.test(e)),
      [],
    );
  });
});
