// The log line about in-memory queue limits (messages dropped by a full queue, publishes
// refused): the first event is logged at once, then at most one warn line per
// LIMIT_LOG_INTERVAL_MS, each carrying the counts since the line before, so a flood of drops
// is neither silent nor a flood of lines.

import type { Logger } from 'pino';

/** At most one line per this about drops and refusals, with the counts since the last one. */
export const LIMIT_LOG_INTERVAL_MS = 10_000;

export interface LimitEvents {
  droppedMessages: number;
  droppedBytes: number;
  refusedQueueFull: number;
  refusedQueueLimit: number;
}

export class QueueLimitLog {
  private unlogged: LimitEvents = { droppedMessages: 0, droppedBytes: 0, refusedQueueFull: 0, refusedQueueLimit: 0 };
  private lastLineAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly logger: Logger | undefined;
  /** What the line says of the queues as a whole when it is written. */
  private readonly state: () => { queuedBytes: number; queues: number };

  constructor(logger: Logger | undefined, state: () => { queuedBytes: number; queues: number }) {
    this.logger = logger;
    this.state = state;
  }

  dropped(messageCount: number, byteCount: number): void {
    this.unlogged.droppedMessages += messageCount;
    this.unlogged.droppedBytes += byteCount;
    this.noteEvent();
  }

  refused(code: 'QUEUE_FULL' | 'QUEUE_LIMIT'): void {
    if (code === 'QUEUE_FULL') this.unlogged.refusedQueueFull++;
    else this.unlogged.refusedQueueLimit++;
    this.noteEvent();
  }

  /** Log now, or once the interval since the last line is over. */
  private noteEvent(): void {
    const logger = this.logger;
    if (logger === undefined || this.timer !== undefined) return;
    const waitMs = this.lastLineAt + LIMIT_LOG_INTERVAL_MS - Date.now();
    if (waitMs <= 0) {
      this.writeLine(logger);
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writeLine(logger);
    }, waitMs);
    this.timer.unref();
  }

  private writeLine(logger: Logger): void {
    this.lastLineAt = Date.now();
    logger.warn({ ...this.unlogged, ...this.state() }, 'queue limits: messages dropped or publishes refused');
    this.unlogged = { droppedMessages: 0, droppedBytes: 0, refusedQueueFull: 0, refusedQueueLimit: 0 };
  }
}
