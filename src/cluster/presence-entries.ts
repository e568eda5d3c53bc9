// The two JSON formats presence keeps per room in Redis, each built here and parsed here:
//
//   presence:{room}:sessions  sessionId → stored entry {userId, roles, instanceId, joinedAt}
//   presence:{room}:members   userId → member {userId, roles, joinedAt} (the member list)
//
// What is read back was written by some instance, maybe another version, maybe damaged: it is
// checked like input, and an entry that is not well-formed reads as undefined (skipped).

import type { Member, SessionEntry } from '../presence/presence';

/** One session's entry in a room, as Redis keeps it: whose it is and which instance holds it. */
export interface StoredEntry {
  userId: string;
  roles: string[];
  instanceId: string;
  /** Epoch ms. */
  joinedAt: number;
}

export function encodeStoredEntry(entry: SessionEntry, instanceId: string): string {
  const stored: StoredEntry = { userId: entry.userId, roles: [...entry.roles], instanceId, joinedAt: entry.joinedAt };
  return JSON.stringify(stored);
}

export function encodeMember(entry: SessionEntry): string {
  const member: Member = { userId: entry.userId, roles: [...entry.roles], joinedAt: entry.joinedAt };
  return JSON.stringify(member);
}

/** A stored entry, or undefined when `json` is not one. */
export function parseStoredEntry(json: string): StoredEntry | undefined {
  const v = parseObject(json);
  if (v === undefined || typeof v.instanceId !== 'string') return undefined;
  const member = memberFields(v);
  return member === undefined ? undefined : { ...member, instanceId: v.instanceId };
}

/** A member, or undefined when `json` is not one. */
export function parseMember(json: string): Member | undefined {
  const v = parseObject(json);
  return v === undefined ? undefined : memberFields(v);
}

/** The session entry a stored entry of `sessionId` stands for. */
export function sessionEntryOf(sessionId: string, stored: StoredEntry): SessionEntry {
  return { sessionId, userId: stored.userId, roles: stored.roles, joinedAt: stored.joinedAt };
}

function parseObject(json: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(json);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function memberFields(v: Record<string, unknown>): { userId: string; roles: string[]; joinedAt: number } | undefined {
  if (typeof v.userId !== 'string' || v.userId === '' || typeof v.joinedAt !== 'number' || !Number.isFinite(v.joinedAt)) return undefined;
  if (!Array.isArray(v.roles) || !v.roles.every((r) => typeof r === 'string')) return undefined;
  return { userId: v.userId, roles: v.roles, joinedAt: v.joinedAt };
}
