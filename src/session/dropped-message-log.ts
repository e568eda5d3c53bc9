// What a slow consumer missed, counted and logged for one session (policy `drop`).
//
// A flood of drops is neither silent nor a flood of lines: the first drop is logged at once,
// then at most one warn line per intervalMs, each carrying the count since the line before.
// A count not yet logged is logged when its interval is over, so the lines of a session add
// up to every message it missed; when the session ends, what is left is logged at once.

import type { Logger } from 'pino';

export const DROP_LOG_INTERVAL_MS = 10_000;

export const DROP_LOG_MESSAGE = 'slow consumer: messages dropped';

export class DroppedMessageLog {
  /** Messages dropped since the session started. */
  total = 0;
  private sinceLogged = 0;
  private lastLoggedAt = Number.NEGATIVE_INFINITY;
  private lastDestination = '';
  private timer: NodeJS.Timeout | undefined;
  private readonly logger: () => Logger;
  private readonly intervalMs: number;

  /** `logger`: the session's current logger (it gains fields, e.g. userId, after CONNECT). */
  constructor(logger: () => Logger, intervalMs = DROP_LOG_INTERVAL_MS) {
    this.logger = logger;
    this.intervalMs = intervalMs;
  }

  record(destination: string): void {
    this.total++;
    this.sinceLogged++;
    this.lastDestination = destination;
    if (this.timer !== undefined) return; // a line is already due: it will carry this one
    const waitMs = this.lastLoggedAt + this.intervalMs - Date.now();
    if (waitMs <= 0) {
      this.writeLine();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writeLine();
    }, waitMs);
    this.timer.unref();
  }

  /** The session is over: log what is still unlogged now rather than never. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.sinceLogged > 0) this.writeLine();
  }

  private writeLine(): void {
    this.logger().warn({ droppedMessages: this.sinceLogged, droppedTotal: this.total, destination: this.lastDestination }, DROP_LOG_MESSAGE);
    this.sinceLogged = 0;
    this.lastLoggedAt = Date.now();
  }
}
