// Flow control's accounting alone, with subscribers whose state the test sets: when a
// publisher is held, what releases it, that a minority never holds it, stalls and the
// hold's bound, and other instances' reports.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FlowControl } from '../../src/broker/flow';
import type { FlowAccount, FlowSettings, FlowSubscriber } from '../../src/broker/flow';
import { until } from '../helpers/until';

class FakeSubscriber implements FlowSubscriber {
  isBehind = false;
  acceptedBytes = 0;
  isFlowStalled = false;
}

const SETTINGS: FlowSettings = { behindShare: 0.5, windowDeliveries: 4, stallMs: 600_000, maxHoldMs: 3_600_000 };

/** One fan-out of a message to `subscribers`, as Topic.publish tallies it. */
function fanOut(account: FlowAccount, subscribers: readonly FakeSubscriber[]): void {
  const tally = account.tally;
  let stalled = 0;
  for (const subscriber of subscribers) {
    if (!subscriber.isBehind) continue;
    if (subscriber.isFlowStalled) stalled++;
    else tally.behind.push(subscriber);
  }
  tally.deliveries += subscribers.length - stalled;
}

function subscribers(count: number): FakeSubscriber[] {
  return Array.from({ length: count }, () => new FakeSubscriber());
}

/** Resolves to true once `promise` settled; false if it is still pending after the queued callbacks ran. */
async function hasSettled(promise: Promise<void>): Promise<boolean> {
  let settled = false;
  void promise.then(() => (settled = true));
  await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

describe('flow control', () => {
  it('holds a publisher when most subscribers of its messages are behind, and lets it go once enough caught up', async () => {
    const flow = new FlowControl(SETTINGS);
    const account = flow.account();
    const room = subscribers(10);
    fanOut(account, room);
    assert.equal(account.settle(), undefined, 'nobody behind');
    for (const s of room.slice(0, 7)) s.isBehind = true;
    // Judged over this window and the one before: 7 behind of 20 deliveries is not most...
    fanOut(account, room);
    assert.equal(account.settle(), undefined, '7 of 20 recent deliveries');
    // ...14 of 20 is.
    fanOut(account, room);
    const held = account.settle();
    assert.ok(held !== undefined, '14 of 20 recent deliveries behind: held');
    assert.equal(flow.stats.heldNow, 1);
    assert.equal(account.settle(), held, 'held: the same hold');
    // Each behind subscriber weighs its two deliveries: released once at most 10 of 20 are behind.
    room[0]!.isBehind = false;
    flow.caughtUp(room[0]!);
    assert.equal(await hasSettled(held), false, '12 of 20 still behind');
    room[1]!.isBehind = false;
    flow.caughtUp(room[1]!);
    assert.equal(await hasSettled(held), true, '10 of 20 behind: not more than half, released');
    assert.deepEqual([flow.stats.heldNow, flow.stats.holds, flow.stats.releasedByDrain], [0, 1, 1]);
    assert.equal(account.isHeld, false);
    // Half of them still behind is not most: its next message goes on; one more behind, and it is held again.
    fanOut(account, room);
    assert.equal(account.settle(), undefined, '5 of 10 behind');
    room[1]!.isBehind = true;
    fanOut(account, room);
    assert.ok(account.settle() !== undefined, '16 of 30 recent deliveries behind: held again');
  });

  it('a minority behind never holds the publisher, however long it stays behind', () => {
    const flow = new FlowControl(SETTINGS);
    const account = flow.account();
    const room = subscribers(10);
    for (const s of room.slice(0, 5)) s.isBehind = true;
    for (let i = 0; i < 100; i++) {
      fanOut(account, room);
      assert.equal(account.settle(), undefined, `message ${i}: 5 of 10 behind is not most`);
    }
    assert.equal(flow.stats.holds, 0);
  });

  it("judges the publisher's recent deliveries, not one destination: one slow user among many is a minority", () => {
    const flow = new FlowControl({ ...SETTINGS, windowDeliveries: 8 });
    const account = flow.account();
    const users = subscribers(8);
    users[0]!.isBehind = true;
    // One message per user, round robin: the slow one is 1 of 8 deliveries.
    for (let i = 0; i < 80; i++) {
      fanOut(account, [users[i % 8]!]);
      assert.equal(account.settle(), undefined, `message ${i}`);
    }
    // A publisher that only sends to the slow user: all its deliveries are behind.
    const other = flow.account();
    for (let i = 0; i < 7; i++) {
      fanOut(other, [users[0]!]);
      assert.equal(other.settle(), undefined, 'not a window of deliveries yet');
    }
    fanOut(other, [users[0]!]);
    assert.ok(other.settle() !== undefined, 'its only subscriber is behind: held');
  });

  it('a subscriber that took nothing for stallMs stops holding anyone, and counts again once it caught up', async () => {
    const flow = new FlowControl({ ...SETTINGS, stallMs: 20 });
    const account = flow.account();
    const [slow, stuck] = subscribers(2) as [FakeSubscriber, FakeSubscriber];
    slow.isBehind = true;
    stuck.isBehind = true;
    fanOut(account, [slow, stuck]);
    fanOut(account, [slow, stuck]);
    const held = account.settle();
    assert.ok(held !== undefined);
    // `slow` keeps taking bytes, `stuck` takes none: only `stuck` is found stalled, and with it
    // gone 1 of 2 is behind, not more than half: released.
    const progress = setInterval(() => (slow.acceptedBytes += 100), 2);
    try {
      await held;
    } finally {
      clearInterval(progress);
    }
    assert.equal(stuck.isFlowStalled, true);
    assert.equal(slow.isFlowStalled, false);
    assert.deepEqual([flow.stats.stalls, flow.stats.stalledNow], [1, 1]);
    // Stalled: not counted at all, so a message to it alone does not hold.
    fanOut(account, [stuck]);
    assert.equal(account.settle(), undefined);
    stuck.isBehind = false;
    flow.caughtUp(stuck);
    assert.equal(stuck.isFlowStalled, false);
    assert.equal(flow.stats.stalledNow, 0);
    stuck.isBehind = true;
    for (let i = 0; i < 4; i++) fanOut(account, [stuck]);
    assert.ok(account.settle() !== undefined, 'caught up, then behind again: it holds again');
    flow.close();
  });

  it('no hold lasts past maxHoldMs: its subscribers then count as stalled', async () => {
    // stallMs = maxHoldMs: the first look is at the bound, so nothing is judged stalled before it.
    const flow = new FlowControl({ ...SETTINGS, stallMs: 30, maxHoldMs: 30 });
    const account = flow.account();
    const room = subscribers(3);
    for (const s of room) s.isBehind = true;
    fanOut(account, room);
    fanOut(account, room);
    const held = account.settle();
    assert.ok(held !== undefined);
    const keepAlive = setInterval(() => undefined, 1000); // flow control's timers do not keep a process alive
    try {
      await held;
    } finally {
      clearInterval(keepAlive);
    }
    assert.deepEqual([flow.stats.releasedByTimeout, flow.stats.releasedByDrain], [1, 0]);
    assert.ok(
      room.every((s) => s.isFlowStalled),
      'still behind at the bound: stalled',
    );
    assert.equal(flow.stats.stalledNow, 3);
  });

  it('a fresh publisher is judged once it made a window of deliveries', () => {
    const flow = new FlowControl({ ...SETTINGS, windowDeliveries: 4 });
    const account = flow.account();
    const [slow] = subscribers(1) as [FakeSubscriber];
    slow.isBehind = true;
    for (let i = 0; i < 3; i++) {
      fanOut(account, [slow]);
      assert.equal(account.settle(), undefined, `delivery ${i + 1} of 4`);
    }
    fanOut(account, [slow]);
    assert.ok(account.settle() !== undefined, 'a full window, all of it behind: held');
  });

  it("other instances' subscribers count while their instance reports them behind, and their report lapses", async () => {
    const flow = new FlowControl(SETTINGS);
    const account = flow.account();
    const local = subscribers(2);
    flow.reportFrom('b', new Map([['/topic/quiz', 10]]), 3_600_000);
    assert.equal(flow.remoteBehind('/topic/quiz'), 10);
    fanOut(account, local);
    account.noteRemote('/topic/quiz');
    const held = account.settle();
    assert.ok(held !== undefined, '10 behind elsewhere, 2 fine here: held');
    flow.reportFrom('b', new Map(), 0);
    assert.equal(await hasSettled(held), true, 'b no longer behind: released');

    // 10 fine here, 2 behind elsewhere: a minority.
    flow.reportFrom('b', new Map([['/topic/quiz', 2]]), 3_600_000);
    fanOut(account, subscribers(10));
    account.noteRemote('/topic/quiz');
    assert.equal(account.settle(), undefined);

    // A report that is not renewed lapses.
    flow.reportFrom('c', new Map([['/topic/other', 5]]), 20);
    await until(() => flow.remoteBehind('/topic/other') === 0, "c's report to lapse");
    flow.close();
  });

  it('a stream of messages to a destination reported behind elsewhere holds the publisher until the report is withdrawn', async () => {
    const flow = new FlowControl(SETTINGS);
    const account = flow.account();
    flow.reportFrom('b', new Map([['/topic/far', 3]]), 3_600_000);
    // No subscriber here: each message counts as 3 deliveries behind, a window is 4 deliveries.
    let held: Promise<void> | undefined;
    for (let i = 0; i < 10 && held === undefined; i++) {
      account.noteRemote('/topic/far');
      held = account.settle();
    }
    assert.ok(held !== undefined, 'every recent delivery went to subscribers reported behind: held');
    flow.reportFrom('b', new Map([['/topic/far', 1]]), 3_600_000);
    assert.equal(await hasSettled(held), false, 'still reported behind (fewer): still held');
    flow.reportFrom('b', new Map(), 0);
    assert.equal(await hasSettled(held), true, 'the report withdrawn: released');
    flow.close();
  });

  it('a disposed account (its publisher closed) lets its hold go', async () => {
    const flow = new FlowControl(SETTINGS);
    const account = flow.account();
    const room = subscribers(1);
    room[0]!.isBehind = true;
    for (let i = 0; i < 4; i++) fanOut(account, room);
    const held = account.settle()!;
    account.dispose();
    assert.equal(await hasSettled(held), true);
    assert.equal(flow.stats.heldNow, 0);
  });
});
