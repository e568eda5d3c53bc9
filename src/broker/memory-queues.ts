// Queues in this process's memory: the QueueBackend of embedded mode, synchronous throughout.
//
// Each queue drops its oldest past MAX_QUEUE_MESSAGES / MAX_QUEUE_BYTES (its own business,
// queue.ts); what all queues hold together (MAX_TOTAL_QUEUE_BYTES) and how many exist
// (MAX_QUEUES) are checked before a publish (admit), and a refusal is the sender's ERROR:
// dropping other queues' messages to make room would be worse. Both are counted and logged
// (QueueLimitLog). A queue with nothing stored and no consumer is forgotten.

import type { Logger } from 'pino';
import type { Message } from './message';
import { Queue } from './queue';
import type { QueueHooks, QueueLimits } from './queue';
import type { QueueBackend, QueueRefusal, QueueStat, QueueTotals } from './queue-backend';
import { QueueLimitLog } from './queue-limit-log';
import type { Delivery, Subscription } from './subscription';

export interface MemoryQueuesOptions {
  /** Messages a queue keeps while nobody takes them; past it the oldest are dropped. */
  maxQueueMessages: number;
  /** Bytes a queue holds (stored and unacknowledged); past it the oldest stored are dropped. */
  maxQueueBytes?: number;
  /** Bytes all queues hold together; a publish past it is refused (QUEUE_FULL). */
  maxTotalQueueBytes?: number;
  /** Queues at once; a publish creating one more is refused (QUEUE_LIMIT). */
  maxQueues?: number;
  /** For the rate-limited drop and refusal lines. */
  logger?: Logger;
}

export class MemoryQueues implements QueueBackend {
  private readonly queues = new Map<string, Queue>();
  private readonly limits: QueueLimits;
  private readonly hooks: QueueHooks;
  private readonly maxTotalBytes: number;
  private readonly maxQueues: number;
  private readonly limitLog: QueueLimitLog;
  private queuedBytes = 0;
  private refusedQueueFull = 0;
  private refusedQueueLimit = 0;
  /** What queues forgotten since counted (their own counters went with them). */
  private forgotten = { droppedMessages: 0, droppedBytes: 0, delivered: 0 };

  constructor(options: MemoryQueuesOptions) {
    this.limits = { maxMessages: options.maxQueueMessages, maxBytes: options.maxQueueBytes ?? Number.MAX_SAFE_INTEGER };
    this.maxTotalBytes = options.maxTotalQueueBytes ?? Number.MAX_SAFE_INTEGER;
    this.maxQueues = options.maxQueues ?? Number.MAX_SAFE_INTEGER;
    this.limitLog = new QueueLimitLog(options.logger, () => ({ queuedBytes: this.queuedBytes, queues: this.queues.size }));
    this.hooks = {
      heldBytesChanged: (deltaBytes) => {
        this.queuedBytes += deltaBytes;
      },
      dropped: (_queue, messageCount, byteCount) => this.limitLog.dropped(messageCount, byteCount),
    };
  }

  admit(messages: readonly Message[]): QueueRefusal | undefined {
    let bytes = 0;
    let newQueues: Set<string> | undefined;
    for (const message of messages) {
      bytes += message.byteSize;
      if (!this.queues.has(message.routeKey)) (newQueues ??= new Set()).add(message.routeKey);
    }
    if (newQueues !== undefined) {
      const refusal = this.admitNewQueues(newQueues.size);
      if (refusal !== undefined) return refusal;
    }
    if (bytes > 0 && this.queuedBytes + bytes > this.maxTotalBytes) {
      this.refusedQueueFull++;
      this.limitLog.refused('QUEUE_FULL');
      return { code: 'QUEUE_FULL', message: `the queues hold ${this.maxTotalBytes} bytes together, their limit: try again when consumers catch up` };
    }
    return undefined;
  }

  admitSubscription(destination: string): QueueRefusal | undefined {
    return this.queues.has(destination) ? undefined : this.admitNewQueues(1);
  }

  publish(message: Message): undefined {
    this.queueFor(message.routeKey).publish(message);
    return undefined;
  }

  subscribe(subscription: Subscription): void {
    this.queueFor(subscription.routeKey).addConsumer(subscription);
  }

  unsubscribe(subscription: Subscription): void {
    const queue = this.queues.get(subscription.routeKey);
    if (queue === undefined) return;
    queue.removeConsumer(subscription);
    if (queue.isIdle) this.forget(queue);
  }

  acknowledged(subscription: Subscription, deliveries: readonly Delivery[]): void {
    this.queues.get(subscription.routeKey)?.acknowledged(deliveries);
  }

  nacked(subscription: Subscription, deliveries: readonly Delivery[]): void {
    this.queues.get(subscription.routeKey)?.nacked(deliveries, subscription);
  }

  resume(subscription: Subscription): void {
    this.queues.get(subscription.routeKey)?.drain();
  }

  queueStats(): Promise<QueueStat[]> {
    const now = Date.now();
    return Promise.resolve(
      [...this.queues.values()].map((queue) => ({
        name: queue.destination,
        depth: queue.depth,
        unacked: queue.unackedCount,
        consumers: queue.consumerCount,
        oldestAgeMs: queue.oldestAtMs === undefined ? 0 : Math.max(0, now - queue.oldestAtMs),
        dropped: queue.droppedCount,
        expired: queue.expiredCount,
      })),
    );
  }

  totals(): QueueTotals {
    const totals: QueueTotals = {
      queues: this.queues.size,
      queuedMessages: 0,
      queuedBytes: this.queuedBytes,
      droppedMessages: this.forgotten.droppedMessages,
      droppedBytes: this.forgotten.droppedBytes,
      refusedQueueFull: this.refusedQueueFull,
      refusedQueueLimit: this.refusedQueueLimit,
      delivered: this.forgotten.delivered,
    };
    for (const queue of this.queues.values()) {
      totals.queuedMessages += queue.depth;
      totals.droppedMessages += queue.droppedCount;
      totals.droppedBytes += queue.droppedBytes;
      totals.delivered += queue.deliveredCount;
    }
    return totals;
  }

  depth(destination: string): number {
    return this.queues.get(destination)?.depth ?? 0;
  }

  heldOnlyHere(): { storedMessages: number; unacknowledgedMessages: number } {
    let storedMessages = 0;
    let unacknowledgedMessages = 0;
    for (const queue of this.queues.values()) {
      storedMessages += queue.depth;
      unacknowledgedMessages += queue.unackedCount;
    }
    return { storedMessages, unacknowledgedMessages };
  }

  private admitNewQueues(count: number): QueueRefusal | undefined {
    if (this.queues.size + count <= this.maxQueues) return undefined;
    this.refusedQueueLimit++;
    this.limitLog.refused('QUEUE_LIMIT');
    return { code: 'QUEUE_LIMIT', message: `the server holds ${this.maxQueues} queues, its limit: no new queue now` };
  }

  private forget(queue: Queue): void {
    this.forgotten.droppedMessages += queue.droppedCount;
    this.forgotten.droppedBytes += queue.droppedBytes;
    this.forgotten.delivered += queue.deliveredCount;
    this.queues.delete(queue.destination);
  }

  private queueFor(destination: string): Queue {
    let queue = this.queues.get(destination);
    if (queue === undefined) {
      queue = new Queue(destination, this.limits, this.hooks);
      this.queues.set(destination, queue);
    }
    return queue;
  }
}
