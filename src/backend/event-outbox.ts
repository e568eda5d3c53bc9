// The event outbox: session events waiting for the backend's /events, oldest first. Memory
// here (embedded mode; lost with the process); the Redis one (src/cluster/redis-outbox.ts)
// keeps them in a stream so that an instance's death loses none.
//
// Invariants: append never blocks or throws; events leave in the order they were appended
// (so in order per session); the outbox holds at most maxPending, dropping the oldest past it
// (counted).

import type { SessionEvent } from './contract';

export interface PendingBatch {
  events: SessionEvent[];
  /** What to hand back to remove() once the batch was delivered. */
  token: unknown;
}

/**
 * Where this instance's outbox lives, and how a dead instance's is taken over: in memory
 * (MemoryOutboxes: one instance, nothing outlives it) or in Redis streams (the cluster layer's,
 * so that an instance's death loses none). Chosen once, by server.ts.
 */
export interface SharedOutboxes {
  /** Whether the events outlive this process (in Redis): a shutdown need not wait long for their delivery. */
  readonly isDurable: boolean;
  /**
   * This instance's outbox. `tracksSessions`: DISCONNECT events are delivered, so a session's
   * CONNECT is remembered until its DISCONNECT (for the instance-lost one, should the instance die).
   */
  create(maxPending: number, tracksSessions: boolean): EventOutbox;
  /** Set by the backend: an instance is gone (reaped, or found without liveness), take its outbox over. */
  onInstanceGone: ((deadId: string) => Promise<void>) | undefined;
  /**
   * Called when this instance took over `deadId` (the reaper): its open sessions' instance-lost
   * disconnects are appended after its last events; resolves to its outbox, to be delivered
   * until empty and then deleted (the callback given).
   */
  adopt(deadId: string, maxPending: number): Promise<{ outbox: EventOutbox; finish(): Promise<boolean> } | undefined>;
}

export interface EventOutbox {
  append(event: SessionEvent): void;
  /** Up to `max` of the oldest events; empty when there are none (or they cannot be read now). */
  peek(max: number): Promise<PendingBatch>;
  /** A batch peek() gave was delivered. */
  remove(batch: PendingBatch): Promise<void>;
  /** Resolves when something may have been appended since the last peek (or after `timeoutMs`). */
  whenAppended(timeoutMs: number): Promise<void>;
  /** Events waiting, as last known. */
  pendingCount(): number;
  /** Events dropped, oldest first, because the outbox was full. */
  readonly droppedCount: number;
  stop(): Promise<void>;
}

/** Wakes one waiter when something is appended; shared by the outboxes. */
export class AppendSignal {
  private waiter: (() => void) | undefined;

  notify(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  wait(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve();
      }, timeoutMs);
      timer.unref();
      this.waiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** One instance, events in memory: nothing to take over from another instance. */
export class MemoryOutboxes implements SharedOutboxes {
  readonly isDurable = false;
  onInstanceGone: ((deadId: string) => Promise<void>) | undefined;

  create(maxPending: number): EventOutbox {
    return new MemoryOutbox(maxPending);
  }

  async adopt(): Promise<undefined> {
    return undefined;
  }
}

export class MemoryOutbox implements EventOutbox {
  droppedCount = 0;
  private readonly maxPending: number;
  private events: SessionEvent[] = [];
  /** Index of the oldest event still held: removal is a move of the head, compacted now and then. */
  private head = 0;
  private readonly signal = new AppendSignal();

  constructor(maxPending: number) {
    this.maxPending = maxPending;
  }

  append(event: SessionEvent): void {
    this.events.push(event);
    if (this.events.length - this.head > this.maxPending) {
      this.head++;
      this.droppedCount++;
    }
    this.compact();
    this.signal.notify();
  }

  async peek(max: number): Promise<PendingBatch> {
    const events = this.events.slice(this.head, this.head + max);
    return { events, token: events[0] };
  }

  async remove(batch: PendingBatch): Promise<void> {
    // Events dropped while the batch was out may have moved the head past some of it.
    const start = this.events.indexOf(batch.token as SessionEvent, this.head);
    if (start === -1) return;
    this.head = start + batch.events.length;
    this.compact();
  }

  whenAppended(timeoutMs: number): Promise<void> {
    if (this.pendingCount() > 0) return Promise.resolve();
    return this.signal.wait(timeoutMs);
  }

  pendingCount(): number {
    return this.events.length - this.head;
  }

  async stop(): Promise<void> {
    this.signal.notify();
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.events.length) {
      this.events = this.events.slice(this.head);
      this.head = 0;
    }
  }
}
