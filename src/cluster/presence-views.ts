// What this instance's watchers were told about each room, checked against Redis after a
// fault that can leave them wrong, and corrected.
//
// Every JOIN and LEAVE reaches watchers through the sequencer, in order and without holes,
// as long as Redis keeps its data and the room's log covers a gap. Two faults break that:
//   - Redis restarts empty while an instance is dead and not reaped yet: its members vanish
//     from Redis with no LEAVE, and nobody is left to tell one (no entry, no reaper list);
//   - a hole the log cannot fill (the log was trimmed or expired): the missing events are
//     lost to this instance's watchers.
// For each room with local subscribers, this module keeps the member list its watchers were
// told (the room's sessions read when the first one subscribed, then every delivered event).
// After such a fault it reads the room's sessions from Redis, with the room's decision
// number, and compares. A difference is acted on only when it is seen twice, `confirmMs`
// apart, with no decision in between (the live instances repair their own entries after a
// restart within a liveness TTL; a difference that survives that is not theirs): each user
// the watchers list but Redis does not gets a LEAVE (`instance-lost`), each user Redis lists
// but the watchers do not gets a JOIN. The corrections go to this instance's subscribers
// only (every instance corrects its own), numbered with the room's last decision and marked
// `x-presence-repair: true`; a watcher whose snapshot was read after that decision (it
// already lists what Redis lists) does not get them (presence-tracker.ts).

import type { Logger } from 'pino';
import { Message } from '../broker/message';
import { REPAIR_HEADER, presenceEventHeaders } from '../presence/presence';
import type { Member, PresenceEventBody, RoomMatcher, RoomSnapshot } from '../presence/presence';
import type { Envelope } from './envelope';
import { presenceSeqOfEnvelope } from './presence-sequencer';

export interface RoomRead {
  /** The room's decision number the sessions were read at; 0 when its counter is gone. */
  seq: number;
  sessions: Map<string, { userId: string; roles: readonly string[]; joinedAt: number }>;
  /** userId → reason of a LEAVE Redis forgot (the correction tells it with that reason). */
  forgotten?: Map<string, string>;
}

export interface PresenceViewsOptions {
  /** The room's sessions in Redis, with its decision number. */
  read(room: string): Promise<RoomRead>;
  /** The room's decision number now (undefined: no counter). */
  currentSeq(room: string): Promise<number | undefined>;
  /** Hand a message to this instance's subscribers of its destination. */
  deliverLocal(message: Message): void;
  /** Whether the sequencer is holding events of `routeKey` while it reads the log. */
  isFilling(routeKey: string): boolean;
  /** Have the sequencer read `routeKey`'s log for events not delivered here. */
  catchUp(routeKey: string): void;
  matcher: RoomMatcher;
  /** How long a difference must last before it is corrected (a liveness TTL and a heart-beat). */
  confirmMs: number;
  messageIdPrefix: string;
  logger: Logger;
}

/** How long after a list that could not be read it is read again. */
const RELOAD_AFTER_MS = 500;

/** One told member: the session its JOIN named, for a LEAVE that corrects it. */
interface ToldMember {
  sessionId: string;
  roles: readonly string[];
  joinedAt: number;
}

interface RoomView {
  /** Local destinations (the room, its companion) with subscribers. */
  interest: Set<string>;
  /** userId → member, as the watchers here were told; undefined until the first read. */
  told: Map<string, ToldMember> | undefined;
  /** Events delivered while the first read was under way. */
  early: { seq: number; body: EventBody }[];
  /** The number of the last event applied. */
  last: number;
  /** The difference seen by the last audit, and when. */
  seen: { key: string; last: number; at: number } | undefined;
  auditsLeft: number;
  timer: NodeJS.Timeout | undefined;
  isAuditing: boolean;
  /** Watchers' snapshots waiting for the list to reach a decision number. */
  waiters: { seq: number; resolve(snapshot: RoomSnapshot | undefined): void }[];
}

interface EventBody {
  type: 'JOIN' | 'LEAVE';
  userId: string;
  sessionId: string;
  roles: readonly string[];
  at: number;
}

export interface PresenceViewStats {
  audits: number;
  /** Corrections told to local watchers (JOINs and LEAVEs). */
  corrections: number;
}

/** Audits after each trigger; a round that finds a difference (or cannot compare) keeps one more going. */
const AUDIT_ROUNDS = 3;
/** A bound on rounds per trigger, whatever happens. */
const MAX_ROUNDS = 20;
/** How long a watcher's snapshot waits for this instance's list to catch up with Redis before it is read from Redis. */
const SNAPSHOT_WAIT_MS = 2000;
/** How long it waits for pub/sub before the room's log is read. */
const CATCH_UP_AFTER_MS = 150;

/** Whether an envelope is a JOIN or LEAVE an instance tells as a correction (`x-presence-repair`), not a decision. */
export function isRepairEnvelope(envelope: Envelope): boolean {
  return envelope.headers.some(([name, value]) => name === REPAIR_HEADER && value === 'true');
}

function parseBody(body: Buffer): EventBody | undefined {
  try {
    const v = JSON.parse(body.toString()) as Record<string, unknown>;
    if ((v.type !== 'JOIN' && v.type !== 'LEAVE') || typeof v.userId !== 'string' || typeof v.sessionId !== 'string') return undefined;
    const roles = Array.isArray(v.roles) ? v.roles.filter((r): r is string => typeof r === 'string') : [];
    return { type: v.type, userId: v.userId, sessionId: v.sessionId, roles, at: typeof v.at === 'number' ? v.at : Date.now() };
  } catch {
    return undefined;
  }
}

export class PresenceViews {
  readonly stats: PresenceViewStats = { audits: 0, corrections: 0 };
  private readonly options: PresenceViewsOptions;
  private readonly rooms = new Map<string, RoomView>();
  private messageSeq = 0;
  /** Until when (performance.now()) a list read from Redis is audited: just after Redis lost its data. */
  private auditUntil = -Infinity;

  constructor(options: PresenceViewsOptions) {
    this.options = options;
  }

  /** `destination` (a room or a companion) got its first local subscriber, or lost its last. */
  setInterest(destination: string, isInterested: boolean): void {
    const room = this.roomOf(destination);
    if (room === undefined) return;
    const view = this.rooms.get(room);
    if (!isInterested) {
      if (view === undefined) return;
      view.interest.delete(destination);
      if (view.interest.size === 0) this.drop(room, view);
      return;
    }
    if (view !== undefined) {
      view.interest.add(destination);
      return;
    }
    this.create(room).interest.add(destination);
  }

  /**
   * The member list a new watcher of `room` here gets: this instance's list, once it has
   * caught up with the room's decisions in Redis (the watcher's own JOIN among them), so
   * that every watcher here lists the same and a correction is right for all of them.
   * Read from Redis instead when the list cannot catch up in time (the subscriber
   * connection is down) or is not read yet.
   */
  async snapshot(room: string, fromRedis: () => Promise<RoomSnapshot>): Promise<RoomSnapshot> {
    // A list is kept only while the room has local subscribers (its events come only then):
    // a watcher whose subscription is already gone gets what Redis lists.
    const view = this.rooms.get(room);
    if (view === undefined) return fromRedis();
    const target = (await this.options.currentSeq(room)) ?? 0;
    if (this.rooms.get(room) !== view) return fromRedis(); // its last subscriber left meanwhile
    if (view.told !== undefined && view.last >= target) return this.listOf(view);
    const timers: NodeJS.Timeout[] = [];
    const caughtUp = new Promise<RoomSnapshot | undefined>((resolve) => {
      view.waiters.push({ seq: target, resolve });
      // An event decided before this instance's subscription to the room's channel held
      // (this watcher's own JOIN, for the room's first watcher here) never comes by pub/sub.
      timers.push(setTimeout(() => this.options.catchUp(room), CATCH_UP_AFTER_MS));
      timers.push(setTimeout(() => resolve(undefined), SNAPSHOT_WAIT_MS));
    });
    const listed = await caughtUp;
    for (const timer of timers) clearTimeout(timer);
    if (listed !== undefined) return listed;
    this.options.logger.debug({ room }, "presence: this instance's list did not catch up; the watcher's list is read from Redis");
    this.audit(room); // the two lists may differ: compare this instance's with Redis
    return fromRedis();
  }

  /** Every envelope the sequencer delivers here (JOIN and LEAVE are applied; the rest ignored). */
  onDelivered(envelope: Envelope): void {
    const seq = presenceSeqOfEnvelope(envelope);
    if (seq === undefined) return;
    const room = this.roomOf(envelope.routeKey);
    const view = room === undefined ? undefined : this.rooms.get(room);
    if (view === undefined) return;
    const body = parseBody(envelope.body);
    if (body === undefined) return;
    if (view.told === undefined) {
      view.early.push({ seq, body });
      return;
    }
    this.apply(room!, view, seq, body);
  }

  /**
   * A JOIN or LEAVE that is not a decision (no number, `x-presence-repair`): a LEAVE that Redis
   * forgot when it restarted empty, published by the instance that could not decide it. Told
   * to the watchers here only if their list has the user (a list read from the new Redis
   * never had it).
   */
  onRepair(envelope: Envelope): void {
    const room = this.roomOf(envelope.routeKey);
    const view = room === undefined ? undefined : this.rooms.get(room);
    if (room === undefined || view?.told === undefined) return;
    const body = parseBody(envelope.body);
    if (body === undefined) return;
    const reason = (JSON.parse(envelope.body.toString()) as { reason?: unknown }).reason;
    if (body.type === 'LEAVE') {
      const member = view.told.get(body.userId);
      if (member === undefined) return; // not listed here (or told already, by the companion's copy)
      // The user is listed through another session: it came back since the forgotten one
      // left (its JOIN was told), and that LEAVE is no longer news.
      if (member.sessionId !== body.sessionId) return;
      view.told.delete(body.userId);
      this.tell(room, view, {
        type: 'LEAVE',
        userId: body.userId,
        roles: member.roles,
        sessionId: body.sessionId,
        reason: typeof reason === 'string' ? (reason as PresenceEventBody['reason']) : 'instance-lost',
        at: body.at,
        seq: view.last,
      });
    } else if (!view.told.has(body.userId)) {
      view.told.set(body.userId, { sessionId: body.sessionId, roles: body.roles, joinedAt: body.at });
      this.tell(room, view, { type: 'JOIN', userId: body.userId, roles: body.roles, sessionId: body.sessionId, reason: null, at: body.at, seq: view.last });
    }
  }

  /** Check every room with local subscribers (Redis lost its data), and lists read in the next while. */
  auditAll(): void {
    this.auditUntil = performance.now() + 3 * this.options.confirmMs;
    for (const room of this.rooms.keys()) this.audit(room);
  }

  /** Check `destination`'s room (a hole its log could not fill). */
  audit(destination: string): void {
    const room = this.roomOf(destination);
    const view = room === undefined ? undefined : this.rooms.get(room);
    if (room === undefined || view === undefined) return;
    view.auditsLeft = MAX_ROUNDS;
    view.seen = undefined;
    const remaining = { rounds: AUDIT_ROUNDS };
    this.schedule(room, view, 0, remaining);
  }

  private schedule(room: string, view: RoomView, delayMs: number, remaining: { rounds: number }): void {
    clearTimeout(view.timer);
    view.timer = setTimeout(() => void this.round(room, view, remaining), delayMs);
    view.timer.unref();
  }

  private async round(room: string, view: RoomView, remaining: { rounds: number }): Promise<void> {
    view.timer = undefined;
    if (this.rooms.get(room) !== view) return;
    view.auditsLeft--;
    remaining.rounds--;
    const isSettled = await this.compare(room, view).catch((err: unknown) => {
      this.options.logger.debug({ err, room }, 'presence audit failed (Redis away?)');
      return false;
    });
    if (!isSettled) remaining.rounds = Math.max(remaining.rounds, 1);
    if (remaining.rounds > 0 && view.auditsLeft > 0 && this.rooms.get(room) === view) this.schedule(room, view, this.options.confirmMs, remaining);
  }

  /** One audit: true when the watchers' list and Redis agree (or were just made to). */
  private async compare(room: string, view: RoomView): Promise<boolean> {
    if (view.isAuditing) return false;
    if (view.told === undefined) {
      this.load(room, view);
      return false;
    }
    if ([...view.interest].some((d) => this.options.isFilling(d))) return false;
    view.isAuditing = true;
    const lastBefore = view.last;
    let read: RoomRead;
    try {
      read = await this.options.read(room);
    } finally {
      view.isAuditing = false;
    }
    this.stats.audits++;
    // Comparable only at one decision: none applied here since the read was sent, and the
    // read is at the last one applied (or the counter is gone: nothing decided lately).
    if (view.last !== lastBefore || (read.seq !== 0 && read.seq !== view.last)) {
      view.seen = undefined;
      return false;
    }
    const inRedis = this.membersOf(read);
    const told = view.told;
    const ghosts = [...told.keys()].filter((u) => !inRedis.has(u)).sort();
    const missing = [...inRedis.keys()].filter((u) => !told.has(u)).sort();
    if (ghosts.length === 0 && missing.length === 0) {
      view.seen = undefined;
      return true;
    }
    const key = `${ghosts.join('\n')}\u0000${missing.join('\n')}`;
    const now = performance.now();
    if (view.seen === undefined || view.seen.key !== key || view.seen.last !== view.last || now - view.seen.at < this.options.confirmMs) {
      if (view.seen?.key !== key || view.seen.last !== view.last) view.seen = { key, last: view.last, at: now };
      return false;
    }
    view.seen = undefined;
    this.options.logger.info({ room, ghosts: ghosts.length, missing: missing.length }, 'presence: the watchers here listed members Redis does not (or the other way round): corrected');
    for (const userId of ghosts) {
      const member = told.get(userId)!;
      told.delete(userId);
      const reason = (read.forgotten?.get(userId) ?? 'instance-lost') as PresenceEventBody['reason'];
      this.tell(room, view, { type: 'LEAVE', userId, roles: member.roles, sessionId: member.sessionId, reason, at: Date.now(), seq: view.last });
    }
    for (const userId of missing) {
      const member = inRedis.get(userId)!;
      told.set(userId, member);
      this.tell(room, view, { type: 'JOIN', userId, roles: member.roles, sessionId: member.sessionId, reason: null, at: Date.now(), seq: view.last });
    }
    return true;
  }

  private tell(room: string, view: RoomView, body: PresenceEventBody): void {
    this.stats.corrections++;
    const bytes = Buffer.from(JSON.stringify(body));
    const headers = [...presenceEventHeaders(body.type), [REPAIR_HEADER, 'true'] as [string, string]];
    const companion = this.options.matcher.companionOf(room);
    for (const destination of companion === undefined ? [room] : [room, companion]) {
      if (!view.interest.has(destination)) continue;
      this.options.deliverLocal(new Message(`${this.options.messageIdPrefix}-pv${++this.messageSeq}`, destination, destination, headers, bytes));
    }
  }

  private load(room: string, view: RoomView): void {
    this.options.read(room).then(
      (read) => {
        if (this.rooms.get(room) !== view) return;
        view.told = this.membersOf(read);
        view.last = read.seq;
        const early = view.early;
        view.early = [];
        for (const { seq, body } of early) if (seq > read.seq && this.rooms.get(room) === view && view.told !== undefined) this.apply(room, view, seq, body);
        this.wakeWaiters(view);
        // Read just after Redis lost its data: other instances may not have put their
        // members back yet, so this list is checked like the others.
        if (performance.now() < this.auditUntil) this.audit(room);
      },
      (err: unknown) => {
        // Redis away: no list yet; read again in a while (what was told meanwhile is unknown,
        // and the events kept meanwhile would grow with no bound).
        this.options.logger.debug({ err, room }, 'presence view unreadable (Redis away?): read again later');
        view.early = [];
        const timer = setTimeout(() => {
          if (this.rooms.get(room) === view && view.told === undefined) this.load(room, view);
        }, RELOAD_AFTER_MS);
        timer.unref();
      },
    );
  }

  private apply(room: string, view: RoomView, seq: number, body: EventBody): void {
    if (seq <= view.last && view.last !== 0) return; // the companion's copy of an event applied already
    if (view.last === 0) {
      // Read before the room's first decision (no counter then): events decided since may have
      // been published before this instance's subscription to the room's channel held, and a
      // first number tells nothing of what came before it. Read the list again (this event
      // kept for after the read): no watcher is told a list that skips them.
      view.told = undefined;
      view.early = [{ seq, body }];
      this.load(room, view);
      return;
    }
    // A hole the sequencer did not fill (it could not, or it started after this list's read):
    // what the watchers here were told may differ from Redis, checked by an audit.
    if (seq !== view.last + 1) this.audit(room);
    const listed = body.type === 'JOIN' ? view.told!.get(body.userId) : undefined;
    if (listed !== undefined && listed.sessionId !== body.sessionId) {
      // A JOIN is decided only for a user's first session in the room: the session listed
      // here left Redis with no LEAVE (Redis lost its data while its instance was dead, or
      // its LEAVE is a hole nothing could fill). Told now, before this JOIN reaches the
      // watchers, so that no watcher hears a JOIN of someone it lists.
      view.told!.delete(body.userId);
      this.tell(room, view, { type: 'LEAVE', userId: body.userId, roles: listed.roles, sessionId: listed.sessionId, reason: 'instance-lost', at: Date.now(), seq: view.last });
    }
    view.last = seq;
    if (body.type === 'JOIN') view.told!.set(body.userId, { sessionId: body.sessionId, roles: body.roles, joinedAt: body.at });
    else view.told!.delete(body.userId);
    this.wakeWaiters(view);
  }

  /** Snapshots waiting for this list to reach their number get it now (before the event that reached it is delivered). */
  private wakeWaiters(view: RoomView): void {
    if (view.waiters.length === 0 || view.told === undefined) return;
    const ready = view.waiters.filter((w) => view.last >= w.seq);
    if (ready.length === 0) return;
    view.waiters = view.waiters.filter((w) => view.last < w.seq);
    const listed = this.listOf(view);
    for (const waiter of ready) waiter.resolve(listed);
  }

  private listOf(view: RoomView): RoomSnapshot {
    const members: Member[] = [...view.told!].map(([userId, m]) => ({ userId, roles: m.roles, joinedAt: m.joinedAt }));
    members.sort((a, b) => a.joinedAt - b.joinedAt || (a.userId < b.userId ? -1 : 1));
    return { seq: view.last, members };
  }

  /** userId → its earliest session in the room. */
  private membersOf(read: RoomRead): Map<string, ToldMember> {
    const members = new Map<string, ToldMember>();
    for (const [sessionId, entry] of read.sessions) {
      const known = members.get(entry.userId);
      if (known === undefined || entry.joinedAt < known.joinedAt) members.set(entry.userId, { sessionId, roles: entry.roles, joinedAt: entry.joinedAt });
    }
    return members;
  }

  private create(room: string): RoomView {
    const view: RoomView = { interest: new Set(), told: undefined, early: [], last: 0, seen: undefined, auditsLeft: 0, timer: undefined, isAuditing: false, waiters: [] };
    this.rooms.set(room, view);
    this.load(room, view);
    return view;
  }

  private drop(room: string, view: RoomView): void {
    clearTimeout(view.timer);
    this.rooms.delete(room);
    for (const waiter of view.waiters) waiter.resolve(undefined);
    view.waiters = [];
  }

  private roomOf(destination: string): string | undefined {
    if (this.options.matcher.isRoom(destination)) return destination;
    return this.options.matcher.roomOfCompanion(destination);
  }
}
