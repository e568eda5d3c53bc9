// Issue 21, point 5, from outside: /metrics carries a bounded number of per-queue series
// (the deepest METRICS_QUEUE_SERIES queues, plus totals), none when told so, and can require
// a credential (METRICS_TOKEN or the admin's).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config';
import type { RunningServer } from '../../src/server';
import { encodeFrame } from '../../src/codec';
import { startBroker } from '../helpers/broker';
import { ApiClient, parsePrometheus } from '../helpers/http';
import { RawClient } from '../helpers/raw-client';

const ADMIN = 'metrics-test-admin-token-012345';
const SCRAPER = 'metrics-test-scraper-token-6789';

/** One client creates `count` queues of one message each, and three deeper ones; resolves once all are stored. */
async function fillQueues(broker: RunningServer, count: number): Promise<void> {
  const client = await RawClient.tcp(broker.tcpPort!);
  try {
    await client.connect({ login: 'noisy' });
    const frames: Buffer[] = [];
    for (let i = 0; i < count; i++) frames.push(encodeFrame({ command: 'SEND', headers: [['destination', `/queue/invoices.user${i}@example.com`]], body: Buffer.from('x') }, '1.2'));
    for (const [name, depth] of [
      ['deep.a', 9],
      ['deep.b', 8],
      ['deep.c', 7],
    ] as const) {
      for (let i = 0; i < depth; i++) frames.push(encodeFrame({ command: 'SEND', headers: [['destination', `/queue/${name}`]], body: Buffer.from('x') }, '1.2'));
    }
    frames.push(
      encodeFrame(
        {
          command: 'SEND',
          headers: [
            ['destination', '/queue/deep.c'],
            ['receipt', 'all'],
          ],
          body: Buffer.from('x'),
        },
        '1.2',
      ),
    );
    client.send(Buffer.concat(frames));
    await client.expect('RECEIPT', 30_000);
  } finally {
    client.destroy();
  }
}

function queueSeries(text: string): string[] {
  return [...parsePrometheus(text).keys()].filter((key) => key.startsWith('stompd_queue_depth{'));
}

describe('/metrics: per-queue series are bounded', { timeout: 60_000 }, () => {
  it('1,000 queues from one client: 20 series (the deepest), plus totals; the scrape does not grow with the queues', async () => {
    const broker = await startBroker({ HEARTBEAT: '0,0', HTTP_PORT: '0', ADMIN_TOKEN: ADMIN });
    try {
      const api = new ApiClient(broker.httpPort!);
      const before = (await api.get('/metrics')).text.length;
      await fillQueues(broker, 1000);
      const scrape = await api.get('/metrics');
      assert.equal(scrape.status, 200);
      const series = queueSeries(scrape.text);
      assert.equal(series.length, 20);
      for (const deep of ['deep.a', 'deep.b', 'deep.c']) assert.ok(series.includes(`stompd_queue_depth{queue="/queue/${deep}"}`), deep);
      const samples = parsePrometheus(scrape.text);
      assert.equal(samples.get('stompd_queue_depth{queue="/queue/deep.a"}'), 9);
      assert.equal(samples.get('stompd_queues'), 1003);
      assert.equal(samples.get('stompd_queues_depth'), 1000 + 9 + 8 + 8);
      assert.equal(samples.get('stompd_queues_unacked'), 0);
      assert.ok(scrape.text.length - before < 10_000, `the scrape grew by ${scrape.text.length - before} bytes for 1,003 queues`);
    } finally {
      await broker.stop();
    }
  });

  it('METRICS_QUEUE_SERIES=0: totals only, no queue name in the scrape', async () => {
    const broker = await startBroker({ HEARTBEAT: '0,0', HTTP_PORT: '0', ADMIN_TOKEN: ADMIN, METRICS_QUEUE_SERIES: '0' });
    try {
      await fillQueues(broker, 50);
      const scrape = await new ApiClient(broker.httpPort!).get('/metrics');
      assert.deepEqual(queueSeries(scrape.text), []);
      assert.doesNotMatch(scrape.text, /example\.com|deep\.a|queue="/);
      assert.equal(parsePrometheus(scrape.text).get('stompd_queues'), 53);
    } finally {
      await broker.stop();
    }
  });
});

describe('/metrics can require a credential', { timeout: 60_000 }, () => {
  it("METRICS_TOKEN: the scraper's token or the admin token; nothing else; it opens nothing but /metrics", async () => {
    const broker = await startBroker({ HEARTBEAT: '0,0', HTTP_PORT: '0', ADMIN_TOKEN: ADMIN, METRICS_TOKEN: SCRAPER });
    try {
      const port = broker.httpPort!;
      assert.equal((await new ApiClient(port).get('/metrics')).status, 401);
      assert.equal((await new ApiClient(port, 'wrong-token-000000000000').get('/metrics')).status, 401);
      const scraped = await new ApiClient(port, SCRAPER).get('/metrics');
      assert.equal(scraped.status, 200);
      assert.ok(parsePrometheus(scraped.text).has('stompd_sessions'));
      assert.equal((await new ApiClient(port, ADMIN).get('/metrics')).status, 200);
      assert.equal((await new ApiClient(port, SCRAPER).get('/api/session/stats')).status, 401, 'the scraper is no admin');
      assert.equal((await new ApiClient(port).get('/healthz')).status, 200, 'probes stay open');
    } finally {
      await broker.stop();
    }
  });

  it('METRICS_AUTH=credential without METRICS_TOKEN: the admin credential', async () => {
    const broker = await startBroker({ HEARTBEAT: '0,0', HTTP_PORT: '0', ADMIN_TOKEN: ADMIN, METRICS_AUTH: 'credential' });
    try {
      assert.equal((await new ApiClient(broker.httpPort!).get('/metrics')).status, 401);
      assert.equal((await new ApiClient(broker.httpPort!, ADMIN).get('/metrics')).status, 200);
    } finally {
      await broker.stop();
    }
  });

  it('an open API (no admin credential) does not open a guarded /metrics; a guard with no credential to ask for stops the start', async () => {
    const broker = await startBroker({ HEARTBEAT: '0,0', HTTP_PORT: '0', METRICS_TOKEN: SCRAPER });
    try {
      assert.equal((await new ApiClient(broker.httpPort!).get('/metrics')).status, 401);
      assert.equal((await new ApiClient(broker.httpPort!, SCRAPER).get('/metrics')).status, 200);
      assert.equal((await new ApiClient(broker.httpPort!).get('/api/session/stats')).status, 200, 'the open API itself stays open (on loopback)');
    } finally {
      await broker.stop();
    }
    assert.throws(
      () => loadConfig({ METRICS_AUTH: 'credential' }),
      (error: unknown) => error instanceof ConfigError && error.variable === 'METRICS_AUTH',
    );
  });
});
