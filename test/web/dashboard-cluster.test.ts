// The dashboard in Redis mode, in a real browser (chromium): two real broker processes on a
// real redis-server. The dashboard of instance A lists both instances, shows a session held
// by B with its subscriptions, its room with members from both, rates that move with
// messages published on B, kicks B's session from A, sees B go once it is killed, and shows A
// degraded while Redis is away.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { BrokerProcess } from '../helpers/broker-process';
import { launchBrowser, pageErrors, screenshotFor } from '../helpers/browser';
import type { Instances } from '../helpers/api-shapes';
import { ApiClient } from '../helpers/http';
import { RawClient, clientsOfThisFile, header } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { until } from '../helpers/until';

const TOKEN = 'cluster-dashboard-token-0123456789';
const SEEN_MS = 20_000;

describe('dashboard in chromium (Redis mode, two instances)', { timeout: 150_000 }, () => {
  let redis: RedisServer;
  let a: BrokerProcess;
  let b: BrokerProcess;
  let httpA: number;
  let httpB: number;
  let browser: Browser;
  let page: Page;
  let errors: string[];
  const clients = clientsOfThisFile();

  async function start(instanceId: string): Promise<{ broker: BrokerProcess; httpPort: number }> {
    const broker = await BrokerProcess.start({
      REDIS_URL: redis.url,
      INSTANCE_ID: instanceId,
      HTTP_PORT: '0',
      ADMIN_TOKEN: TOKEN,
      HEARTBEAT: '0,0',
      INSTANCE_HEARTBEAT_MS: '300',
      PRESENCE_DESTINATIONS: '/topic/room.*',
    });
    const listening = await broker.waitForLog((line) => line.msg === 'HTTP API listening', 10_000);
    return { broker, httpPort: listening.httpPort as number };
  }

  async function connect(broker: BrokerProcess, login: string): Promise<{ client: RawClient; sessionId: string }> {
    const client = await RawClient.tcp(broker.tcpPort);
    clients.push(client);
    return { client, sessionId: header(await client.connect({ login }), 'session')! };
  }

  before(async () => {
    redis = await startRedis();
    const started = await Promise.all([start('dash-a'), start('dash-b')]);
    [a, b] = started.map((s) => s.broker) as [BrokerProcess, BrokerProcess];
    [httpA, httpB] = started.map((s) => s.httpPort) as [number, number];
    browser = await launchBrowser();
    page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
    errors = pageErrors(page);
    await page.goto(`http://127.0.0.1:${httpA}/dashboard`);
    await page.fill('#token', TOKEN);
    await page.click('#login-form button[type=submit]');
    await page.locator('#board').waitFor({ state: 'visible' });
  });

  after(async () => {
    await browser?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  const instanceRow = (id: string) => page.locator(`#instances tr[data-instance-id="${id}"]`);
  const sessionRow = (id: string) => page.locator(`#sessions tr[data-session-id="${id}"]`);

  let ben: { client: RawClient; sessionId: string };

  it('lists both instances, alive and not degraded, from either one', async () => {
    for (const id of ['dash-a', 'dash-b']) {
      await instanceRow(id).locator('.badge', { hasText: 'alive' }).waitFor({ timeout: SEEN_MS });
      await instanceRow(id).locator('.badge', { hasText: 'ok' }).waitFor({ timeout: SEEN_MS });
    }
    assert.match(await instanceRow('dash-a').innerText(), /answering/);
    // The same list from B's API.
    const fromB = await new ApiClient(httpB, TOKEN).ok<Instances>('/api/instances');
    assert.deepEqual(fromB.instances.map((i) => i.instanceId).sort(), ['dash-a', 'dash-b']);
  });

  it("shows B's session with its subscriptions and the room's members from both instances", async () => {
    // The RECEIPT does not wait for the JOIN (README, Presence): the JOIN MESSAGE may come first.
    const subscribed = async (client: RawClient): Promise<void> => {
      let frame = await client.next(5000);
      while (frame.command !== 'RECEIPT') frame = await client.next(5000);
    };
    const amy = await connect(a, 'amy');
    amy.client.sendFrame('SUBSCRIBE', { id: 'r', destination: '/topic/room.1', receipt: 'r1' });
    await subscribed(amy.client);
    ben = await connect(b, 'ben');
    ben.client.sendFrame('SUBSCRIBE', { id: 'r', destination: '/topic/room.1', receipt: 'r1' });
    await subscribed(ben.client);
    await sessionRow(ben.sessionId).locator('td', { hasText: '/topic/room.1' }).waitFor({ timeout: SEEN_MS });
    assert.match(await sessionRow(ben.sessionId).innerText(), /dash-b/);
    await sessionRow(amy.sessionId).waitFor({ timeout: SEEN_MS });
    const room = page.locator('#rooms tr', { hasText: '/topic/room.1' });
    await room.locator('li', { hasText: 'amy' }).waitFor({ timeout: SEEN_MS });
    await room.locator('li', { hasText: 'ben' }).waitFor({ timeout: SEEN_MS });
  });

  it('rates on A move with messages published on B', async () => {
    const publisher = await connect(b, 'pub');
    let isFlowing = true;
    let perTick = 20;
    const flow = (async () => {
      while (isFlowing) {
        for (let i = 0; i < perTick; i++) publisher.client.sendFrame('SEND', { destination: '/topic/room.1' }, `m${i}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    try {
      const rate = async (name: string) => Number((await page.locator(`#rate-${name}`).innerText()).replace(/[^\d.]/g, ''));
      await until(async () => (await rate('published')) > 0 && (await rate('delivered')) > 0, 'rates above 0 on A', SEEN_MS, 200);
      if (process.env.SCREENSHOTS_DIR) {
        // README's picture: a chart with some history to it.
        for (const burst of [10, 30, 45, 15, 35, 25, 40, 20]) {
          perTick = burst;
          await new Promise((resolve) => setTimeout(resolve, 5000));
        }
        await screenshotFor(page, 'dashboard.png');
      }
    } finally {
      isFlowing = false;
      await flow;
    }
  });

  it("kicks B's session from A's dashboard", async () => {
    await sessionRow(ben.sessionId).locator('button.kick').click();
    // ben is in the room the rates test published to: its messages come first.
    let frame = await ben.client.next(SEEN_MS);
    while (frame.command === 'MESSAGE') frame = await ben.client.next(SEEN_MS);
    assert.equal(frame.command, 'ERROR');
    assert.match(header(frame, 'message')!, /^KICKED/);
    await ben.client.waitClosed(SEEN_MS);
    await until(async () => (await sessionRow(ben.sessionId).count()) === 0, "ben's row gone", SEEN_MS);
  });

  it('an instance killed is shown gone, then reaped off the list', async () => {
    await b.kill();
    // The row may go between count() and innerText() (reaped meanwhile): a short read, '' when gone.
    const rowText = async (): Promise<string> =>
      instanceRow('dash-b')
        .innerText({ timeout: 500 })
        .catch(() => '');
    await until(async () => (await instanceRow('dash-b').count()) === 0 || /gone|late/.test(await rowText()), 'B shown late, gone or reaped', SEEN_MS, 100);
    await until(async () => (await instanceRow('dash-b').count()) === 0, 'B reaped off the list', SEEN_MS, 200);
    await instanceRow('dash-a').waitFor();
  });

  it("while Redis is away, A's own row says it is degraded, and why; ok again once Redis is back", async () => {
    await redis.kill();
    await instanceRow('dash-a').locator('.badge', { hasText: 'degraded: Redis connection lost' }).waitFor({ timeout: SEEN_MS });
    await page.locator('#live', { hasText: /^registry unavailable since .*: Redis connection lost$/ }).waitFor({ timeout: SEEN_MS });
    await redis.restart();
    await page.locator('#live', { hasText: /^live/ }).waitFor({ timeout: SEEN_MS });
    await instanceRow('dash-a').locator('.badge', { hasText: /^ok$/ }).waitFor({ timeout: SEEN_MS });
    assert.deepEqual(
      errors.filter((e) => !/401/.test(e)),
      [],
    );
  });
});
