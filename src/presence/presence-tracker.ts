// Watches this instance's sessions (lifecycle events) and turns them into presence: a
// session's first subscription to a room joins it, its last unsubscription or its end
// leaves it. The store decides JOIN and LEAVE; this file keeps each session's steps in
// order and writes the member list first on subscriptions that ask for it.
//
// Ordering: each user's steps on this instance run one after another, in the order its
// sessions did things (a promise chain per user: one session's join is decided before
// another's leave that came after it, so a user whose sessions overlap never flaps), and a
// join runs after the SUBSCRIBE handler has put the subscription in its topic. The
// SUBSCRIBE's RECEIPT does not wait for the decision: the JOIN message is the confirmation. A session that ends emits `unsubscribe` (marked isSessionEnding) for each
// subscription and then `disconnect`: the rooms are left on the disconnect, with its reason.
//
// Snapshot (`x-presence-snapshot: true`): the subscription's deliveries are held from the
// SUBSCRIBE on; the member list is read at sequence number N, written, then the held
// messages follow, minus presence events numbered N or below (the list includes them), and
// such late events keep being dropped for that subscription after.

import type { Logger } from 'pino';
import { headerValue } from '../codec';
import type { Message } from '../broker/message';
import type { Subscription } from '../broker/subscription';
import type { LifecycleEvents, SubscriptionEvent } from '../session/events';
import { SNAPSHOT_HEADER, isRepair, leaveReasonFor, presenceSeqOf, snapshotMessage } from './presence';
import type { LeaveReason, Member, PresenceStore, RoomMatcher, SessionEntry } from './presence';

/** What RunningServer exposes (the HTTP API's `GET /api/presence` reads it). */
export interface Presence {
  /** Whether any destination is a room (PRESENCE_DESTINATIONS set). */
  readonly isEnabled: boolean;
  isRoom(destination: string): boolean;
  /** Whether the destination is a room's companion (PRESENCE_COMPANION_SUFFIX): only the broker publishes there. */
  isCompanion(destination: string): boolean;
  /** The room's members now, the same from every instance; [] for a room nobody is in. */
  members(destination: string): Promise<Member[]>;
  /** Rooms with members now, each with its member list (at most `limit` rooms, in name order). */
  rooms(limit: number): Promise<{ destination: string; members: Member[] }[]>;
}

interface LocalSession {
  userId: string;
  roles: readonly string[];
  /** room → this session's subscriptions to it and when it joined. */
  rooms: Map<string, { count: number; joinedAt: number }>;
}

/** Rooms whose member lists rooms() reads at once. */
const ROOMS_BATCH = 20;

export interface PresenceTrackerDeps {
  events: LifecycleEvents;
  store: PresenceStore;
  matcher: RoomMatcher;
  logger: Logger;
  messageIdPrefix: string;
}

export class PresenceTracker implements Presence {
  private readonly deps: PresenceTrackerDeps;
  private readonly sessions = new Map<string, LocalSession>();
  /** Per user: the tail of its chain of steps. */
  private readonly chains = new Map<string, Promise<void>>();
  /** Snapshot subscriptions still waiting for their member list → the messages held meanwhile. */
  private readonly awaitingSnapshot = new Map<Subscription, Message[]>();
  /** `sessionId\nroom` → its room subscription waiting for the member list. */
  private readonly snapshotPending = new Map<string, Subscription>();
  /** Per waiting room subscription: the same session's companion subscriptions made meanwhile, and what they hold. */
  private readonly companionsHeld = new Map<Subscription, { subscription: Subscription; held: Message[] }[]>();
  private snapshotSeq = 0;

  constructor(deps: PresenceTrackerDeps) {
    this.deps = deps;
    if (!deps.matcher.isEnabled) return;
    deps.events.on('subscribe', (e) => this.onSubscribe(e));
    deps.events.on('unsubscribe', (e) => this.onUnsubscribe(e));
    // Only this instance's sessions are tracked: a dead instance's, reported lost by this
    // instance's reaper (`instance-lost`), is not, and its rooms are left by the reaper itself
    // (RedisPresence.onInstanceLost). A session of this instance closed because the instance
    // was reaped (`instance-fenced`) leaves as `instance-lost`, exactly once with the reaper's
    // (the store decides), and stops being local at once, so a repair cannot add it back.
    deps.events.on('disconnect', (e) => this.onSessionEnd(e.session.sessionId, leaveReasonFor(e.reason)));
  }

  get isEnabled(): boolean {
    return this.deps.matcher.isEnabled;
  }

  isRoom(destination: string): boolean {
    return this.deps.matcher.isRoom(destination);
  }

  isCompanion(destination: string): boolean {
    return this.deps.matcher.isCompanion(destination);
  }

  async members(destination: string): Promise<Member[]> {
    if (!this.isRoom(destination)) return [];
    return (await this.deps.store.snapshot(destination)).members;
  }

  async rooms(limit: number): Promise<{ destination: string; members: Member[] }[]> {
    const found: { destination: string; members: Member[] }[] = [];
    const names = await this.deps.store.rooms();
    // Read a batch at a time: a store may list rooms that have emptied since.
    for (let i = 0; i < names.length && found.length < limit; i += ROOMS_BATCH) {
      const batch = names.slice(i, i + ROOMS_BATCH);
      const snapshots = await Promise.all(batch.map((room) => this.deps.store.snapshot(room)));
      batch.forEach((destination, j) => {
        const { members } = snapshots[j]!;
        if (members.length > 0 && found.length < limit) found.push({ destination, members });
      });
    }
    return found;
  }

  /** This instance's sessions in rooms: what a store rebuilds from after Redis lost its state. */
  localEntries(): Map<string, SessionEntry[]> {
    const byRoom = new Map<string, SessionEntry[]>();
    for (const [sessionId, session] of this.sessions) {
      for (const [room, { joinedAt }] of session.rooms) {
        let entries = byRoom.get(room);
        if (entries === undefined) byRoom.set(room, (entries = []));
        entries.push({ sessionId, userId: session.userId, roles: session.roles, joinedAt });
      }
    }
    return byRoom;
  }

  /** Whether `sessionId` (of this instance) is in `room` now. */
  isInRoom(sessionId: string, room: string): boolean {
    return this.sessions.get(sessionId)?.rooms.has(room) === true;
  }

  /** Resolves when every step begun so far is done (tests, shutdown). */
  async whenIdle(): Promise<void> {
    while (this.chains.size > 0) await Promise.allSettled([...this.chains.values()]);
  }

  private onSubscribe(e: SubscriptionEvent): void {
    const room = e.destination;
    if (e.subscription !== undefined && this.isCompanion(room)) {
      // The session's own list comes first: its companion holds what arrives until then.
      const owner = this.deps.matcher.roomOfCompanion(room);
      const waiting = owner === undefined ? undefined : this.snapshotPending.get(`${e.session.sessionId}\n${owner}`);
      if (waiting !== undefined) this.holdCompanion(waiting, e.subscription);
      return;
    }
    if (!this.isRoom(room)) return;
    const sessionId = e.session.sessionId;
    let session = this.sessions.get(sessionId);
    if (session === undefined) {
      session = { userId: e.session.userId, roles: e.session.roles, rooms: new Map() };
      this.sessions.set(sessionId, session);
    }
    const joined = session.rooms.get(room);
    if (joined !== undefined) joined.count++;
    else session.rooms.set(room, { count: 1, joinedAt: Date.now() });
    const subscription = e.subscription;
    const wantsSnapshot = subscription !== undefined && e.headers !== undefined && headerValue(e.headers, SNAPSHOT_HEADER) === 'true';
    if (wantsSnapshot) {
      this.holdUntilSnapshot(subscription);
      this.snapshotPending.set(`${sessionId}\n${room}`, subscription);
    }
    if (joined === undefined) {
      const entry: SessionEntry = { sessionId, userId: session.userId, roles: session.roles, joinedAt: session.rooms.get(room)!.joinedAt };
      // Decided once this instance hears the room's channel: its own JOIN is not published
      // before the subscription to it holds (it would never come back here), and comes after
      // the SUBSCRIBE's RECEIPT.
      const ready = e.relayReady;
      this.enqueue(session.userId, () => (ready === undefined ? this.deps.store.join(room, entry) : ready.catch(() => undefined).then(() => this.deps.store.join(room, entry))));
    }
    if (wantsSnapshot) this.enqueue(session.userId, () => this.writeSnapshot(room, subscription, sessionId));
  }

  private onUnsubscribe(e: SubscriptionEvent): void {
    if (e.subscription !== undefined) {
      this.awaitingSnapshot.delete(e.subscription);
      if (this.isCompanion(e.destination)) {
        for (const list of this.companionsHeld.values()) {
          const index = list.findIndex((c) => c.subscription === e.subscription);
          if (index >= 0) list.splice(index, 1);
        }
      }
    }
    if (e.isSessionEnding === true) return; // left with the disconnect's reason, next
    const room = e.destination;
    const session = this.sessions.get(e.session.sessionId);
    const joined = session?.rooms.get(room);
    if (session === undefined || joined === undefined) return;
    if (--joined.count > 0) return;
    session.rooms.delete(room);
    if (session.rooms.size === 0) this.sessions.delete(e.session.sessionId);
    const entry: SessionEntry = { sessionId: e.session.sessionId, userId: session.userId, roles: session.roles, joinedAt: joined.joinedAt };
    this.enqueue(session.userId, () => this.deps.store.leave(room, entry, 'unsubscribe'));
  }

  private onSessionEnd(sessionId: string, reason: LeaveReason): void {
    const session = this.sessions.get(sessionId);
    if (session === undefined) return;
    this.sessions.delete(sessionId);
    for (const [room, { joinedAt }] of session.rooms) {
      const entry: SessionEntry = { sessionId, userId: session.userId, roles: session.roles, joinedAt };
      this.enqueue(session.userId, () => this.deps.store.leave(room, entry, reason));
    }
  }

  private enqueue(userId: string, step: () => Promise<void>): void {
    const previous = this.chains.get(userId) ?? Promise.resolve();
    const next = previous.then(step).catch((err: unknown) => this.deps.logger.warn({ err, userId }, 'presence step failed (Redis away?): repaired when it is back'));
    this.chains.set(userId, next);
    void next.then(() => {
      if (this.chains.get(userId) === next) this.chains.delete(userId);
    });
  }

  private holdUntilSnapshot(subscription: Subscription): void {
    const held: Message[] = [];
    subscription.gate = (message) => {
      held.push(message);
      return false;
    };
    this.awaitingSnapshot.set(subscription, held);
  }

  private holdCompanion(roomSubscription: Subscription, companion: Subscription): void {
    const held: Message[] = [];
    companion.gate = (message) => {
      held.push(message);
      return false;
    };
    let list = this.companionsHeld.get(roomSubscription);
    if (list === undefined) this.companionsHeld.set(roomSubscription, (list = []));
    list.push({ subscription: companion, held });
  }

  /** The room subscription's list was written (or could not be read): its session's companions deliver what they held. */
  private releaseCompanions(roomSubscription: Subscription, sessionId: string, room: string): void {
    if (this.snapshotPending.get(`${sessionId}\n${room}`) === roomSubscription) this.snapshotPending.delete(`${sessionId}\n${room}`);
    const companions = this.companionsHeld.get(roomSubscription);
    if (companions === undefined) return;
    this.companionsHeld.delete(roomSubscription);
    for (const { subscription, held } of companions) {
      subscription.gate = undefined;
      for (const message of held) subscription.deliver(message);
    }
  }

  private async writeSnapshot(room: string, subscription: Subscription, sessionId: string): Promise<void> {
    let snapshot;
    try {
      snapshot = await (this.deps.store.watcherSnapshot?.(room) ?? this.deps.store.snapshot(room));
    } finally {
      // Even without a list (Redis away) the subscription must not stay held.
      const held = this.awaitingSnapshot.get(subscription);
      subscription.gate = undefined;
      if (held !== undefined) {
        this.awaitingSnapshot.delete(subscription);
        const listedSeq = snapshot?.seq ?? -1;
        if (snapshot !== undefined) subscription.deliver(snapshotMessage(`${this.deps.messageIdPrefix}-s${++this.snapshotSeq}`, room, snapshot));
        // An event numbered up to the list's number is in it already; a correction numbered
        // with the list's own number is not (it corrects what the list was read from).
        const isListed = (message: Message): boolean => {
          const seq = presenceSeqOf(message);
          if (seq === undefined) return false;
          return seq < listedSeq || (seq === listedSeq && !isRepair(message));
        };
        for (const message of held) if (!isListed(message)) subscription.deliver(message);
        if (snapshot !== undefined) subscription.gate = (message) => !isListed(message);
      }
      this.releaseCompanions(subscription, sessionId, room);
    }
  }
}
