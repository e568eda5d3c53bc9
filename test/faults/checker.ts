// The fault suite's checker: a pure function of a History (no I/O, no clock), so that it can
// be tested with histories written by hand and run again on one saved from a failing run.
//
// It judges what clients saw, the way Jepsen judges a database from its clients' history:
//   single-session   under reject, two sessions of one user both open (and neither on a stopped
//                    instance) for longer than convergeMs;
//   replace          under replace, an older session still open replaceMs after a newer one of
//                    its user was CONNECTED (time its instance was stopped not counted);
//   silence          a CONNECT answered neither by CONNECTED nor by ERROR (also a probe of each
//                    instance after the end); a connection that
//                    ended without an ERROR though neither the client nor a kill -9 of its
//                    instance ended it; a session reported gone (LEAVE) that stays open with
//                    no ERROR; an ERROR INTERNAL_ERROR (a fault a client notices must be named);
//   presence         a watcher's list (snapshot + JOIN/LEAVE) with a JOIN of a listed user or a
//                    LEAVE of an unlisted one, or differing from the live sessions at the end;
//                    a final fresh snapshot (audit) differing from them (a ghost in Redis);
//   queue-lost       a SEND whose RECEIPT came back never consumed (ACK receipted) by anyone,
//                    unless Redis restarted empty after it was stored;
//   duplicate        a second delivery of a queue message without `redelivered`, a topic
//                    message twice to one subscription, a queue message handed to a second
//                    consumer while the first one stays open with no ERROR;
//   after-error      a MESSAGE to a session after its ERROR;
//   subscribe-receipt a topic message published, with no fault anywhere near, after a
//                    subscriber's SUBSCRIBE RECEIPT and never delivered to it.

import type { History, HistoryEvent, PresenceObservation } from './history';

export type Property = 'single-session' | 'replace' | 'silence' | 'presence' | 'queue-lost' | 'duplicate' | 'after-error' | 'subscribe-receipt';

export interface Violation {
  property: Property;
  /** When it became a violation (ms in the history). */
  t: number;
  message: string;
}

type Ev<K extends HistoryEvent['type']> = Extract<HistoryEvent, { type: K }>;

interface SessionView {
  id: string;
  user: string;
  instance: string;
  transport: 'tcp' | 'ws';
  connectAt: number;
  connectedAt: number | undefined;
  serverSession: string | undefined;
  error: Ev<'error'> | undefined;
  closed: Ev<'closed'> | undefined;
  subs: Map<string, SubView>;
}

interface SubView {
  id: string;
  destination: string;
  ack: 'auto' | 'client-individual';
  snapshot: boolean;
  subscribeAt: number;
  subscribedAt: number | undefined;
  unsubscribeAt: number | undefined;
  messages: Ev<'message'>[];
}

interface Interval {
  from: number;
  to: number;
}

const INFINITY = Number.POSITIVE_INFINITY;

export function check(history: History): Violation[] {
  const model = new Model(history);
  return [...model.singleSession(), ...model.replace(), ...model.silence(), ...model.presence(), ...model.queueLost(), ...model.duplicates(), ...model.afterError(), ...model.subscribeReceipt()].sort((a, b) => a.t - b.t);
}

/** One line per violation, with what replays it. */
export function describeViolations(history: History, violations: readonly Violation[]): string {
  const lines = violations.map((v) => `  [${v.property}] t=${v.t}ms: ${v.message}`);
  return `schedule ${history.seed} (SINGLE_SESSION=${history.mode}): ${violations.length} violation(s)\n${lines.join('\n')}`;
}

class Model {
  private readonly history: History;
  private readonly sessions = new Map<string, SessionView>();
  private readonly bySub = new Map<string, SubView>();
  private readonly stops = new Map<string, Interval[]>();
  private readonly kills = new Map<string, number[]>();
  private readonly disturbed: Interval[] = [];
  private readonly emptyRestarts: number[] = [];
  private readonly sends = new Map<string, Ev<'send'>>();
  private readonly sendReceipts = new Map<string, number>();
  private readonly ackReceipts = new Map<string, number>();
  private readonly acks: Ev<'ack'>[] = [];
  private readonly audits: Ev<'audit'>[] = [];
  private readonly probes: Ev<'probe'>[] = [];
  private endAt = INFINITY;

  constructor(history: History) {
    this.history = history;
    const openFaults = new Map<string, Ev<'fault'>>();
    for (const e of history.events) {
      switch (e.type) {
        case 'connect':
          this.sessions.set(e.session, {
            id: e.session,
            user: e.user,
            instance: e.instance,
            transport: e.transport,
            connectAt: e.t,
            connectedAt: undefined,
            serverSession: undefined,
            error: undefined,
            closed: undefined,
            subs: new Map(),
          });
          break;
        case 'connected': {
          const s = this.session(e.session);
          s.connectedAt = e.t;
          s.serverSession = e.serverSession;
          break;
        }
        case 'error':
          this.session(e.session).error ??= e;
          break;
        case 'closed':
          this.session(e.session).closed ??= e;
          break;
        case 'subscribe': {
          const sub: SubView = { id: e.sub, destination: e.destination, ack: e.ack, snapshot: e.snapshot, subscribeAt: e.t, subscribedAt: undefined, unsubscribeAt: undefined, messages: [] };
          this.session(e.session).subs.set(e.sub, sub);
          this.bySub.set(subKey(e.session, e.sub), sub);
          break;
        }
        case 'subscribed':
          this.sub(e.session, e.sub).subscribedAt ??= e.t;
          break;
        case 'unsubscribe':
          this.sub(e.session, e.sub).unsubscribeAt ??= e.t;
          break;
        case 'send':
          this.sends.set(e.id, e);
          break;
        case 'receipt':
          if (e.of === 'send') this.sendReceipts.set(e.id, e.t);
          else if (!this.ackReceipts.has(e.id)) this.ackReceipts.set(e.id, e.t);
          break;
        case 'message':
          this.sub(e.session, e.sub).messages.push(e);
          break;
        case 'ack':
          this.acks.push(e);
          break;
        case 'fault': {
          const key = `${e.fault}:${e.instance ?? 'redis'}`;
          if (e.phase === 'start') {
            openFaults.set(key, e);
            if (e.fault === 'kill' && e.instance !== undefined) push(this.kills, e.instance, e.t);
            if (e.fault === 'redis-restart-empty') this.emptyRestarts.push(e.t);
          } else {
            const start = openFaults.get(key);
            openFaults.delete(key);
            const from = start?.t ?? e.t;
            this.disturbed.push({ from, to: e.t });
            if (e.fault === 'stall' && e.instance !== undefined) push(this.stops, e.instance, { from, to: e.t });
          }
          break;
        }
        case 'end':
          this.endAt = e.t;
          break;
        case 'audit':
          this.audits.push(e);
          break;
        case 'probe':
          this.probes.push(e);
          break;
        case 'quiet':
          break;
      }
    }
    // A fault never ended (the run stopped first) disturbs everything after it.
    for (const start of openFaults.values()) {
      this.disturbed.push({ from: start.t, to: INFINITY });
      if (start.fault === 'stall' && start.instance !== undefined) push(this.stops, start.instance, { from: start.t, to: INFINITY });
    }
  }

  private get bounds() {
    return this.history.bounds;
  }

  private session(id: string): SessionView {
    const s = this.sessions.get(id);
    if (s === undefined) throw new Error(`history: event for session ${id} before its connect`);
    return s;
  }

  private sub(session: string, sub: string): SubView {
    const found = this.bySub.get(subKey(session, sub));
    if (found === undefined) throw new Error(`history: event for subscription ${session}/${sub} before its subscribe`);
    return found;
  }

  /** When the session stopped being able to receive: its ERROR, else its close; INFINITY if open. */
  private endOf(s: SessionView): number {
    return Math.min(s.error?.t ?? INFINITY, s.closed?.t ?? INFINITY);
  }

  private openInterval(s: SessionView): Interval | undefined {
    if (s.connectedAt === undefined) return undefined;
    return { from: s.connectedAt, to: this.endOf(s) };
  }

  private isOpenAt(s: SessionView, t: number): boolean {
    const open = this.openInterval(s);
    return open !== undefined && open.from <= t && t < open.to;
  }

  /** Milliseconds of `interval` during which `instance` was not stopped (SIGSTOP). */
  private runningMs(interval: Interval, ...instances: string[]): number {
    const to = Math.min(interval.to, this.endAt);
    if (to === INFINITY) return INFINITY;
    if (to <= interval.from) return 0;
    const stopped = instances
      .flatMap((i) => this.stops.get(i) ?? [])
      .map((s) => ({ from: Math.max(s.from, interval.from), to: Math.min(s.to, to) }))
      .filter((s) => s.to > s.from);
    return to - interval.from - unionLength(stopped);
  }

  /** Its instance was killed (kill -9) while it was open: nobody could send it an ERROR. */
  private wasKilledUnder(s: SessionView, t: number): boolean {
    return (this.kills.get(s.instance) ?? []).some((k) => k >= s.connectAt && k <= t + 50);
  }

  private isDisturbed(from: number, to: number): boolean {
    const margin = this.bounds.convergeMs;
    return this.disturbed.some((d) => d.from - margin <= to && from <= d.to + margin);
  }

  private connectedSessions(): SessionView[] {
    return [...this.sessions.values()].filter((s) => s.connectedAt !== undefined);
  }

  singleSession(): Violation[] {
    if (this.history.mode !== 'reject') return [];
    const out: Violation[] = [];
    const byUser = groupBy(this.connectedSessions(), (s) => s.user);
    for (const [user, list] of byUser) {
      for (let i = 0; i < list.length; i++) {
        for (let j = i + 1; j < list.length; j++) {
          const a = this.openInterval(list[i]!)!;
          const b = this.openInterval(list[j]!)!;
          const both = { from: Math.max(a.from, b.from), to: Math.min(a.to, b.to) };
          const ms = this.runningMs(both, list[i]!.instance, list[j]!.instance);
          if (ms > this.bounds.convergeMs) {
            out.push({
              property: 'single-session',
              t: both.from + this.bounds.convergeMs,
              message: `user ${user}: sessions ${describe(list[i]!)} and ${describe(list[j]!)} both open for ${ms === INFINITY ? 'ever' : `${Math.round(ms)} ms`} (bound ${this.bounds.convergeMs} ms, stopped time not counted)`,
            });
          }
        }
      }
    }
    return out;
  }

  replace(): Violation[] {
    if (this.history.mode !== 'replace') return [];
    const out: Violation[] = [];
    for (const [user, list] of groupBy(this.connectedSessions(), (s) => s.user)) {
      for (const newer of list) {
        for (const older of list) {
          if (older === newer || older.connectedAt! >= newer.connectedAt!) continue;
          const end = this.endOf(older);
          if (end <= newer.connectedAt!) continue;
          const ms = this.runningMs({ from: newer.connectedAt!, to: end }, older.instance);
          if (ms > this.bounds.replaceMs) {
            out.push({
              property: 'replace',
              t: newer.connectedAt! + this.bounds.replaceMs,
              message: `user ${user}: ${describe(older)} still open ${ms === INFINITY ? 'at the end' : `${Math.round(ms)} ms`} after ${describe(newer)} replaced it (bound ${this.bounds.replaceMs} ms)`,
            });
          }
        }
      }
    }
    return out;
  }

  silence(): Violation[] {
    const out: Violation[] = [];
    // A CONNECT must be answered (CONNECTED or ERROR) within the bound, time stopped not counted.
    for (const s of this.sessions.values()) {
      if (s.connectedAt !== undefined || s.error !== undefined) continue;
      const gaveUpAt = s.closed?.t ?? INFINITY;
      if (s.closed !== undefined && !s.closed.byClient) continue; // judged below
      if (this.wasKilledUnder(s, Math.min(gaveUpAt, this.endAt))) continue;
      const ms = this.runningMs({ from: s.connectAt, to: gaveUpAt }, s.instance);
      if (ms > this.bounds.convergeMs) out.push({ property: 'silence', t: s.connectAt + this.bounds.convergeMs, message: `${describe(s)}: CONNECT unanswered (no CONNECTED, no ERROR) for ${Math.round(ms)} ms` });
    }
    for (const s of this.sessions.values()) {
      if (s.closed === undefined || s.closed.byClient || s.error !== undefined) continue;
      if (this.wasKilledUnder(s, s.closed.t)) continue;
      if (s.closed.t > this.endAt) continue;
      out.push({ property: 'silence', t: s.closed.t, message: `${describe(s)}: connection closed with no ERROR (its instance was not killed)` });
    }
    // A fault a client notices has a name: an ERROR that names none (INTERNAL_ERROR) is a bug.
    for (const s of this.sessions.values()) {
      if (s.error?.code === 'INTERNAL_ERROR') out.push({ property: 'silence', t: s.error.t, message: `${describe(s)}: ERROR INTERNAL_ERROR names no fault (${s.error.message})` });
    }
    // Once everything is healed, every instance answers a CONNECT again.
    for (const probe of this.probes) {
      if (!probe.isAnswered)
        out.push({ property: 'silence', t: probe.t, message: `instance ${probe.instance} answers no CONNECT any more (a fresh one after the end got neither CONNECTED nor ERROR within ${this.bounds.convergeMs} ms)` });
    }
    // A session the cluster reported gone (LEAVE about it) must learn it: an ERROR, soon.
    const byServerSession = new Map([...this.sessions.values()].filter((s) => s.serverSession !== undefined).map((s) => [s.serverSession!, s]));
    const reported = new Set<string>();
    for (const m of this.presenceMessages()) {
      const p = m.presence!;
      if (p.kind !== 'leave' || p.serverSession === undefined || reported.has(p.serverSession)) continue;
      const gone = byServerSession.get(p.serverSession);
      if (gone === undefined || !this.isOpenAt(gone, m.t)) continue;
      const roomSub = [...gone.subs.values()].find((sub) => sub.destination === m.destination);
      if (roomSub === undefined || (roomSub.unsubscribeAt !== undefined && roomSub.unsubscribeAt <= m.t)) continue;
      const ms = this.runningMs({ from: m.t, to: this.endOf(gone) }, gone.instance);
      if (ms <= this.bounds.convergeMs) continue;
      reported.add(p.serverSession);
      out.push({
        property: 'silence',
        t: m.t + this.bounds.convergeMs,
        message: `${describe(gone)}: announced gone (LEAVE ${p.reason ?? '?'} in ${m.destination}, seen by ${m.session}) but still open and in the room ${ms === INFINITY ? 'at the end' : `${Math.round(ms)} ms later`}, never told (no ERROR)`,
      });
    }
    return out;
  }

  private presenceMessages(): Ev<'message'>[] {
    return [...this.bySub.values()].flatMap((sub) => sub.messages.filter((m) => m.presence !== undefined));
  }

  /** Users with a session open at `t` and subscribed to `destination` then. */
  private membersAt(destination: string, t: number): Set<string> {
    const users = new Set<string>();
    for (const s of this.sessions.values()) {
      if (!this.isOpenAt(s, t)) continue;
      for (const sub of s.subs.values()) {
        if (sub.destination === destination && sub.subscribeAt <= t && (sub.unsubscribeAt === undefined || sub.unsubscribeAt > t)) users.add(s.user);
      }
    }
    return users;
  }

  presence(): Violation[] {
    const out: Violation[] = [];
    for (const s of this.sessions.values()) {
      for (const sub of s.subs.values()) {
        if (!sub.snapshot) continue;
        // Up to the end only: what the auditor's own JOIN brings afterwards is not judged.
        const presence = sub.messages.filter((m) => m.presence !== undefined && m.t <= this.endAt);
        const first = presence[0];
        // No snapshot first: asked while Redis was away (README: ask again). Nothing to judge.
        if (first === undefined || first.presence!.kind !== 'snapshot') continue;
        const list = new Set(first.presence!.users);
        for (const m of presence.slice(1)) {
          const p = m.presence as PresenceObservation;
          const user = p.users[0]!;
          if (p.kind === 'snapshot') continue;
          if (p.kind === 'join') {
            if (list.has(user)) out.push({ property: 'presence', t: m.t, message: `watcher ${s.id} on ${sub.destination}: JOIN of ${user}, already listed (seq ${p.seq})` });
            list.add(user);
          } else {
            if (!list.has(user)) out.push({ property: 'presence', t: m.t, message: `watcher ${s.id} on ${sub.destination}: LEAVE of ${user} (${p.reason}), not listed (seq ${p.seq})` });
            list.delete(user);
          }
        }
        if (this.endAt === INFINITY || !this.isOpenAt(s, this.endAt) || (sub.unsubscribeAt !== undefined && sub.unsubscribeAt <= this.endAt)) continue;
        const live = this.membersAt(sub.destination, this.endAt);
        const diff = setDiff(list, live);
        if (diff !== undefined) out.push({ property: 'presence', t: this.endAt, message: `watcher ${describe(s)} on ${sub.destination} at the end: ${diff} (list ${fmt(list)}, live ${fmt(live)})` });
      }
    }
    for (const audit of this.audits) {
      // The snapshot is read at some moment between the end and its arrival: a member whose
      // session closed in between (its instance fenced after the end, say) may be listed or not;
      // one open throughout must be, and one open at neither moment must not.
      const atEnd = this.membersAt(audit.destination, this.endAt);
      const atArrival = this.membersAt(audit.destination, audit.t);
      const listed = new Set(audit.users);
      const ghosts = [...listed].filter((u) => !atEnd.has(u) && !atArrival.has(u));
      const missing = [...atEnd].filter((u) => atArrival.has(u) && !listed.has(u));
      const diff = diffText(ghosts, missing);
      if (diff !== undefined)
        out.push({ property: 'presence', t: audit.t, message: `fresh snapshot of ${audit.destination} after the end: ${diff} (listed ${fmt(listed)}, live ${fmt(atEnd)} at the end, ${fmt(atArrival)} at its arrival)` });
    }
    return out;
  }

  queueLost(): Violation[] {
    const out: Violation[] = [];
    const consumed = new Set(this.acks.filter((a) => this.ackReceipts.has(a.id)).map((a) => a.id));
    for (const [id, receiptAt] of this.sendReceipts) {
      const send = this.sends.get(id);
      if (send === undefined || !isQueue(send.destination)) continue;
      if (this.emptyRestarts.some((t) => t >= receiptAt)) continue; // Redis forgot it: by design
      if (this.emptyRestarts.some((t) => t >= send.t)) continue; // stored, or not, around the restart
      if (consumed.has(id)) continue;
      const deliveries = [...this.bySub.values()].flatMap((sub) => sub.messages.filter((m) => m.id === id));
      out.push({
        property: 'queue-lost',
        t: this.endAt === INFINITY ? receiptAt : this.endAt,
        message: `queue message ${id} (${send.destination}, RECEIPT at ${receiptAt} ms) never consumed; delivered ${deliveries.length}× (${deliveries.map((d) => `${d.session}@${d.t}${d.redelivered ? ' redelivered' : ''}`).join(', ') || 'never'})`,
      });
    }
    return out;
  }

  duplicates(): Violation[] {
    const out: Violation[] = [];
    const queueDeliveries = new Map<string, Ev<'message'>[]>();
    for (const sub of this.bySub.values()) {
      const seen = new Set<string>();
      for (const m of sub.messages) {
        if (m.id === undefined) continue;
        if (isQueue(m.destination)) push(queueDeliveries, m.id, m);
        else if (seen.has(m.id)) out.push({ property: 'duplicate', t: m.t, message: `topic message ${m.id} twice to ${m.session}/${sub.id}` });
        seen.add(m.id);
      }
    }
    const ackedAt = new Map<string, number>();
    for (const a of this.acks) ackedAt.set(`${a.session}/${a.id}`, Math.min(ackedAt.get(`${a.session}/${a.id}`) ?? INFINITY, a.t));
    for (const [id, list] of queueDeliveries) {
      list.sort((a, b) => a.t - b.t);
      list.slice(1).forEach((m, i) => {
        if (!m.redelivered) out.push({ property: 'duplicate', t: m.t, message: `queue message ${id} delivered again to ${m.session} without redelivered (first to ${list[0]!.session} at ${list[0]!.t} ms)` });
        const previous = list[i]!;
        if (previous.session === m.session) return;
        const holder = this.session(previous.session);
        if ((ackedAt.get(`${previous.session}/${id}`) ?? INFINITY) <= m.t || !this.isOpenAt(holder, m.t)) return;
        // The copy went to a session on an instance that was fenced meanwhile (cut off, it gave a
        // local consumer's message to another local one) and that session got its UNAVAILABLE
        // within the bound: the one duplicate README allows, marked redelivered (checked above).
        const recipient = this.session(m.session);
        if (recipient.error?.code === 'UNAVAILABLE' && this.runningMs({ from: m.t, to: recipient.error.t }, recipient.instance) <= this.bounds.convergeMs) return;
        const ms = this.runningMs({ from: m.t, to: holder.error?.t ?? this.endOf(holder) }, holder.instance);
        if (ms > this.bounds.convergeMs) {
          out.push({
            property: 'duplicate',
            t: m.t,
            message: `queue message ${id} handed to ${m.session} while ${describe(holder)} still held it unacknowledged and stayed open with no ERROR (${ms === INFINITY ? 'to the end' : `${Math.round(ms)} ms`})`,
          });
        }
      });
    }
    return out;
  }

  afterError(): Violation[] {
    const out: Violation[] = [];
    for (const s of this.sessions.values()) {
      if (s.error === undefined) continue;
      for (const sub of s.subs.values()) {
        const late = sub.messages.find((m) => m.t > s.error!.t);
        if (late !== undefined) out.push({ property: 'after-error', t: late.t, message: `${describe(s)}: MESSAGE ${late.id ?? late.presence?.kind} on ${sub.destination} after its ERROR ${s.error.code}` });
      }
    }
    return out;
  }

  subscribeReceipt(): Violation[] {
    const out: Violation[] = [];
    const subscriptions = [...this.sessions.values()].flatMap((s) => [...s.subs.values()].map((sub) => ({ s, sub })));
    for (const [id, receiptAt] of this.sendReceipts) {
      const send = this.sends.get(id)!;
      if (isQueue(send.destination)) continue;
      for (const { s, sub } of subscriptions) {
        if (sub.destination !== send.destination || sub.subscribedAt === undefined || sub.subscribedAt >= send.t) continue;
        const deadline = receiptAt + this.bounds.convergeMs;
        if (deadline > this.endAt || this.endOf(s) <= deadline || (sub.unsubscribeAt !== undefined && sub.unsubscribeAt <= deadline)) continue;
        if (this.isDisturbed(sub.subscribeAt, deadline)) continue;
        if (sub.messages.some((m) => m.id === id)) continue;
        out.push({
          property: 'subscribe-receipt',
          t: deadline,
          message: `topic message ${id} sent by ${send.session} at ${send.t} ms, after ${describe(s)}'s SUBSCRIBE RECEIPT (${sub.subscribedAt} ms), no fault near: never delivered`,
        });
      }
    }
    return out;
  }
}

function describe(s: SessionView): string {
  return `${s.id} (${s.user} on ${s.instance} over ${s.transport}${s.serverSession !== undefined ? `, ${s.serverSession}` : ''})`;
}

function subKey(session: string, sub: string): string {
  return `${session}\u0000${sub}`;
}

function isQueue(destination: string): boolean {
  return destination.startsWith('/queue/');
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) push(out, key(item), item);
  return out;
}

function unionLength(intervals: Interval[]): number {
  const sorted = [...intervals].sort((a, b) => a.from - b.from);
  let total = 0;
  let current: Interval | undefined;
  for (const i of sorted) {
    if (current === undefined || i.from > current.to) {
      if (current !== undefined) total += current.to - current.from;
      current = { ...i };
    } else current.to = Math.max(current.to, i.to);
  }
  if (current !== undefined) total += current.to - current.from;
  return total;
}

function setDiff(listed: Set<string>, live: Set<string>): string | undefined {
  const ghosts = [...listed].filter((u) => !live.has(u));
  const missing = [...live].filter((u) => !listed.has(u));
  return diffText(ghosts, missing);
}

function diffText(ghosts: readonly string[], missing: readonly string[]): string | undefined {
  if (ghosts.length === 0 && missing.length === 0) return undefined;
  return [ghosts.length > 0 ? `ghost ${ghosts.join(',')}` : '', missing.length > 0 ? `missing ${missing.join(',')}` : ''].filter(Boolean).join('; ');
}

function fmt(users: Set<string>): string {
  return `[${[...users].sort().join(',')}]`;
}
