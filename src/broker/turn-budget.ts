// Bounded fan-out work per event-loop turn. Every topic and user-destination fan-out spends
// its deliveries here; once a turn has spent DELIVERIES_PER_TURN, whoever publishes next (a
// session reading SENDs, the remote fan-out of other instances' messages) waits for the
// next turn, so that timers (liveness refresh, heart-beats) and I/O (Redis replies) run in
// between however much a publisher or another instance sends. One fan-out is never cut:
// the budget is checked between messages.

/**
 * About 50 ms of fan-out at ~0.2 µs a delivery. Each turn ends with one write per subscriber
 * (connection.ts), so a smaller budget costs a syscall for fewer messages: at 32k deliveries
 * (1000 subscribers: 32 messages a write) the broker spent twice the CPU per delivery. 50 ms
 * is far below any liveness TTL or heart-beat deadline (a flood used to hold a turn for seconds).
 */
export const DELIVERIES_PER_TURN = 262_144;

/** What a message handed to the relay costs, in deliveries (encoding it and its Redis command: ~5 µs). */
export const RELAY_PUBLISH_COST = 25;

export class TurnBudget {
  readonly limit: number;
  private spent = 0;
  private isResetScheduled = false;
  private waiting: Promise<void> | undefined;
  private readonly reset = (): void => {
    this.spent = 0;
    this.isResetScheduled = false;
  };

  constructor(limit = DELIVERIES_PER_TURN) {
    this.limit = limit;
  }

  /** `deliveries` were made in this turn. */
  spend(deliveries: number): void {
    this.spent += deliveries;
    if (!this.isResetScheduled) {
      this.isResetScheduled = true;
      setImmediate(this.reset);
    }
  }

  /** Whether this turn has done its share: the next fan-out should wait for nextTurn(). */
  get isSpent(): boolean {
    return this.spent >= this.limit;
  }

  /** Resolves in a later turn, after the budget was renewed (one promise for every waiter of a turn). */
  nextTurn(): Promise<void> {
    return (this.waiting ??= new Promise<void>((resolve) => {
      setImmediate(() => {
        this.waiting = undefined;
        resolve();
      });
    }));
  }
}
