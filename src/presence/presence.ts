// Rooms and presence: the vocabulary shared by the tracker (which watches sessions) and the
// stores (which decide JOIN and LEAVE): in memory for one instance, in Redis for several.
//
// A room is a topic destination matching PRESENCE_DESTINATIONS. A user is a member while at
// least one of its sessions subscribes there: JOIN when the first session arrives, LEAVE when
// the last goes. Each decision gets the room's next sequence number (`seq`), so a member list
// read at seq N is followed exactly by the events numbered above N.

import { compilePattern } from '../auth/acl';
import type { Header } from '../codec';
import { Message } from '../broker/message';
import type { DisconnectReason } from '../session/events';

/** Why a member left, as watchers are told. */
export type LeaveReason = 'unsubscribe' | 'disconnect' | 'socket-closed' | 'heartbeat-timeout' | 'kicked' | 'logged-out' | 'token-expired' | 'instance-lost';

/** The header marking presence messages: `join`, `leave` or `snapshot`. */
export const PRESENCE_HEADER = 'x-presence';
/**
 * On a JOIN or LEAVE an instance told on its own to correct what its watchers list after a
 * fault (presence-views.ts): numbered with the room's last decision, not a decision itself.
 */
export const REPAIR_HEADER = 'x-presence-repair';
/** On SUBSCRIBE: `true` asks for the member list as the subscription's first MESSAGE. */
export const SNAPSHOT_HEADER = 'x-presence-snapshot';

/** One user in one room. */
export interface Member {
  userId: string;
  roles: readonly string[];
  /** Epoch ms when the user's first session (of those present) joined. */
  joinedAt: number;
}

/** One session's presence in one room: what a store keeps per session. */
export interface SessionEntry {
  sessionId: string;
  userId: string;
  roles: readonly string[];
  /** Epoch ms. */
  joinedAt: number;
}

export interface PresenceEventBody {
  type: 'JOIN' | 'LEAVE';
  userId: string;
  roles: readonly string[];
  sessionId: string;
  /** JOIN: null; LEAVE: why the user's last session left. */
  reason: LeaveReason | null;
  /** Epoch ms of the decision. */
  at: number;
  /** The room's sequence number of this decision (last in the JSON: Redis appends it). */
  seq: number;
}

export interface RoomSnapshot {
  members: Member[];
  /** The last decision the list includes. */
  seq: number;
}

/**
 * Decides JOIN and LEAVE for every instance sharing it, exactly once each, and makes the
 * events reach the room's subscribers (and the companion destination) on every instance.
 * (With several instances, a dead one's members are made to leave by the reaper, through the
 * Redis store's onInstanceLost: src/cluster/instance-loss.ts.)
 */
export interface PresenceStore {
  /** `entry.sessionId` subscribed to `room` (idempotent: a session already in is no event). */
  join(room: string, entry: SessionEntry): Promise<void>;
  /** The session left `room` (idempotent: a session not in it is no event). */
  leave(room: string, entry: SessionEntry, reason: LeaveReason): Promise<void>;
  snapshot(room: string): Promise<RoomSnapshot>;
  /** The list a new watcher here gets (defaults to snapshot()): with several instances, the one this instance's watchers share. */
  watcherSnapshot?(room: string): Promise<RoomSnapshot>;
  /** Rooms that may have members (none is missed; an empty one may be listed), in name order. */
  rooms(): Promise<string[]>;
}

/** A session's end as watchers are told (the lifecycle has finer reasons than presence). */
export function leaveReasonFor(reason: DisconnectReason): LeaveReason {
  switch (reason) {
    case 'client':
      return 'disconnect';
    case 'socket-closed':
    case 'socket-error':
      return 'socket-closed';
    case 'heartbeat-timeout':
    case 'kicked':
    case 'logged-out':
    case 'token-expired':
    case 'instance-lost':
      return reason;
    // Reaped while alive: the reaper told (or tells) the room `instance-lost`; same reason.
    case 'instance-fenced':
      return 'instance-lost';
    // The broker refused a frame with an ERROR and closed: the client's session ended on a
    // protocol error, which for the room is an ended session.
    case 'error-sent':
      return 'disconnect';
    // This instance is going away (a graceful stop): for the others the same as losing it.
    case 'shutdown':
      return 'instance-lost';
  }
}

/** Which destinations are rooms. */
export class RoomMatcher {
  private readonly patterns: RegExp[];
  private readonly companionSuffix: string | undefined;

  constructor(patterns: readonly string[], companionSuffix: string | undefined) {
    this.patterns = patterns.map(compilePattern);
    this.companionSuffix = companionSuffix;
  }

  get isEnabled(): boolean {
    return this.patterns.length > 0;
  }

  isRoom(destination: string): boolean {
    if (this.companionSuffix !== undefined && destination.endsWith(this.companionSuffix)) return false;
    return this.patterns.some((pattern) => pattern.test(destination));
  }

  /** Whether `destination` is a room's companion, where only the broker publishes its events. */
  isCompanion(destination: string): boolean {
    if (this.companionSuffix === undefined || !destination.endsWith(this.companionSuffix)) return false;
    const room = destination.slice(0, destination.length - this.companionSuffix.length);
    return this.patterns.some((pattern) => pattern.test(room));
  }

  companionOf(room: string): string | undefined {
    return this.companionSuffix === undefined ? undefined : room + this.companionSuffix;
  }

  /** The room whose companion `destination` is, if it is one. */
  roomOfCompanion(destination: string): string | undefined {
    if (this.companionSuffix === undefined || !destination.endsWith(this.companionSuffix)) return undefined;
    const room = destination.slice(0, -this.companionSuffix.length);
    return this.isRoom(room) ? room : undefined;
  }
}

/** The MESSAGE a JOIN or LEAVE is, on `destination` (the room or its companion). */
export function presenceEventMessage(id: string, destination: string, body: PresenceEventBody): Message {
  return new Message(id, destination, destination, presenceEventHeaders(body.type), Buffer.from(JSON.stringify(body)));
}

export function presenceEventHeaders(type: 'JOIN' | 'LEAVE'): Header[] {
  return [
    [PRESENCE_HEADER, type === 'JOIN' ? 'join' : 'leave'],
    ['content-type', 'application/json'],
  ];
}

/** The member list MESSAGE a subscription with `x-presence-snapshot: true` gets first. */
export function snapshotMessage(id: string, room: string, snapshot: RoomSnapshot): Message {
  const headers: Header[] = [
    [PRESENCE_HEADER, 'snapshot'],
    ['content-type', 'application/json'],
  ];
  return new Message(id, room, room, headers, Buffer.from(JSON.stringify({ type: 'SNAPSHOT', members: snapshot.members, seq: snapshot.seq })));
}

/** The seq of a JOIN or LEAVE message; undefined for any other message. */
export function presenceSeqOf(message: Message): number | undefined {
  const marker = message.headers.find(([name]) => name === PRESENCE_HEADER)?.[1];
  if (marker !== 'join' && marker !== 'leave') return undefined;
  try {
    const seq = (JSON.parse(message.body.toString()) as { seq?: unknown }).seq;
    return typeof seq === 'number' ? seq : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a JOIN or LEAVE is an instance's correction (REPAIR_HEADER), not a decision. */
export function isRepair(message: Message): boolean {
  return message.headers.some(([name, value]) => name === REPAIR_HEADER && value === 'true');
}
