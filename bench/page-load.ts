// `node dist/bench/page-load.js [--runs N]`: how long /demo and /dashboard take to load in
// Debian's chromium, each time in a fresh browser context (nothing cached): from the
// navigation's start to the end of the load event (the HTML, its CSS and its modules run),
// and for the dashboard also until its first live figures are on screen. One broker
// (DEMO=1, embedded) for the whole run. Prints one JSON line per page with every run and
// the median. A figure for the closing note, not a test: tests never assert wall-clock time.

import type { Page } from 'playwright-core';
import { BrokerProcess } from '../test/helpers/broker-process';
import { launchBrowser } from '../test/helpers/browser';
import { freePort } from '../test/helpers/free-port';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const runsAt = process.argv.indexOf('--runs');
  const runs = runsAt > 0 ? Number.parseInt(process.argv[runsAt + 1] ?? '', 10) : 5;
  const [httpPort, wsPort] = [await freePort(), await freePort()];
  const broker = await BrokerProcess.start({ DEMO: '1', HTTP_PORT: String(httpPort), WS_PORT: String(wsPort), STOMP_PORT: 'off' });
  const browser = await launchBrowser();
  try {
    for (const path of ['/demo', '/dashboard']) {
      const loadMs: number[] = [];
      const firstFiguresMs: number[] = [];
      for (let i = 0; i < runs; i++) {
        const context = await browser.newContext();
        const page: Page = await context.newPage();
        await page.goto(`http://127.0.0.1:${httpPort}${path}`, { waitUntil: 'load' });
        loadMs.push(Math.round(await page.evaluate<number>('performance.getEntriesByType("navigation")[0].loadEventEnd')));
        if (path === '/dashboard') {
          // The sessions tile holds a number once the first overview event is drawn.
          await page.waitForFunction("/\\d/.test(document.querySelector('#total-sessions')?.textContent ?? '')", undefined, { timeout: 10_000 });
          firstFiguresMs.push(Math.round(await page.evaluate<number>('performance.now()')));
        }
        await context.close();
      }
      console.log(JSON.stringify({ page: path, runs, loadMs, medianLoadMs: median(loadMs), ...(firstFiguresMs.length > 0 ? { firstFiguresMs, medianFirstFiguresMs: median(firstFiguresMs) } : {}) }));
    }
  } finally {
    await browser.close();
    await broker.stop();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
