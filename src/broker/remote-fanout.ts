// The fan-out of messages other instances published (they arrive through the relay) to this
// instance's subscribers: in arrival order, in slices (TurnBudget) so that a flood from
// another instance cannot starve this one's liveness refresh and heart-beats, and under flow
// control like a local publisher (one account for all of them): while most of the
// subscribers it delivers to are behind, it waits for them, and the messages wait here.
//
// Bounded: past `backlogBytes` waiting, the oldest message is dropped for its subscribers
// (each is told with x-dropped on its next MESSAGE). Before that, while the backlog is
// congested (held by flow control, or more than a turn's work waiting), the publishers on
// the other instances are told which destinations wait here and for how many subscribers
// (onCongestion, through the relay), so that their own flow control holds them.

import type { FlowAccount } from './flow';
import type { Message } from './message';
import type { TurnBudget } from './turn-budget';

export interface RemoteFanOutOptions {
  /** Fan `message` out now (the account's tally counts it, when flow control is on). */
  deliver(message: Message, account: FlowAccount | undefined): void;
  /** `message` is dropped before its fan-out (the backlog is full): its subscribers are told. */
  drop(message: Message): void;
  /** Subscribers of `routeKey` here (what a congestion report counts for it). */
  subscriberCount(routeKey: string): number;
  /**
   * The destinations waiting here and their subscriber counts while congested; an empty map
   * once it is not. Called when that changes, and again every renewMs while congested.
   */
  onCongestion?: (waiting: ReadonlyMap<string, number>) => void;
  turn: TurnBudget;
  /** undefined: flow control is off (messages are delivered as fast as the turns allow). */
  account: FlowAccount | undefined;
  /** Bytes (bodies and headers, Message.byteSize) that may wait; past it the oldest go. */
  backlogBytes: number;
}

export interface RemoteFanOutStats {
  waitingMessages: number;
  waitingBytes: number;
  /** Messages dropped because the backlog was full. */
  dropped: number;
  isCongested: boolean;
}

/** A report while congested is renewed this often (its receivers keep it RENEW × 3). */
export const CONGESTION_RENEW_MS = 500;
/** Destinations newly waiting are reported at most this often. */
const CONGESTION_REPORT_MIN_MS = 50;
/** A report names at most this many destinations. */
const MAX_REPORTED_KEYS = 1000;

export class RemoteFanOut {
  private readonly options: RemoteFanOutOptions;
  private queue: Message[] = [];
  private head = 0;
  private waitingBytes = 0;
  private readonly waitingByKey = new Map<string, number>();
  private droppedCount = 0;
  private isPumpScheduled = false;
  private isWaitingForHold = false;
  private isCongestedNow = false;
  /** A destination began waiting since the last report. */
  private hasNewKeys = false;
  private reportTimer: NodeJS.Timeout | undefined;
  /** The destination of the last message handed out: while held, its subscribers are the ones waited for. */
  private lastDeliveredKey: string | undefined;
  /** Past it the backlog is congested; it is clear again at half of it (and not held). */
  private readonly congestedBytes: number;
  private readonly pump = (): void => {
    this.isPumpScheduled = false;
    this.drain();
  };

  constructor(options: RemoteFanOutOptions) {
    this.options = options;
    this.congestedBytes = Math.max(64 * 1024, Math.min(256 * 1024, Math.floor(options.backlogBytes / 8)));
  }

  get stats(): RemoteFanOutStats {
    return { waitingMessages: this.queue.length - this.head, waitingBytes: this.waitingBytes, dropped: this.droppedCount, isCongested: this.isCongestedNow };
  }

  push(message: Message): void {
    if (this.head === this.queue.length && !this.isBlocked) {
      this.deliverOne(message);
      return;
    }
    this.queue.push(message);
    this.waitingBytes += message.byteSize;
    const waitingForKey = this.waitingByKey.get(message.routeKey);
    if (waitingForKey === undefined) this.hasNewKeys = true;
    this.waitingByKey.set(message.routeKey, (waitingForKey ?? 0) + 1);
    while (this.waitingBytes > this.options.backlogBytes && this.head < this.queue.length) {
      this.options.drop(this.take()!);
      this.droppedCount++;
    }
    this.schedule();
    this.updateCongestion();
  }

  /** Stop the renewals (the broker stops). */
  close(): void {
    clearTimeout(this.reportTimer);
    this.reportTimer = undefined;
  }

  private get isBlocked(): boolean {
    return this.isWaitingForHold || this.options.turn.isSpent;
  }

  private take(): Message | undefined {
    if (this.head === this.queue.length) return undefined;
    const message = this.queue[this.head]!;
    this.queue[this.head] = undefined as unknown as Message; // let it go
    this.head++;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    this.waitingBytes -= message.byteSize;
    const left = (this.waitingByKey.get(message.routeKey) ?? 1) - 1;
    if (left === 0) this.waitingByKey.delete(message.routeKey);
    else this.waitingByKey.set(message.routeKey, left);
    return message;
  }

  private deliverOne(message: Message): void {
    this.lastDeliveredKey = message.routeKey;
    const account = this.options.account;
    this.options.deliver(message, account);
    const held = account?.settle();
    if (held === undefined) return;
    this.isWaitingForHold = true;
    this.updateCongestion();
    void held.then(() => {
      this.isWaitingForHold = false;
      this.schedule();
      this.updateCongestion();
    });
  }

  private schedule(): void {
    if (this.isPumpScheduled || this.isWaitingForHold || this.head === this.queue.length) return;
    this.isPumpScheduled = true;
    if (this.options.turn.isSpent) void this.options.turn.nextTurn().then(this.pump);
    else setImmediate(this.pump);
  }

  private drain(): void {
    while (this.head < this.queue.length && !this.isBlocked) this.deliverOne(this.take()!);
    this.schedule();
    this.updateCongestion();
  }

  /** Tell the other instances when this backlog becomes congested, which keys wait (debounced), and when it is clear. */
  private updateCongestion(): void {
    if (this.options.onCongestion === undefined) return;
    const isCongested = this.isWaitingForHold || this.waitingBytes > (this.isCongestedNow ? this.congestedBytes / 2 : this.congestedBytes);
    if (isCongested === this.isCongestedNow) {
      if (isCongested && this.hasNewKeys && this.reportTimer === undefined) this.armReport(CONGESTION_REPORT_MIN_MS);
      return;
    }
    this.isCongestedNow = isCongested;
    clearTimeout(this.reportTimer);
    this.reportTimer = undefined;
    if (isCongested) {
      this.report();
    } else {
      this.hasNewKeys = false;
      this.options.onCongestion(new Map());
    }
  }

  private armReport(delayMs: number): void {
    this.reportTimer = setTimeout(() => {
      this.reportTimer = undefined;
      if (this.isCongestedNow) this.report();
    }, delayMs);
    this.reportTimer.unref();
  }

  /** What waits here now (at most MAX_REPORTED_KEYS destinations), renewed while congested. */
  private report(): void {
    const waiting = new Map<string, number>();
    const lastKey = this.lastDeliveredKey;
    if (lastKey !== undefined) waiting.set(lastKey, this.options.subscriberCount(lastKey));
    for (const key of this.waitingByKey.keys()) {
      if (waiting.size >= MAX_REPORTED_KEYS) break;
      if (!waiting.has(key)) waiting.set(key, this.options.subscriberCount(key));
    }
    this.hasNewKeys = false;
    this.armReport(CONGESTION_RENEW_MS);
    this.options.onCongestion?.(waiting);
  }
}
