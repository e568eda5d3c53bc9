// The consumer ring both queue backends hand messages out with: round robin over consumers
// that can take more, a give-back goes elsewhere first, expired messages are discarded, a
// backlog drains in order and stops at the first message nobody can take.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Backlog } from '../../src/broker/backlog';
import { ConsumerRing } from '../../src/broker/consumer-ring';
import { Message } from '../../src/broker/message';
import { Subscription } from '../../src/broker/subscription';
import type { Subscriber } from '../../src/broker/subscription';

/** A subscriber that counts the MESSAGE frames written to it (head and tail are two writes). */
class CountingSubscriber implements Subscriber {
  readonly userId = 'u';
  readonly version = '1.2' as const;
  isWritable = true;
  readonly isBehind = false;
  readonly acceptedBytes = 0;
  isFlowStalled = false;
  frames = 0;
  private ackSeq = 0;
  constructor(readonly sessionId: string) {}
  write(bytes: Buffer): void {
    if (bytes.subarray(0, 8).toString() === 'MESSAGE\n') this.frames++;
  }
  nextAckId(): string {
    return String(++this.ackSeq);
  }
  onSlowConsumer(): boolean {
    return true;
  }
}

function ringWithLog() {
  const done: string[] = [];
  const expired: string[] = [];
  const ring = new ConsumerRing<Message>({ done: (m) => done.push(m.id), expired: (m) => expired.push(m.id) });
  return { ring, done, expired };
}

const consumer = (name: string, maxUnacked = 10, ackMode: 'client-individual' | 'auto' = 'client-individual'): Subscription => new Subscription(new CountingSubscriber(name), 'sub', '/queue/r', ackMode, maxUnacked);
const message = (id: string, expiresAtMs?: number): Message => {
  const m = new Message(id, '/queue/r', '/queue/r', [], Buffer.from(id));
  m.expiresAtMs = expiresAtMs;
  return m;
};
const heldIds = (s: Subscription): string[] => [...s.pending.values()].map((d) => d.messageId);

describe('ConsumerRing', () => {
  it('round robin over the consumers that can take more, skipping the one excepted; none can: false', () => {
    const { ring } = ringWithLog();
    const [a, b, c] = [consumer('a'), consumer('b', 1), consumer('c')];
    for (const s of [a, b, c]) ring.add(s);
    assert.ok(
      [a, b, c].every((s) => s.keepsMessages),
      'queue subscriptions keep their messages',
    );
    for (let i = 0; i < 5; i++) assert.ok(ring.offer(message(`m${i}`)));
    assert.deepEqual([heldIds(a), heldIds(b), heldIds(c)], [['m0', 'm3'], ['m1'], ['m2', 'm4']], 'b is full after one');
    assert.ok(ring.offer(message('m5'), a));
    assert.deepEqual(heldIds(c), ['m2', 'm4', 'm5'], 'not to the consumer excepted');
    const alone = ringWithLog().ring;
    const full = consumer('full', 1);
    alone.add(full);
    assert.ok(alone.offer(message('x')));
    assert.equal(alone.offer(message('y')), false);
    assert.equal(ring.deliveredCount, 6);
  });

  it('removing a consumer keeps the round robin where it was', () => {
    const { ring } = ringWithLog();
    const [a, b, c] = [consumer('a'), consumer('b'), consumer('c')];
    for (const s of [a, b, c]) ring.add(s);
    ring.offer(message('m0')); // a; b is next
    assert.ok(ring.remove(a));
    assert.equal(ring.remove(a), false);
    ring.offer(message('m1'));
    assert.deepEqual([heldIds(b), heldIds(c)], [['m1'], []]);
  });

  it('a give-back goes to another consumer first, marked redelivered; to the giver only if allowed; the rest come back in order', () => {
    const { ring } = ringWithLog();
    const [giver, other] = [consumer('giver'), consumer('other', 1)];
    ring.add(giver);
    ring.add(other);
    const given = [message('g0'), message('g1'), message('g2')];
    assert.deepEqual(
      ring.giveBack(given, giver, false).map((m) => m.id),
      ['g1', 'g2'],
      'the other takes one, the giver none',
    );
    assert.deepEqual(heldIds(other), ['g0']);
    assert.ok(given.every((m) => m.isRedelivered));
    assert.deepEqual(ring.giveBack([message('g3')], giver, true), [], 'the giver is the last resort');
    assert.deepEqual(heldIds(giver), ['g3']);
  });

  it('an auto-ack delivery is done with; an expired message is discarded unseen, even when nobody can take it', () => {
    const { ring, done, expired } = ringWithLog();
    const auto = consumer('auto', Infinity, 'auto');
    ring.add(auto);
    ring.offer(message('a0'));
    assert.deepEqual(done, ['a0']);
    assert.equal((auto.subscriber as CountingSubscriber).frames, 1);
    (auto.subscriber as CountingSubscriber).isWritable = false;
    assert.ok(ring.offer(message('old', Date.now() - 1)));
    assert.deepEqual(expired, ['old']);
    assert.equal(ring.deliveredCount, 1);
  });

  it('drains a backlog from the front while a consumer takes, expired ones discarded, and stops at the first nobody can take', () => {
    const { ring, expired } = ringWithLog();
    const c = consumer('c', 2);
    ring.add(c);
    const backlog = new Backlog<Message>();
    for (const m of [message('b0'), message('gone', 1), message('b1'), message('b2')]) backlog.push(m);
    assert.equal(ring.drain(backlog), 3);
    assert.deepEqual(heldIds(c), ['b0', 'b1']);
    assert.deepEqual(expired, ['gone']);
    assert.deepEqual(
      [...backlog].map((m) => m.id),
      ['b2'],
    );
  });
});
