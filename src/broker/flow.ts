// Publisher flow control: a publisher whose messages most of their subscribers cannot take
// yet is held (its RECEIPTs wait, its socket is not read) until they drain, so that nothing
// is dropped when everyone is equally slow; a few slow subscribers never hold it back (the
// slow-consumer policy deals with them).
//
// - A subscriber is behind while its connection holds more than FLOW_CONTROL_BEHIND_BYTES
//   unsent (until it drains to half of that: Connection.isBehind).
// - Each publisher has an account of its recent deliveries: the current and the previous
//   window of at least FLOW_CONTROL_WINDOW deliveries each. After each publish, if more than
//   FLOW_CONTROL_BEHIND_SHARE of those went to behind subscribers, the publisher is held.
//   Subscribers of its messages on other instances count too, while their instance reports
//   them behind (reportFrom): each message to a destination reported behind counts as that
//   many deliveries behind, and a hold keeps that weight per destination until the report
//   for it is withdrawn or lapses.
// - A hold registers with the subscribers that were behind (weighted by how many of the
//   window's deliveries went to each) and ends when so many of them caught up that the share
//   still behind is no longer above the threshold: credit comes back as they drain.
// - Bounds: a behind subscriber whose connection took no byte for FLOW_CONTROL_STALL_MS is
//   stalled: it holds nobody back (and its deliveries are not counted) until it catches up;
//   the slow-consumer policy applies to it. No hold lasts longer than FLOW_CONTROL_MAX_HOLD_MS:
//   the subscribers it still waits for then count as stalled.
// Nothing here runs per delivery but a push for a behind subscriber (Topic.publish).

/** What flow control sees of a subscriber (a session). */
export interface FlowSubscriber {
  /** Its connection holds more than the flow-control mark (hysteresis: until half of it). */
  readonly isBehind: boolean;
  /** Bytes its socket took so far: standing still means it reads nothing. */
  readonly acceptedBytes: number;
  /** Set by FlowControl: behind and took nothing for stallMs (or a hold gave up on it). */
  isFlowStalled: boolean;
}

export interface FlowSettings {
  /** A publisher is held when more than this share (0..1) of its recent deliveries went to behind subscribers. */
  behindShare: number;
  /** Deliveries per window: the judgement covers the current window and the previous one. */
  windowDeliveries: number;
  /** A behind subscriber whose socket took nothing for this long no longer holds anyone back. */
  stallMs: number;
  /** No hold lasts longer. */
  maxHoldMs: number;
}

export interface FlowStats {
  /** Publishers held right now (remote fan-outs of other instances' messages included). */
  heldNow: number;
  holds: number;
  /** Time publishers spent held, over all holds that ended. */
  heldMs: number;
  /** Holds that ended because their subscribers drained. */
  releasedByDrain: number;
  /** Holds that ended at FLOW_CONTROL_MAX_HOLD_MS. */
  releasedByTimeout: number;
  /** Subscribers found stalled (or given up on by a hold), since the start. */
  stalls: number;
  /** Of those, the ones still stalled now. */
  stalledNow: number;
}

/** Deliveries of one window; Topic.publish adds to it. */
export interface FlowTally {
  deliveries: number;
  /** One entry per delivery to a behind subscriber (a subscriber appears once per such delivery). */
  readonly behind: FlowSubscriber[];
}

class Window implements FlowTally {
  deliveries = 0;
  behind: FlowSubscriber[] = [];
  /** Deliveries to subscribers elsewhere reported behind, in all and by route key. */
  remoteBehind = 0;
  remoteByKey: Map<string, number> | undefined;
}

/** One publisher held: what it waits for. */
export class FlowHold {
  readonly account: FlowAccount;
  /** The window's deliveries when it began: the share is measured against them. */
  readonly deliveries: number;
  /** Behind subscribers it waits for: their weight and what their socket had taken at the last look. */
  readonly members = new Map<FlowSubscriber, { weight: number; acceptedBytes: number }>();
  localBehind = 0;
  /** Deliveries of the windows to subscribers elsewhere reported behind, by route key: they count while still reported. */
  readonly remoteByKey: ReadonlyMap<string, number> | undefined;
  readonly startedAt = performance.now();
  readonly promise: Promise<void>;
  resolve!: () => void;
  timer: NodeJS.Timeout | undefined;

  constructor(account: FlowAccount, deliveries: number, remoteByKey: ReadonlyMap<string, number> | undefined) {
    this.account = account;
    this.deliveries = deliveries;
    this.remoteByKey = remoteByKey;
    this.promise = new Promise((resolve) => (this.resolve = resolve));
  }
}

/** One broker's flow control: the holds, the stalled subscribers, other instances' reports. */
export class FlowControl {
  readonly settings: Readonly<FlowSettings>;
  private readonly holds = new Set<FlowHold>();
  /** Behind subscribers that some hold waits for. */
  private readonly waitedFor = new Map<FlowSubscriber, Set<FlowHold>>();
  private readonly stalled = new Set<FlowSubscriber>();
  /** Route key → instance → its subscribers there that it reports behind. */
  private readonly remote = new Map<string, Map<string, number>>();
  /** Instance → when its report expires (performance.now()) and the keys it named. */
  private readonly reports = new Map<string, { expiresAt: number; keys: string[] }>();
  private reportSweep: NodeJS.Timeout | undefined;
  private reportSweepAt = 0;
  private readonly counts = { holds: 0, heldMs: 0, releasedByDrain: 0, releasedByTimeout: 0, stalls: 0 };

  constructor(settings: FlowSettings) {
    this.settings = Object.freeze({ ...settings });
  }

  /** A publisher's account (one per session; one for the HTTP API). */
  account(): FlowAccount {
    return new FlowAccount(this);
  }

  get stats(): FlowStats {
    return { ...this.counts, heldNow: this.holds.size, stalledNow: this.stalled.size };
  }

  /** Whether any instance reports subscribers behind: skips the per-publish lookup otherwise. */
  get hasRemoteReports(): boolean {
    return this.remote.size > 0;
  }

  /** Subscribers of `routeKey` on other instances that report them behind now. */
  remoteBehind(routeKey: string): number {
    const byInstance = this.remote.get(routeKey);
    if (byInstance === undefined) return 0;
    let count = 0;
    for (const n of byInstance.values()) count += n;
    return count;
  }

  /**
   * Instance `origin` reports its subscribers of these route keys behind (the number behind
   * for each), replacing what it reported before; an empty map: none. The report lapses after
   * `ttlMs` unless renewed (an instance that died or whose "caught up" was lost holds nobody).
   */
  reportFrom(origin: string, behind: ReadonlyMap<string, number>, ttlMs: number): void {
    const previous = this.reports.get(origin);
    if (previous !== undefined) {
      for (const key of previous.keys) {
        const byInstance = this.remote.get(key);
        byInstance?.delete(origin);
        if (byInstance?.size === 0) this.remote.delete(key);
      }
      this.reports.delete(origin);
    }
    if (behind.size > 0) {
      for (const [key, count] of behind) {
        let byInstance = this.remote.get(key);
        if (byInstance === undefined) this.remote.set(key, (byInstance = new Map<string, number>()));
        byInstance.set(origin, count);
      }
      this.reports.set(origin, { expiresAt: performance.now() + ttlMs, keys: [...behind.keys()] });
      this.armReportSweep(ttlMs);
    }
    for (const hold of this.holds) if (hold.remoteByKey !== undefined) this.recheck(hold);
  }

  /** `subscriber` drained to half the mark (or went away): it holds nobody back, and counts again. */
  caughtUp(subscriber: FlowSubscriber): void {
    if (subscriber.isFlowStalled) {
      subscriber.isFlowStalled = false;
      this.stalled.delete(subscriber);
    }
    this.releaseHolds(subscriber);
  }

  /** `subscriber` is gone (its session closed): forget it. */
  forget(subscriber: FlowSubscriber): void {
    this.caughtUp(subscriber);
  }

  /** Count `subscriber` as stalled: out of every hold, out of every tally until it catches up. */
  private markStalled(subscriber: FlowSubscriber): void {
    if (!subscriber.isFlowStalled) {
      subscriber.isFlowStalled = true;
      this.stalled.add(subscriber);
      this.counts.stalls++;
    }
    this.releaseHolds(subscriber);
  }

  /** `subscriber` no longer counts in the holds waiting for it: each is checked again. */
  private releaseHolds(subscriber: FlowSubscriber): void {
    const holds = this.waitedFor.get(subscriber);
    if (holds === undefined) return;
    this.waitedFor.delete(subscriber);
    for (const hold of holds) {
      const member = hold.members.get(subscriber);
      if (member === undefined) continue;
      hold.members.delete(subscriber);
      hold.localBehind -= member.weight;
      this.recheck(hold);
    }
  }

  /** Begin holding `account` for `window`'s behind deliveries; undefined if they drained already. */
  hold(account: FlowAccount, windows: readonly Window[]): FlowHold | undefined {
    let deliveries = 0;
    let remoteByKey: Map<string, number> | undefined;
    for (const window of windows) {
      deliveries += window.deliveries;
      if (window.remoteByKey !== undefined) for (const [key, count] of window.remoteByKey) (remoteByKey ??= new Map()).set(key, (remoteByKey.get(key) ?? 0) + count);
    }
    const hold = new FlowHold(account, deliveries, remoteByKey);
    for (const window of windows) {
      for (const subscriber of window.behind) {
        if (!subscriber.isBehind || subscriber.isFlowStalled) continue; // drained (or stalled) since
        const member = hold.members.get(subscriber);
        if (member !== undefined) member.weight++;
        else hold.members.set(subscriber, { weight: 1, acceptedBytes: subscriber.acceptedBytes });
        hold.localBehind++;
      }
    }
    if (!this.isStillHeld(hold)) return undefined;
    for (const subscriber of hold.members.keys()) {
      let holds = this.waitedFor.get(subscriber);
      if (holds === undefined) this.waitedFor.set(subscriber, (holds = new Set()));
      holds.add(hold);
    }
    this.holds.add(hold);
    this.counts.holds++;
    this.armStallCheck(hold);
    return hold;
  }

  /** Let `hold` go now (its publisher closed): not counted as drained or timed out. */
  cancel(hold: FlowHold): void {
    this.end(hold);
  }

  private isStillHeld(hold: FlowHold): boolean {
    let behind = hold.localBehind;
    if (hold.remoteByKey !== undefined) for (const [key, count] of hold.remoteByKey) if (this.remoteBehind(key) > 0) behind += count;
    return behind > this.settings.behindShare * hold.deliveries;
  }

  private recheck(hold: FlowHold): void {
    if (!this.holds.has(hold) || this.isStillHeld(hold)) return;
    this.counts.releasedByDrain++;
    this.end(hold);
  }

  /**
   * Every stallMs: a member whose socket took nothing since the last look is stalled. At
   * maxHoldMs the hold ends, and the members it still waits for count as stalled.
   */
  private armStallCheck(hold: FlowHold): void {
    const { stallMs, maxHoldMs } = this.settings;
    const leftMs = hold.startedAt + maxHoldMs - performance.now();
    // Decided now, not when it fires: a timer may fire a fraction of a millisecond early.
    const isAtBound = leftMs <= stallMs;
    hold.timer = setTimeout(
      () => {
        hold.timer = undefined;
        if (!this.holds.has(hold)) return;
        if (isAtBound) {
          this.counts.releasedByTimeout++;
          const members = [...hold.members.keys()];
          this.end(hold);
          for (const subscriber of members) this.markStalled(subscriber);
          return;
        }
        const stalledNow: FlowSubscriber[] = [];
        for (const [subscriber, member] of hold.members) {
          if (subscriber.acceptedBytes === member.acceptedBytes) stalledNow.push(subscriber);
          else member.acceptedBytes = subscriber.acceptedBytes;
        }
        for (const subscriber of stalledNow) this.markStalled(subscriber);
        if (this.holds.has(hold)) this.armStallCheck(hold);
      },
      Math.max(1, Math.min(stallMs, leftMs)),
    );
    hold.timer.unref();
  }

  private end(hold: FlowHold): void {
    if (!this.holds.delete(hold)) return;
    clearTimeout(hold.timer);
    for (const subscriber of hold.members.keys()) {
      const holds = this.waitedFor.get(subscriber);
      holds?.delete(hold);
      if (holds?.size === 0) this.waitedFor.delete(subscriber);
    }
    hold.members.clear();
    this.counts.heldMs += performance.now() - hold.startedAt;
    hold.account.released(hold);
    hold.resolve();
  }

  /** Drop reports past their time (their instance stopped renewing them); the sweep runs at the earliest expiry. */
  private armReportSweep(ttlMs: number): void {
    const at = performance.now() + ttlMs;
    if (this.reportSweep !== undefined && this.reportSweepAt <= at) return;
    clearTimeout(this.reportSweep);
    this.reportSweepAt = at;
    this.reportSweep = setTimeout(
      () => {
        this.reportSweep = undefined;
        const now = performance.now();
        let nextMs: number | undefined;
        for (const [origin, report] of [...this.reports]) {
          if (report.expiresAt <= now) this.reportFrom(origin, new Map(), 0);
          else nextMs = Math.min(nextMs ?? Infinity, report.expiresAt - now);
        }
        if (nextMs !== undefined) this.armReportSweep(nextMs);
      },
      Math.max(1, ttlMs),
    );
    this.reportSweep.unref();
  }

  /** Stop every timer (the broker stops). */
  close(): void {
    for (const hold of [...this.holds]) this.end(hold);
    clearTimeout(this.reportSweep);
    this.reportSweep = undefined;
  }
}

function behindOf(window: Window): number {
  return window.behind.length + window.remoteBehind;
}

/** Keep only the entries of subscribers still behind (and not stalled), and remote counts still reported. */
function prune(window: Window, control: FlowControl): void {
  let kept = 0;
  const behind = window.behind;
  for (let i = 0; i < behind.length; i++) {
    const subscriber = behind[i]!;
    if (subscriber.isBehind && !subscriber.isFlowStalled) behind[kept++] = subscriber;
  }
  behind.length = kept;
  if (window.remoteByKey === undefined) return;
  for (const [key, count] of window.remoteByKey) {
    if (control.remoteBehind(key) > 0) continue;
    window.remoteBehind -= count;
    window.remoteByKey.delete(key);
  }
  if (window.remoteByKey.size === 0) window.remoteByKey = undefined;
}

/** One publisher's recent deliveries, and its hold while it has one. */
export class FlowAccount {
  private readonly control: FlowControl;
  private current = new Window();
  private previous = new Window();
  private held: FlowHold | undefined;

  constructor(control: FlowControl) {
    this.control = control;
  }

  /** What the next fan-out adds to. */
  get tally(): FlowTally {
    return this.current;
  }

  /** While held: resolves when the hold ends. A caller about to publish again waits for it first. */
  get whenReleased(): Promise<void> | undefined {
    return this.held?.promise;
  }

  get isHeld(): boolean {
    return this.held !== undefined;
  }

  /** A message to `routeKey` went to other instances too: their subscribers reported behind count. */
  noteRemote(routeKey: string): void {
    if (!this.control.hasRemoteReports) return;
    const behind = this.control.remoteBehind(routeKey);
    if (behind === 0) return;
    const window = this.current;
    window.deliveries += behind;
    window.remoteBehind += behind;
    const byKey = (window.remoteByKey ??= new Map());
    byKey.set(routeKey, (byKey.get(routeKey) ?? 0) + behind);
  }

  /**
   * After a publish: undefined to go on, or a promise to wait for (the publisher is held).
   * Judges the current and the previous window together, once they hold at least a window's
   * deliveries (a fresh publisher's first message to a slow subscriber is not "most of" its
   * deliveries yet). Entries of subscribers that caught up since are pruned before a hold.
   */
  settle(): Promise<void> | undefined {
    if (this.held !== undefined) return this.held.promise;
    const { behindShare, windowDeliveries } = this.control.settings;
    const current = this.current;
    const previous = this.previous;
    const deliveries = current.deliveries + previous.deliveries;
    if (deliveries >= windowDeliveries && behindOf(current) + behindOf(previous) > behindShare * deliveries) {
      prune(previous, this.control);
      prune(current, this.control);
      if (behindOf(current) + behindOf(previous) > behindShare * deliveries) {
        const hold = this.control.hold(this, [previous, current]);
        if (hold !== undefined) {
          this.held = hold;
          return hold.promise;
        }
      }
    }
    if (current.deliveries >= windowDeliveries) {
      this.previous = current;
      this.current = new Window();
    }
    return undefined;
  }

  /** The publisher is gone: its hold (if any) ends without waiting. */
  dispose(): void {
    if (this.held !== undefined) this.control.cancel(this.held);
  }

  /** Called by FlowControl when the hold ends. */
  released(hold: FlowHold): void {
    if (this.held === hold) this.held = undefined;
  }
}
