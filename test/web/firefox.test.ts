// The dashboard and the chat demo in Firefox too (Debian's firefox-esr, driven over WebDriver
// BiDi by puppeteer-core, page code passed as strings since tsconfig has no DOM types; .ci/run installs it, nothing is downloaded): the pages are plain
// JavaScript modules, so what chromium runs, Firefox must run as well. The dashboard goes
// live and shows a session a test client opens; two people chat in the demo.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import puppeteer from 'puppeteer-core';
import type { Browser, Page } from 'puppeteer-core';
import { BrokerProcess } from '../helpers/broker-process';
import { freePort } from '../helpers/free-port';
import { RawClient, clientsOfThisFile } from '../helpers/raw-client';

const FIREFOX = process.env.FIREFOX_PATH ?? '/usr/bin/firefox-esr';
const SEEN_MS = 15_000;
const clients = clientsOfThisFile();

describe('dashboard and demo in firefox', { timeout: 120_000 }, () => {
  let broker: BrokerProcess;
  let browser: Browser;
  let base: string;
  let stompPort: number;
  const profiles: string[] = [];

  before(async () => {
    if (!fs.existsSync(FIREFOX)) throw new Error(`${FIREFOX} is missing: apt-get install -y firefox-esr (.ci/run does)`);
    const [httpPort, wsPort] = [await freePort(), await freePort()];
    stompPort = await freePort();
    broker = await BrokerProcess.start({ DEMO: '1', HTTP_PORT: String(httpPort), WS_PORT: String(wsPort), STOMP_PORT: String(stompPort) });
    base = `http://127.0.0.1:${httpPort}`;
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-firefox-'));
    profiles.push(profile);
    browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true, args: ['--profile', profile] });
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
    for (const profile of profiles) fs.rmSync(profile, { recursive: true, force: true });
  });

  async function open(url: string): Promise<{ page: Page; errors: string[] }> {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(url, { waitUntil: 'load' });
    return { page, errors };
  }

  it('the dashboard goes live and lists a session a client opens', async () => {
    const { page, errors } = await open(`${base}/dashboard`);
    await page.waitForFunction("/^live/.test(document.getElementById('live')?.textContent ?? '')", { timeout: SEEN_MS });
    const client = await RawClient.tcp(stompPort);
    clients.push(client);
    await client.connect({ login: 'firefox-watched' });
    await page.waitForFunction("document.body.textContent.includes('firefox-watched')", { timeout: SEEN_MS });
    assert.deepEqual(errors, []);
  });

  it('two people chat in the demo', async () => {
    const join = async (name: string): Promise<{ page: Page; errors: string[] }> => {
      const person = await open(`${base}/demo`);
      await person.page.type('#name', name);
      await person.page.evaluate("document.getElementById('room').value = ''");
      await person.page.type('#room', 'firefox');
      await person.page.click('#join-form button[type=submit]');
      await person.page.waitForSelector(`#members li[data-user-id="${name}"]`, { timeout: SEEN_MS });
      return person;
    };
    const ann = await join('ann');
    const bob = await join('bob');
    await ann.page.waitForSelector('#members li[data-user-id="bob"]', { timeout: SEEN_MS });
    await bob.page.type('#text', 'hello from firefox');
    await bob.page.keyboard.press('Enter');
    await ann.page.waitForFunction("[...document.querySelectorAll('#log .line')].some((line) => line.textContent.includes('hello from firefox'))", { timeout: SEEN_MS });
    assert.deepEqual([...ann.errors, ...bob.errors], []);
  });
});
