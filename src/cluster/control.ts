// Commands between instances: close a session, or every session of a user (kick, replace,
// logout). They travel twice: over pub/sub (fast, at most once) and through the target
// instance's inbox in Redis (membership.ts pops it every heart-beat), so a lost publish
// delays a kick by a heart-beat instead of losing it. Acting twice is harmless (a session
// closes once). This file is the one codec of the format: every command is built here (the
// registry's Lua script appends only the session id to a prefix built here), and whatever
// arrives is validated here like client input: another instance's bytes are not trusted to be
// well-formed, and a command with any field wrong is dropped whole.

import type { StompErrorCode } from '../session/errors';

/** The ERROR codes a command may close sessions with. */
const CONTROL_CODES = ['KICKED', 'LOGGED_OUT', 'SESSION_REPLACED', 'UNAVAILABLE'] as const satisfies readonly StompErrorCode[];
export type ControlCode = (typeof CONTROL_CODES)[number];

export type ControlMessage = { type: 'kick'; sessionId: string; code: ControlCode; message: string } | { type: 'kick-user'; userId: string; code: ControlCode; message: string; revokedAt?: number };

const MAX_ID_LENGTH = 1024;
const MAX_MESSAGE_LENGTH = 512;
/** Larger than any command this code builds (two ids, a message, a number): anything larger is not one. */
export const MAX_CONTROL_BYTES = 4 * MAX_ID_LENGTH + 4 * MAX_MESSAGE_LENGTH;

function isBoundedString(value: unknown, max: number): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= max;
}

/** The ERROR code a command carries for `code` (any other code closes as KICKED). */
export function controlCode(code: StompErrorCode): ControlCode {
  return (CONTROL_CODES as readonly StompErrorCode[]).includes(code) ? (code as ControlCode) : 'KICKED';
}

/** The JSON of a command; `origin` names the sending instance (pub/sub: it skips its own). */
export function encodeControl(control: ControlMessage, origin?: string): string {
  return JSON.stringify(origin === undefined ? control : { ...control, origin });
}

/**
 * A kick command up to its session id: `prefix + JSON.stringify(sessionId) + '}'` is the
 * command. For a Lua script that finds the sessions to close itself (registry-bind.lua).
 */
export function kickCommandPrefix(code: ControlCode, message: string): string {
  // The session id last, so the prefix is everything up to its value: `…,"sessionId":`.
  const json = JSON.stringify({ type: 'kick', code, message, sessionId: '' });
  return json.slice(0, -'""}'.length);
}

/** A control message from another instance, or undefined when it is not one (dropped). */
export function parseControl(value: unknown): (ControlMessage & { origin?: string }) | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (!(CONTROL_CODES as readonly unknown[]).includes(v.code) || !isBoundedString(v.message, MAX_MESSAGE_LENGTH)) return undefined;
  if (v.origin !== undefined && !isBoundedString(v.origin, MAX_ID_LENGTH)) return undefined;
  const origin = v.origin === undefined ? {} : { origin: v.origin };
  const code = v.code as ControlCode;
  if (v.type === 'kick' && isBoundedString(v.sessionId, MAX_ID_LENGTH)) return { type: 'kick', sessionId: v.sessionId, code, message: v.message, ...origin };
  if (v.type === 'kick-user' && isBoundedString(v.userId, MAX_ID_LENGTH)) {
    if (v.revokedAt !== undefined && !(typeof v.revokedAt === 'number' && Number.isFinite(v.revokedAt) && v.revokedAt >= 0)) return undefined;
    const revokedAt = v.revokedAt === undefined ? {} : { revokedAt: v.revokedAt };
    return { type: 'kick-user', userId: v.userId, code, message: v.message, ...revokedAt, ...origin };
  }
  return undefined;
}

/** A command's bytes (pub/sub, an inbox entry): bounded, JSON, then parseControl. */
export function decodeControl(bytes: Buffer | string): (ControlMessage & { origin?: string }) | undefined {
  if (bytes.length > MAX_CONTROL_BYTES) return undefined;
  try {
    return parseControl(JSON.parse(bytes.toString()));
  } catch {
    return undefined;
  }
}
