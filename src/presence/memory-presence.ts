// Presence for one instance (embedded mode): rooms in memory, decisions synchronous, events
// published through the router the moment they are decided. A session's count of
// subscriptions is the tracker's business; here a session is in a room or not.
//
// Numbers: a room that empties is forgotten (room names are the clients' choice), and one
// made again numbers its decisions from the clock in microseconds (a monotonic one), above
// any number this store gave: like the Redis store's counter, numbers never go back, so a
// companion's watcher (not a member itself) never sees a decision numbered below one it saw.

import type { Message } from '../broker/message';
import { presenceEventMessage } from './presence';
import type { LeaveReason, Member, PresenceEventBody, PresenceStore, RoomMatcher, RoomSnapshot, SessionEntry } from './presence';

interface Room {
  seq: number;
  sessions: Map<string, SessionEntry>;
  /** userId → the member and how many of its sessions are here. */
  users: Map<string, { member: Member; sessionCount: number }>;
}

export class MemoryPresenceStore implements PresenceStore {
  private readonly byName = new Map<string, Room>();
  private readonly publish: (message: Message) => void;
  private readonly matcher: RoomMatcher;
  private readonly messageIdPrefix: string;
  private messageSeq = 0;
  /** The highest decision number given, in any room. */
  private highestSeq = 0;

  constructor(publish: (message: Message) => void, matcher: RoomMatcher, messageIdPrefix: string) {
    this.publish = publish;
    this.matcher = matcher;
    this.messageIdPrefix = messageIdPrefix;
  }

  async join(roomName: string, entry: SessionEntry): Promise<void> {
    let room = this.byName.get(roomName);
    if (room === undefined) {
      room = { seq: this.startingSeq(), sessions: new Map(), users: new Map() };
      this.byName.set(roomName, room);
    }
    if (room.sessions.has(entry.sessionId)) return;
    room.sessions.set(entry.sessionId, entry);
    const user = room.users.get(entry.userId);
    if (user !== undefined) {
      user.sessionCount++;
      return;
    }
    room.users.set(entry.userId, { member: { userId: entry.userId, roles: entry.roles, joinedAt: entry.joinedAt }, sessionCount: 1 });
    this.announce(roomName, { type: 'JOIN', userId: entry.userId, roles: entry.roles, sessionId: entry.sessionId, reason: null, at: Date.now(), seq: this.next(room) });
  }

  async leave(roomName: string, { sessionId }: SessionEntry, reason: LeaveReason): Promise<void> {
    const room = this.byName.get(roomName);
    const entry = room?.sessions.get(sessionId);
    if (room === undefined || entry === undefined) return;
    room.sessions.delete(sessionId);
    const user = room.users.get(entry.userId)!;
    if (--user.sessionCount > 0) return;
    room.users.delete(entry.userId);
    const seq = this.next(room);
    // An empty room is forgotten; made again, it numbers on from startingSeq().
    if (room.users.size === 0) this.byName.delete(roomName);
    this.announce(roomName, { type: 'LEAVE', userId: entry.userId, roles: entry.roles, sessionId, reason, at: Date.now(), seq });
  }

  async snapshot(roomName: string): Promise<RoomSnapshot> {
    const room = this.byName.get(roomName);
    // No room: numbered where its next decision would start (a later event is above it).
    if (room === undefined) return { members: [], seq: this.startingSeq() };
    return { members: [...room.users.values()].map((u) => u.member), seq: room.seq };
  }

  async rooms(): Promise<string[]> {
    return [...this.byName.keys()].sort();
  }

  /** Where a room made now starts numbering: the clock in µs, never below a number given. */
  private startingSeq(): number {
    return Math.max(Math.floor((performance.timeOrigin + performance.now()) * 1000), this.highestSeq);
  }

  private next(room: Room): number {
    this.highestSeq = Math.max(this.highestSeq, ++room.seq);
    return room.seq;
  }

  private announce(room: string, body: PresenceEventBody): void {
    this.publish(presenceEventMessage(`${this.messageIdPrefix}-p${++this.messageSeq}`, room, body));
    const companion = this.matcher.companionOf(room);
    if (companion !== undefined) this.publish(presenceEventMessage(`${this.messageIdPrefix}-p${++this.messageSeq}`, companion, body));
  }
}
