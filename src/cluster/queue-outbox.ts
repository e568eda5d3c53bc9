// The Redis queues' writes that need no answer before going on: acknowledgements,
// give-backs, expiry counts, consumer registrations and wake-up signals. Collected during one
// event-loop turn and sent together at the next, in that order (a consumer that acks its
// last message and then leaves lets the queue be forgotten). What fails, or waits while
// Redis or this instance's membership is away, is kept and sent with a later flush: an ACK
// is never lost to an outage, only delayed.

import type { RedeliverEntry } from './redeliver-entry';
import type { RedisQueueStore } from './queue-store';

export interface QueueOutboxOptions {
  store: RedisQueueStore;
  instanceId: string;
  /** Whether writes may go now: Redis connected and this instance a member. */
  canWrite(): boolean;
  /** Tell Redis the queue's consumer count (the dispatcher knows it). */
  sendRegistration(name: string): void;
  /** Signal the queue's wake channel: other instances read it now. */
  signal: (name: string) => void;
  /** Entries of the queue were given back: this instance may take them too. */
  onGivenBack: (name: string) => void;
}

/** A give-back waiting to be sent: the giver and the time are stamped when it is queued. */
export interface GiveBack {
  entryId: string;
  wasDelivered: boolean;
}

export class QueueOutbox {
  private readonly options: QueueOutboxOptions;
  private acks = new Map<string, string[]>();
  private giveBacks = new Map<string, RedeliverEntry[]>();
  private expired = new Map<string, number>();
  private registrations = new Set<string>();
  private readonly wakes = new Set<string>();
  private isFlushScheduled = false;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(options: QueueOutboxOptions) {
    this.options = options;
  }

  /** Acknowledge (XACK + XDEL) these entries of `name`. */
  ack(name: string, entryIds: readonly string[]): void {
    if (entryIds.length === 0) return;
    appendTo(this.acks, name, entryIds);
    this.scheduleFlush();
  }

  /** Put these entries of `name` on its redeliver list, for any instance. */
  giveBack(name: string, entries: readonly GiveBack[]): void {
    if (entries.length === 0) return;
    const givenAtMs = Date.now();
    const { instanceId: giver } = this.options;
    appendTo(
      this.giveBacks,
      name,
      entries.map(({ entryId, wasDelivered }) => ({ entryId, giver, givenAtMs, wasDelivered })),
    );
    this.scheduleFlush();
  }

  /** One more message of `name` expired (counted in Redis for every instance's stats). */
  countExpired(name: string): void {
    this.expired.set(name, (this.expired.get(name) ?? 0) + 1);
    this.scheduleFlush();
  }

  /** `name`'s local consumer count changed: told after what is queued now. */
  register(name: string): void {
    this.registrations.add(name);
    this.scheduleFlush();
  }

  /** Signal `name`'s wake channel with the next flush. */
  wake(name: string): void {
    this.wakes.add(name);
    this.scheduleFlush();
  }

  /** The entries of `name` waiting here to be acknowledged or given back. */
  *waitingEntryIds(name: string): IterableIterator<string> {
    yield* this.acks.get(name) ?? [];
    for (const entry of this.giveBacks.get(name) ?? []) yield entry.entryId;
  }

  /** Count `promise` among the Redis work under way (a stop waits for it). */
  track(promise: Promise<unknown>): void {
    const tracked = promise.catch(() => undefined).finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  /** Send what waits now rather than at the next turn. */
  flush(): void {
    if (!this.options.canWrite()) return; // kept for when Redis (and membership) is back
    const { store, instanceId, signal, onGivenBack } = this.options;
    const acks = this.acks;
    const giveBacks = this.giveBacks;
    const expired = this.expired;
    const registrations = this.registrations;
    this.acks = new Map();
    this.giveBacks = new Map();
    this.expired = new Map();
    this.registrations = new Set();
    for (const [name, ids] of acks) {
      this.track(store.acknowledge(name, instanceId, ids).catch(() => appendTo(this.acks, name, ids)));
    }
    for (const [name, entries] of giveBacks) {
      this.track(
        store.giveBack(name, entries).then(
          () => {
            this.wake(name);
            onGivenBack(name);
          },
          () => appendTo(this.giveBacks, name, entries),
        ),
      );
    }
    for (const name of registrations) this.options.sendRegistration(name);
    for (const [name, count] of expired) this.track(store.countExpired(name, count).catch(() => undefined));
    for (const name of this.wakes) signal(name);
    this.wakes.clear();
  }

  /** Send what waits and wait (at most `timeoutMs`) for every write under way, sending what they leave. */
  async drain(timeoutMs: number): Promise<void> {
    this.flush();
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight.size > 0 && Date.now() < deadline) {
      await Promise.race([Promise.all([...this.inFlight]), new Promise((resolve) => setTimeout(resolve, deadline - Date.now()))]);
      this.flush();
    }
  }

  private scheduleFlush(): void {
    if (this.isFlushScheduled) return;
    this.isFlushScheduled = true;
    setImmediate(() => {
      this.isFlushScheduled = false;
      this.flush();
    });
  }
}

function appendTo<T>(map: Map<string, T[]>, name: string, items: readonly T[]): void {
  const list = map.get(name);
  if (list === undefined) map.set(name, [...items]);
  else for (const item of items) list.push(item);
}
