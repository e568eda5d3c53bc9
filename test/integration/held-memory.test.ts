// Memory a client makes the broker hold, beyond frames and messages (issue 13): its
// subscriptions, the headers of a frame it has not finished, and a WebSocket message it is
// still sending in fragments. Each is counted (against a per-session cap or the shared
// MAX_PENDING_FRAME_BYTES), refused with a stable code when spent, and given back.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Frame } from '../../src/codec';
import { harness } from '../helpers/harness';
import { header } from '../helpers/raw-client';
import type { RawClient } from '../helpers/raw-client';

const h = harness();

async function receipt(c: RawClient, id: string, timeoutMs = 5000): Promise<void> {
  await c.waitUntil(() => c.frames.some((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === id), timeoutMs, `RECEIPT ${id}`);
}

async function expectError(c: RawClient, code: string, timeoutMs = 5000): Promise<Frame> {
  await c.waitUntil(() => c.frames.some((f) => f.command === 'ERROR'), timeoutMs, 'an ERROR');
  const error = c.frames.find((f) => f.command === 'ERROR')!;
  assert.match(header(error, 'message') ?? '', new RegExp(`^${code}: `));
  await c.waitClosed(timeoutMs);
  return error;
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}


/** The broker still serves: a SEND with a receipt round trip. */
async function stillServes(c: RawClient, id: string): Promise<void> {
  c.sendFrame('SEND', { destination: '/topic/alive', receipt: id }, 'ping');
  await receipt(c, id);
}

/** SUBSCRIBE frames `from`..`to`-1 as one write, each on a topic of its own; the last asks for a receipt. */
function subscribeMany(c: RawClient, from: number, to: number, idPad: string, destinationPad: string, receiptId: string): void {
  const frames: string[] = [];
  for (let j = from; j < to; j++) {
    const last = j === to - 1 ? `receipt:${receiptId}\n` : '';
    frames.push(`SUBSCRIBE\nid:${idPad}${j}\ndestination:/topic/${destinationPad}${j}\n${last}\n\0`);
  }
  c.send(frames.join(''));
}

describe('subscriptions are counted', { timeout: 30000 }, () => {
  it('1000 subscriptions with 8 KiB ids and destinations: TOO_MANY_SUBSCRIPTIONS long before 1000 (MAX_SUBSCRIPTION_BYTES_PER_SESSION), budget given back', async () => {
    const b = await h.broker();
    const c = await h.connected(b, { login: 'hog' });
    const pad = 'x'.repeat(8000);
    subscribeMany(c, 0, 1000, pad, pad, 'all');
    const error = await expectError(c, 'TOO_MANY_SUBSCRIPTIONS', 10000);
    assert.match(header(error, 'message')!, /2097152 bytes/);
    assert.ok(!c.frames.some((f) => f.command === 'RECEIPT'), 'the thousandth was never reached');
    // 2 MiB at ~41 KB a subscription: about 51 were held, and given back at the close.
    assert.equal(b.router.stats().topics, 0, 'the refused session left no topics behind');
    assert.equal(b.pendingBudget.usedBytes, 0);
  });

  it('1000 subscriptions with short ids and destinations fit in the default MAX_SUBSCRIPTION_BYTES_PER_SESSION', async () => {
    const b = await h.broker();
    const c = await h.connected(b, { login: 'many' });
    subscribeMany(c, 0, 1000, 'sub-', 'prices.instrument-', 'all');
    await receipt(c, 'all', 10000);
    assert.equal([...b.sessions()][0]!.subscriptions.size, 1000);
    const held = b.pendingBudget.usedBytes;
    assert.ok(held > 1000 * 1024 && held < 2 * 1024 * 1024, `${held} bytes reserved for 1000 subscriptions`);
    c.sendFrame('UNSUBSCRIBE', { id: 'sub-0', receipt: 'unsub' });
    await receipt(c, 'unsub');
    assert.ok(b.pendingBudget.usedBytes < held, 'UNSUBSCRIBE gives its bytes back');
    c.sendFrame('DISCONNECT', { receipt: 'bye' });
    await c.waitClosed();
    await waitFor(() => b.pendingBudget.usedBytes === 0, 'the budget given back');
  });

  it('MAX_PENDING_FRAME_BYTES counts subscriptions of all sessions: SERVER_BUSY; an UNSUBSCRIBE makes room again', async () => {
    const b = await h.broker({ MAX_PENDING_FRAME_BYTES: String(64 * 1024) });
    const pad = 'p'.repeat(2000); // ~11 KB a subscription
    const first = await h.connected(b, { login: 'first' });
    subscribeMany(first, 0, 4, pad, pad, 'first');
    await receipt(first, 'first');
    const held = b.pendingBudget.usedBytes;
    assert.ok(held >= 4 * 10000, `${held} bytes reserved for 4 subscriptions`);

    const second = await h.connected(b, { login: 'second' });
    subscribeMany(second, 0, 4, pad, pad, 'second');
    await expectError(second, 'SERVER_BUSY');
    assert.equal(b.pendingBudget.usedBytes, held, 'the refused session gave its subscriptions back');

    // What the first session holds is freed by UNSUBSCRIBE: a third session fits again.
    for (let j = 0; j < 4; j++) first.sendFrame('UNSUBSCRIBE', { id: `${pad}${j}`, ...(j === 3 ? { receipt: 'unsub' } : {}) });
    await receipt(first, 'unsub');
    assert.equal(b.pendingBudget.usedBytes, 0);
    const third = await h.connected(b, { login: 'third' });
    subscribeMany(third, 0, 4, pad, pad, 'third');
    await receipt(third, 'third');
    await stillServes(first, 'alive');
  });
});

describe('headers of a frame in progress are counted', { timeout: 30000 }, () => {
  /** A SEND's command and `count` 8 KB header lines, never finished. */
  const parkedHeaders = (count: number): string => {
    let head = 'SEND\ndestination:/queue/parked\n';
    for (let j = 0; j < count; j++) head += `h${String(j).padStart(3, '0')}:${'v'.repeat(8100)}\n`;
    return head;
  };

  it('a frame parked after 62 header lines of 8 KB holds ~500 KB: counted, SERVER_BUSY past MAX_PENDING_FRAME_BYTES, given back', async () => {
    const b = await h.broker({ MAX_PENDING_FRAME_BYTES: String(256 * 1024) });
    const other = await h.connected(b, { login: 'other' });
    const small = await h.connected(b, { login: 'small' });
    small.send(parkedHeaders(10));
    await waitFor(() => b.pendingBudget.usedBytes >= 10 * 8100, 'the 10 parked headers counted');
    const hog = await h.connected(b, { login: 'hog' });
    hog.send(parkedHeaders(62));
    await expectError(hog, 'SERVER_BUSY');
    assert.ok(b.pendingBudget.usedBytes >= 10 * 8100 && b.pendingBudget.usedBytes < 100 * 1024, `${b.pendingBudget.usedBytes}: the refused frame gave its headers back`);
    await stillServes(other, 'alive');
    // Finishing the parked frame hands its headers to the SEND: nothing is held after.
    small.send('receipt:parked\n\nbody\0');
    await receipt(small, 'parked');
    assert.equal(b.pendingBudget.usedBytes, 0);
  });
});
