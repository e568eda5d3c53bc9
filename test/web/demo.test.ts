// The chat demo (DEMO=1) in a real browser (chromium) against a real broker process: three
// browser contexts (three people) join a room and see who is there, chat, one writes to
// another privately (the third never sees it), one closes its tab and the others see its
// LEAVE at once (socket-closed, not a heart-beat timeout later), and when the broker restarts
// the pages reconnect by themselves and take the member list again. Every request the pages
// make goes to the broker: nothing from a CDN. How fast the pages load is measured by bench/page-load.ts, not asserted here.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { BrokerProcess } from '../helpers/broker-process';
import { launchBrowser, pageErrors, screenshotFor } from '../helpers/browser';
import { freePort } from '../helpers/free-port';
import { until } from '../helpers/until';

const SEEN_MS = 15_000;

describe('chat demo in chromium', { timeout: 120_000 }, () => {
  let broker: BrokerProcess;
  let browser: Browser;
  let env: Record<string, string>;
  let base: string;
  const requests: string[] = [];

  before(async () => {
    const [httpPort, wsPort] = [await freePort(), await freePort()];
    env = { DEMO: '1', HTTP_PORT: String(httpPort), WS_PORT: String(wsPort), STOMP_PORT: 'off' };
    base = `http://127.0.0.1:${httpPort}`;
    broker = await BrokerProcess.start(env);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
  });

  async function person(name: string): Promise<{ page: Page; errors: string[] }> {
    const page = await (await browser.newContext({ viewport: { width: 1100, height: 700 } })).newPage();
    page.on('request', (request) => requests.push(request.url()));
    const errors = pageErrors(page);
    await page.goto(`${base}/demo`);
    await page.fill('#name', name);
    await page.fill('#room', 'support');
    await page.click('#join-form button[type=submit]');
    await page.locator('#status', { hasText: 'connected' }).waitFor({ timeout: SEEN_MS });
    await member(page, name).waitFor({ timeout: SEEN_MS });
    return { page, errors };
  }

  const member = (page: Page, userId: string) => page.locator(`#members li[data-user-id="${userId}"]`);
  const logLine = (page: Page, text: string) => page.locator('#log .line', { hasText: text });

  let ann: { page: Page; errors: string[] };
  let bob: { page: Page; errors: string[] };
  let cleo: { page: Page; errors: string[] };

  it('people who join see who is there (the snapshot) and who comes after (JOIN)', async () => {
    ann = await person('ann');
    await logLine(ann.page, 'in the room: ann').waitFor({ timeout: SEEN_MS });
    bob = await person('bob');
    await member(bob.page, 'ann').waitFor({ timeout: SEEN_MS }); // from bob's snapshot
    await logLine(ann.page, 'bob joined').waitFor({ timeout: SEEN_MS });
    await member(ann.page, 'bob').waitFor({ timeout: SEEN_MS });
    cleo = await person('cleo');
    for (const { page } of [ann, bob]) await member(page, 'cleo').waitFor({ timeout: SEEN_MS });
    assert.equal(await cleo.page.locator('#member-count').innerText(), '3');
  });

  it('chat reaches everyone in the room, with the sender the broker stamped', async () => {
    await bob.page.fill('#text', 'hello everyone');
    await bob.page.click('#send');
    for (const { page } of [ann, bob, cleo]) {
      const line = logLine(page, 'hello everyone');
      await line.waitFor({ timeout: SEEN_MS });
      assert.equal(await line.locator('.from').innerText(), 'bob');
    }
  });

  it('a private message reaches only the one it is for', async () => {
    await ann.page.selectOption('#to', 'bob');
    await ann.page.fill('#text', 'psst, bob');
    await ann.page.click('#send');
    await logLine(bob.page, 'psst, bob').waitFor({ timeout: SEEN_MS });
    assert.equal(await logLine(bob.page, 'psst, bob').locator('.from').innerText(), 'ann → you');
    // Then a message to everyone: once cleo has it, the private one would have arrived before.
    await ann.page.selectOption('#to', '');
    await ann.page.fill('#text', 'thanks all');
    await ann.page.click('#send');
    await logLine(cleo.page, 'thanks all').waitFor({ timeout: SEEN_MS });
    assert.equal(await logLine(cleo.page, 'psst').count(), 0, 'cleo never sees the private message');
    await screenshotFor(ann.page, 'demo.png');
  });

  it('closing a tab is a LEAVE the others see at once (socket-closed)', async () => {
    await cleo.page.context().close();
    // The reason says the socket closed: not found by a heart-beat timeout (seconds later).
    await logLine(ann.page, 'cleo left (socket-closed)').waitFor({ timeout: 5000 });
    await logLine(bob.page, 'cleo left (socket-closed)').waitFor({ timeout: 5000 });
    assert.equal(await member(ann.page, 'cleo').count(), 0);
  });

  it('when the broker restarts, the pages reconnect with back-off and take the member list again', async () => {
    await broker.stop();
    // Attempts repeat while the broker is away (0.5 s, 1 s, 2 s, … apart).
    await ann.page.locator('#status', { hasText: 'attempt 3' }).waitFor({ timeout: SEEN_MS });
    broker = await BrokerProcess.start(env);
    for (const { page } of [ann, bob]) {
      await page.locator('#status', { hasText: /^connected$/ }).waitFor({ timeout: SEEN_MS });
      await logLine(page, 'reconnected').waitFor({ timeout: SEEN_MS });
    }
    await until(async () => (await ann.page.locator('#member-count').innerText()) === '2', 'ann sees ann and bob again', SEEN_MS);
    await member(ann.page, 'bob').waitFor({ timeout: SEEN_MS });
    await bob.page.fill('#text', 'back again');
    await bob.page.click('#send');
    await logLine(ann.page, 'back again').waitFor({ timeout: SEEN_MS });
  });

  it('loads everything from the broker itself: no CDN, no script errors', () => {
    const foreign = requests.filter((url) => !url.startsWith(base) && !url.startsWith('ws://127.0.0.1') && !url.startsWith('data:'));
    assert.deepEqual(foreign, []);
    assert.ok(
      requests.some((url) => url === `${base}/demo/stomp.umd.min.js`),
      'the stompjs bundle came from the broker',
    );
    // A WebSocket refused while the broker was down is logged by the browser itself; nothing else.
    for (const { errors } of [ann, bob])
      assert.deepEqual(
        errors.filter((e) => !/WebSocket connection to .* failed/.test(e)),
        [],
      );
  });
});
