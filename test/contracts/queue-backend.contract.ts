// What every QueueBackend does, as one suite run against each implementation (memory, a
// single Redis, a Redis Cluster: test/contracts/queue-backend.test.ts), so they cannot drift
// apart. Consumers are real Subscriptions over a subscriber that decodes what it is written;
// a backend's documented differences (README, "What queues promise in each mode") are
// capabilities the factory states, and the suite checks each side of them.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Decoder, headerValue } from '../../src/codec';
import type { Frame, StompVersion } from '../../src/codec';
import { Message, expiresAtMsOf } from '../../src/broker/message';
import type { QueueBackend, QueueStat } from '../../src/broker/queue-backend';
import { Subscription } from '../../src/broker/subscription';
import type { AckMode, Subscriber } from '../../src/broker/subscription';
import { until as untilWithin } from '../helpers/until';

export interface QueueLimitsUnderTest {
  maxQueueMessages: number;
  maxQueues: number;
  maxTotalQueueBytes: number;
}

export interface QueueBackendUnderTest {
  backend: QueueBackend;
  /** Stop it and let go of what it holds (connections, timers). */
  close(): Promise<void>;
}

export interface QueueBackendFactory {
  name: string;
  /** MAX_TOTAL_QUEUE_BYTES applies (memory); with Redis it does not (Redis's maxmemory bounds it). */
  limitsTotalBytes: boolean;
  /** A fresh backend whose queues no other backend of the run sees. */
  create(limits: QueueLimitsUnderTest): Promise<QueueBackendUnderTest>;
}

/** A session as the broker sees it: it decodes every MESSAGE written to it. */
class RecordingSubscriber implements Subscriber {
  readonly sessionId: string;
  readonly userId = 'contract';
  readonly version: StompVersion = '1.2';
  isWritable = true;
  readonly isBehind = false;
  readonly acceptedBytes = 0;
  isFlowStalled = false;
  readonly messages: Frame[] = [];
  private ackSeq = 0;
  private readonly decoder = new Decoder((frame) => this.messages.push(frame), { acceptServerCommands: true });

  constructor(sessionId: string) {
    this.sessionId = sessionId;
  }

  write(bytes: Buffer): void {
    this.decoder.push(bytes);
  }

  nextAckId(): string {
    return `${this.sessionId}-${++this.ackSeq}`;
  }

  onSlowConsumer(): boolean {
    return true;
  }

  get bodies(): string[] {
    return this.messages.map((m) => m.body.toString());
  }
}

/** Generous: a loaded CI machine answers slowly; a hang still fails. */
const until = (condition: () => boolean | Promise<boolean>, what: string): Promise<void> => untilWithin(condition, what, 10_000);

const DEFAULT_LIMITS: QueueLimitsUnderTest = { maxQueueMessages: 1000, maxQueues: 1000, maxTotalQueueBytes: 1 << 30 };
/** Long enough for a backend that would deliver to have delivered (Redis polls every 500 ms). */
const QUIET_MS = 700;
const quiet = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, QUIET_MS));

export function queueBackendContract(factory: QueueBackendFactory): void {
  describe(`QueueBackend contract: ${factory.name}`, { timeout: 60000 }, () => {
    const open: QueueBackendUnderTest[] = [];
    let seq = 0;

    after(async () => {
      await Promise.all(open.map((b) => b.close()));
    });

    const start = async (limits: Partial<QueueLimitsUnderTest> = {}): Promise<QueueBackend> => {
      const underTest = await factory.create({ ...DEFAULT_LIMITS, ...limits });
      open.push(underTest);
      return underTest.backend;
    };

    const message = (destination: string, body: string, headers: [string, string][] = []): Message => {
      const m = new Message(`m-${++seq}`, destination, destination, [['user-id', 'contract'], ...headers], Buffer.from(body));
      m.expiresAtMs = expiresAtMsOf(m.headers);
      return m;
    };

    /** Admit and publish, as a SEND does; fails on a refusal. */
    const send = async (backend: QueueBackend, m: Message): Promise<void> => {
      assert.equal(await backend.admit([m]), undefined, `admitted: ${m.body.toString()}`);
      assert.equal(await backend.publish(m), undefined, `stored: ${m.body.toString()}`);
    };

    const consume = async (backend: QueueBackend, destination: string, ackMode: AckMode = 'client-individual', maxUnacked = 100): Promise<{ subscriber: RecordingSubscriber; subscription: Subscription }> => {
      assert.equal(await backend.admitSubscription(destination), undefined);
      const subscriber = new RecordingSubscriber(`s${++seq}`);
      const subscription = new Subscription(subscriber, 'sub', destination, ackMode, maxUnacked);
      backend.subscribe(subscription);
      return { subscriber, subscription };
    };

    /** ACK (or NACK) the `index`th MESSAGE the subscriber got, as the router does. */
    const answerDelivery = (backend: QueueBackend, { subscriber, subscription }: { subscriber: RecordingSubscriber; subscription: Subscription }, index: number, isNack = false): void => {
      const covered = subscription.takeCovered(headerValue(subscriber.messages[index]!.headers, 'ack')!);
      assert.ok(covered.length > 0, 'the delivery was owed an ACK');
      if (isNack) backend.nacked(subscription, covered);
      else backend.acknowledged(subscription, covered);
    };

    const statOf = async (backend: QueueBackend, destination: string) => (await backend.queueStats()).find((s) => s.name === destination);

    /** Wait until the queue's stats show `expected` (Redis learns of ACKs and consumers a moment later), then assert it. */
    const statReaches = async (backend: QueueBackend, destination: string, expected: Partial<QueueStat>): Promise<QueueStat> => {
      const picked = (stat: QueueStat | undefined): Partial<QueueStat> => Object.fromEntries(Object.keys(expected).map((key) => [key, stat?.[key as keyof QueueStat]]));
      let last: QueueStat | undefined;
      await until(
        async () => {
          last = await statOf(backend, destination);
          return JSON.stringify(picked(last)) === JSON.stringify(expected);
        },
        `${destination} to show ${JSON.stringify(expected)}`,
      ).catch(() => undefined);
      assert.deepEqual(picked(last), expected);
      return last!;
    };

    it('a message published before anyone subscribes waits, then reaches the first consumer with its headers and body', async () => {
      const backend = await start();
      await send(backend, message('/queue/first', 'hello', [['x-custom', 'a:b']]));
      assert.equal((await statOf(backend, '/queue/first'))?.depth, 1, 'stored once publish answered');
      await statReaches(backend, '/queue/first', { depth: 1, unacked: 0, consumers: 0 });
      const c = await consume(backend, '/queue/first');
      await until(() => c.subscriber.messages.length === 1, 'the message');
      const [frame] = c.subscriber.messages;
      assert.equal(frame!.body.toString(), 'hello');
      assert.equal(headerValue(frame!.headers, 'destination'), '/queue/first');
      assert.equal(headerValue(frame!.headers, 'x-custom'), 'a:b');
      assert.equal(headerValue(frame!.headers, 'redelivered'), undefined);
      assert.equal(headerValue(frame!.headers, 'subscription'), 'sub');
    });

    it('consumers share a queue: each message once, round robin, each consumer in publish order', async () => {
      const backend = await start();
      const a = await consume(backend, '/queue/shared');
      const b = await consume(backend, '/queue/shared');
      for (let i = 0; i < 10; i++) await send(backend, message('/queue/shared', String(i)));
      await until(() => a.subscriber.messages.length + b.subscriber.messages.length === 10, 'ten messages');
      await quiet();
      const [onA, onB] = [a.subscriber.bodies.map(Number), b.subscriber.bodies.map(Number)];
      assert.deepEqual(
        [...onA, ...onB].sort((x, y) => x - y),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        'each once',
      );
      assert.ok(onA.length > 0 && onB.length > 0, `both consume (${onA.length} and ${onB.length})`);
      assert.deepEqual(
        onA,
        [...onA].sort((x, y) => x - y),
      );
      assert.deepEqual(
        onB,
        [...onB].sort((x, y) => x - y),
      );
    });

    it('prefetch: a consumer holds at most its unacknowledged limit; an ACK lets one more through', async () => {
      const backend = await start();
      for (let i = 0; i < 5; i++) await send(backend, message('/queue/prefetch', `p${i}`));
      const c = await consume(backend, '/queue/prefetch', 'client-individual', 2);
      await until(() => c.subscriber.messages.length === 2, 'two messages');
      await quiet();
      assert.deepEqual(c.subscriber.bodies, ['p0', 'p1'], 'no more than two');
      answerDelivery(backend, c, 0);
      await until(() => c.subscriber.messages.length === 3, 'one more after the ACK');
      await quiet();
      assert.deepEqual(c.subscriber.bodies, ['p0', 'p1', 'p2'], 'exactly one more');
      await statReaches(backend, '/queue/prefetch', { depth: 2, unacked: 2 });
    });

    it('client mode: an ACK covers the earlier deliveries too; acknowledged messages are gone for good', async () => {
      const backend = await start();
      const c = await consume(backend, '/queue/cumulative', 'client');
      for (let i = 0; i < 3; i++) await send(backend, message('/queue/cumulative', `c${i}`));
      await until(() => c.subscriber.messages.length === 3, 'three messages');
      answerDelivery(backend, c, 1); // covers c0 and c1
      await statReaches(backend, '/queue/cumulative', { depth: 0, unacked: 1 });
      backend.unsubscribe(c.subscription);
      const next = await consume(backend, '/queue/cumulative');
      await until(() => next.subscriber.messages.length === 1, 'the unacknowledged one');
      await quiet();
      assert.deepEqual(next.subscriber.bodies, ['c2'], 'the acknowledged ones are not redelivered');
      assert.equal(headerValue(next.subscriber.messages[0]!.headers, 'redelivered'), 'true');
    });

    it('a NACK redelivers to another consumer first, marked redelivered', async () => {
      const backend = await start();
      const a = await consume(backend, '/queue/nack', 'client-individual', 1);
      const b = await consume(backend, '/queue/nack', 'client-individual', 1);
      await send(backend, message('/queue/nack', 'once'));
      await until(() => a.subscriber.messages.length + b.subscriber.messages.length === 1, 'one delivery');
      const [holder, other] = a.subscriber.messages.length === 1 ? [a, b] : [b, a];
      answerDelivery(backend, holder, 0, true);
      await until(() => other.subscriber.messages.length === 1, 'the other consumer to get it');
      assert.equal(headerValue(other.subscriber.messages[0]!.headers, 'redelivered'), 'true');
      assert.equal(headerValue(other.subscriber.messages[0]!.headers, 'message-id'), headerValue(holder.subscriber.messages[0]!.headers, 'message-id'));
      await quiet();
      assert.equal(holder.subscriber.messages.length, 1, 'not back to the consumer that NACKed it');
    });

    it('a NACK from the only consumer comes back to it, marked redelivered', async () => {
      const backend = await start();
      const c = await consume(backend, '/queue/alone');
      await send(backend, message('/queue/alone', 'again'));
      await until(() => c.subscriber.messages.length === 1, 'the message');
      answerDelivery(backend, c, 0, true);
      await until(() => c.subscriber.messages.length === 2, 'the message again');
      assert.deepEqual(c.subscriber.bodies, ['again', 'again']);
      assert.equal(headerValue(c.subscriber.messages[1]!.headers, 'redelivered'), 'true');
    });

    it('a consumer leaving gives its unacknowledged messages to another, in order, marked redelivered', async () => {
      const backend = await start();
      const leaving = await consume(backend, '/queue/heir');
      for (let i = 0; i < 4; i++) await send(backend, message('/queue/heir', `h${i}`));
      await until(() => leaving.subscriber.messages.length === 4, 'four messages');
      answerDelivery(backend, leaving, 0);
      const heir = await consume(backend, '/queue/heir');
      await quiet();
      assert.equal(heir.subscriber.messages.length, 0, 'nothing while they are held');
      backend.unsubscribe(leaving.subscription);
      await until(() => heir.subscriber.messages.length === 3, 'the three unacknowledged');
      assert.deepEqual(heir.subscriber.bodies, ['h1', 'h2', 'h3']);
      for (const m of heir.subscriber.messages) assert.equal(headerValue(m.headers, 'redelivered'), 'true');
    });

    it('auto ack: a delivery is done with, nothing is owed or redelivered after the consumer leaves', async () => {
      const backend = await start();
      const c = await consume(backend, '/queue/auto', 'auto');
      for (let i = 0; i < 3; i++) await send(backend, message('/queue/auto', `a${i}`));
      await until(() => c.subscriber.messages.length === 3, 'three messages');
      assert.ok(
        c.subscriber.messages.every((m) => headerValue(m.headers, 'ack') === undefined),
        'no ack header',
      );
      backend.unsubscribe(c.subscription);
      const next = await consume(backend, '/queue/auto');
      await quiet();
      assert.equal(next.subscriber.messages.length, 0);
      await statReaches(backend, '/queue/auto', { depth: 0, unacked: 0 });
    });

    it('a consumer that cannot take more (its outbound buffer is full) gets nothing until it is resumed', async () => {
      const backend = await start();
      const c = await consume(backend, '/queue/slow');
      c.subscriber.isWritable = false;
      await send(backend, message('/queue/slow', 's0'));
      await send(backend, message('/queue/slow', 's1'));
      await quiet();
      assert.equal(c.subscriber.messages.length, 0);
      c.subscriber.isWritable = true;
      backend.resume(c.subscription);
      await until(() => c.subscriber.messages.length === 2, 'both after the resume');
      assert.deepEqual(c.subscriber.bodies, ['s0', 's1']);
    });

    it('a message whose expires time has passed is never delivered, and is counted', async () => {
      const backend = await start();
      await send(backend, message('/queue/expiry', 'stale', [['expires', String(Date.now() - 1)]]));
      await send(backend, message('/queue/expiry', 'fresh', [['expires', String(Date.now() + 60_000)]]));
      await send(backend, message('/queue/expiry', 'forever', [['expires', '0']]));
      const c = await consume(backend, '/queue/expiry');
      await until(() => c.subscriber.messages.length === 2, 'two messages');
      await quiet();
      assert.deepEqual(c.subscriber.bodies, ['fresh', 'forever']);
      await statReaches(backend, '/queue/expiry', { depth: 0, expired: 1 });
    });

    it('MAX_QUEUE_MESSAGES: past it the oldest undelivered are dropped and counted; a delivered, unacknowledged one never is', async () => {
      const backend = await start({ maxQueueMessages: 3 });
      const c = await consume(backend, '/queue/bounded', 'client-individual', 1);
      await send(backend, message('/queue/bounded', 'b0'));
      await until(() => c.subscriber.messages.length === 1, 'b0 held');
      for (let i = 1; i <= 5; i++) await send(backend, message('/queue/bounded', `b${i}`));
      await statReaches(backend, '/queue/bounded', { depth: 3, unacked: 1, dropped: 2 });
      for (let i = 0; i < 3; i++) {
        answerDelivery(backend, c, i);
        await until(() => c.subscriber.messages.length === i + 2, `message ${i + 2}`);
      }
      assert.deepEqual(c.subscriber.bodies, ['b0', 'b3', 'b4', 'b5']);
    });

    it('MAX_QUEUES: a publish or subscription creating one more queue is refused (QUEUE_LIMIT); a queue left with nothing is forgotten and frees its place', async () => {
      const backend = await start({ maxQueues: 2 });
      await send(backend, message('/queue/limit-1', 'x'));
      const c = await consume(backend, '/queue/limit-2');
      const third = message('/queue/limit-3', 'y');
      assert.equal((await backend.admit([third]))?.code, 'QUEUE_LIMIT');
      assert.equal((await backend.admitSubscription('/queue/limit-3'))?.code, 'QUEUE_LIMIT');
      assert.equal(await backend.admit([message('/queue/limit-1', 'z')]), undefined, 'an existing queue takes more');
      // /queue/limit-1 emptied and left: forgotten.
      const drainer = await consume(backend, '/queue/limit-1');
      await until(() => drainer.subscriber.messages.length === 1, 'x');
      answerDelivery(backend, drainer, 0);
      backend.unsubscribe(drainer.subscription);
      await until(async () => (await backend.admit([third])) === undefined, 'room for a third queue');
      assert.equal(await backend.publish(third), undefined);
      assert.ok(c.subscriber.messages.length === 0);
    });

    it(factory.limitsTotalBytes ? 'MAX_TOTAL_QUEUE_BYTES: a publish (all of a COMMIT) past it is refused, QUEUE_FULL' : 'MAX_TOTAL_QUEUE_BYTES does not apply (Redis bounds its own memory)', async () => {
      const probe = message('/queue/full', 'x'.repeat(100));
      const backend = await start({ maxTotalQueueBytes: probe.byteSize * 2 });
      await send(backend, probe);
      const refusal = await backend.admit([message('/queue/full', 'x'.repeat(100)), message('/queue/full-too', 'x'.repeat(100))]);
      if (factory.limitsTotalBytes) assert.equal(refusal?.code, 'QUEUE_FULL');
      else assert.equal(refusal, undefined);
      await send(backend, message('/queue/full', 'x'.repeat(100)));
    });

    it('queueStats: depth, unacknowledged, consumers, oldest age; totals count the deliveries', async () => {
      const backend = await start();
      for (let i = 0; i < 3; i++) await send(backend, message('/queue/stats', `q${i}`));
      const c = await consume(backend, '/queue/stats', 'client-individual', 1);
      await until(() => c.subscriber.messages.length === 1, 'one message');
      const stat = await statReaches(backend, '/queue/stats', { depth: 2, unacked: 1, consumers: 1, dropped: 0, expired: 0 });
      assert.ok(stat.oldestAgeMs >= 0);
      assert.equal(backend.totals().delivered, 1);
      assert.equal((await backend.queueStats()).length, 1, 'one queue');
    });
  });
}
