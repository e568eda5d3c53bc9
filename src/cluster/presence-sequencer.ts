// Presence events in order and without holes on every instance. JOIN and LEAVE travel over
// pub/sub, which is at most once: an instance whose subscriber connection was down (a cut, a
// killed connection) misses some, and on a Redis Cluster two events decided on different
// instances may arrive swapped. Each event carries its room's decision number (`seq`, one
// more per decision) and is also kept in the destination's recent-events log in Redis. This
// sits between the relay and the router: per room (and companion) it remembers the last
// number delivered here, drops a repeat, and on a hole holds what arrives, reads the log,
// and delivers the missing events first, in order. After the subscriber reconnects, every
// room with local subscribers is read from the log the same way (a trailing event has no
// later one to reveal its hole). A hole the log cannot fill (the counter restarted after
// Redis lost it, or the log was trimmed) is accepted and reported (onLost): presence-views.ts
// then compares what the watchers here were told with Redis and corrects it.

import type { Logger } from 'pino';
import { PRESENCE_HEADER } from '../presence/presence';
import { decodeEnvelope } from './envelope';
import type { Envelope } from './envelope';

export interface PresenceSequencerOptions {
  /** The destination's recent events (envelopes), oldest first. */
  recentEvents(destination: string): Promise<Buffer[]>;
  /** Hand an envelope on to local subscribers. */
  deliver(envelope: Envelope): void;
  /** Events of `routeKey` were lost for good (a hole the log could not fill). */
  onLost?(routeKey: string): void;
  logger: Logger;
}

interface RoomState {
  /** The last number delivered here; undefined until one is. */
  last: number | undefined;
  /** Envelopes held while the log is read. */
  held: Envelope[] | undefined;
  /** Log reads that failed in a row (Redis away): the next is tried after a back-off. */
  failedReads?: number;
}

/** First wait before a log read that failed is tried again; doubled each time, up to the max. */
const REREAD_FIRST_MS = 100;
const REREAD_MAX_MS = 5000;

export interface SequencerStats {
  /** Events delivered from the log that pub/sub had not brought (yet). */
  filled: number;
  /** Events that arrived twice (pub/sub after the log) and were dropped. */
  repeats: number;
}

/** The `seq` of a JOIN or LEAVE envelope (the body's last field), or undefined for any other. */
export function presenceSeqOfEnvelope(envelope: Envelope): number | undefined {
  const marker = envelope.headers.find(([name]) => name === PRESENCE_HEADER)?.[1];
  if (marker !== 'join' && marker !== 'leave') return undefined;
  const match = /"seq":(\d+)\}$/.exec(envelope.body.toString('latin1', Math.max(0, envelope.body.length - 40)));
  return match === null ? undefined : Number(match[1]);
}

export class PresenceSequencer {
  readonly stats: SequencerStats = { filled: 0, repeats: 0 };
  private readonly options: PresenceSequencerOptions;
  private readonly rooms = new Map<string, RoomState>();

  constructor(options: PresenceSequencerOptions) {
    this.options = options;
  }

  /** Every envelope from another instance (or a presence event this instance decided). */
  onEnvelope(envelope: Envelope): void {
    const seq = presenceSeqOfEnvelope(envelope);
    if (seq === undefined) {
      this.options.deliver(envelope);
      return;
    }
    let state = this.rooms.get(envelope.routeKey);
    if (state === undefined) this.rooms.set(envelope.routeKey, (state = { last: undefined, held: undefined }));
    if (state.held !== undefined) {
      state.held.push(envelope);
      return;
    }
    if (state.last !== undefined && seq <= state.last) {
      this.stats.repeats++;
      return;
    }
    if (state.last === undefined || seq === state.last + 1) {
      state.last = seq;
      this.options.deliver(envelope);
      return;
    }
    state.held = [envelope];
    void this.fill(envelope.routeKey, state);
  }

  /**
   * `routeKey` got its first local subscriber: start from the room's number now (`seq`, read
   * from Redis), so that a hole is seen even before the first event arrives here.
   */
  track(routeKey: string, seq: number | undefined): void {
    if (seq === undefined) return;
    const state = this.rooms.get(routeKey);
    if (state === undefined) this.rooms.set(routeKey, { last: seq, held: undefined });
    else if (state.last === undefined && state.held === undefined) state.last = seq;
  }

  /** `routeKey` has no local subscriber any more: forget its number. */
  forget(routeKey: string): void {
    const state = this.rooms.get(routeKey);
    if (state !== undefined && state.held === undefined) this.rooms.delete(routeKey);
  }

  /** The subscriber connection is back: read every known room's log for what it missed. */
  resyncAll(): void {
    for (const [routeKey, state] of this.rooms) {
      if (state.held !== undefined || state.last === undefined) continue;
      state.held = [];
      void this.fill(routeKey, state);
    }
  }

  /** Read the log, deliver what is newer than `last` in order (held envelopes merged in), then let go. */
  private async fill(routeKey: string, state: RoomState): Promise<void> {
    let logged: Envelope[] = [];
    let isRead = true;
    try {
      logged = (await this.options.recentEvents(routeKey)).flatMap((bytes) => {
        try {
          return [decodeEnvelope(bytes)];
        } catch {
          return [];
        }
      });
    } catch (err) {
      isRead = false;
      this.options.logger.debug({ err, routeKey }, 'presence log unreadable (Redis away?): delivering what arrived, read again later');
    }
    const held = state.held ?? [];
    state.held = undefined;
    const fromPubSub = new Set(held);
    const bySeq = new Map<number, Envelope>();
    for (const envelope of [...held, ...logged]) {
      const seq = presenceSeqOfEnvelope(envelope);
      if (seq !== undefined && !bySeq.has(seq)) bySeq.set(seq, envelope);
    }
    let isLost = false;
    for (const seq of [...bySeq.keys()].sort((a, b) => a - b)) {
      if (state.last !== undefined && seq <= state.last) continue;
      if (state.last !== undefined && seq !== state.last + 1) isLost = true;
      const envelope = bySeq.get(seq)!;
      if (!fromPubSub.has(envelope)) this.stats.filled++;
      state.last = seq;
      this.options.deliver(envelope);
    }
    if (isLost) this.options.onLost?.(routeKey);
    // A read that failed (the command connection dropped just after the subscriber came back)
    // is made again: a trailing event it would have found has no later one to show its hole.
    if (isRead) state.failedReads = 0;
    else this.readAgainLater(routeKey, state);
  }

  private readAgainLater(routeKey: string, state: RoomState): void {
    const failed = (state.failedReads ?? 0) + 1;
    state.failedReads = failed;
    const timer = setTimeout(
      () => {
        if (this.rooms.get(routeKey) !== state || state.held !== undefined || state.last === undefined) return;
        state.held = [];
        void this.fill(routeKey, state);
      },
      Math.min(REREAD_FIRST_MS * 2 ** (failed - 1), REREAD_MAX_MS),
    );
    timer.unref();
  }

  /**
   * Read `routeKey`'s log now for events this instance has not delivered (one published just
   * before this instance's subscription to the channel held, with no later event to show
   * the hole).
   */
  catchUp(routeKey: string): void {
    const state = this.rooms.get(routeKey);
    if (state === undefined || state.held !== undefined || state.last === undefined) return;
    state.held = [];
    void this.fill(routeKey, state);
  }

  /** Whether events of `routeKey` are held while its log is read. */
  isFilling(routeKey: string): boolean {
    return this.rooms.get(routeKey)?.held !== undefined;
  }
}
