// Commands between instances: close a session, or every session of a user (kick, replace,
// logout). They travel twice: over pub/sub (fast, at most once) and through the target
// instance's inbox in Redis (membership.ts pops it every heart-beat), so a lost publish
// delays a kick by a heart-beat instead of losing it. Acting twice is harmless (a session
// closes once). Whatever arrives is validated like client input: another instance's bytes
// are not trusted to be well-formed.

import type { StompErrorCode } from '../session/errors';

/** The ERROR codes a command may close sessions with. */
const CONTROL_CODES = ['KICKED', 'LOGGED_OUT', 'SESSION_REPLACED', 'UNAVAILABLE'] as const satisfies readonly StompErrorCode[];
export type ControlCode = (typeof CONTROL_CODES)[number];

export type ControlMessage =
  | { type: 'kick'; sessionId: string; code: ControlCode; message: string }
  | { type: 'kick-user'; userId: string; code: ControlCode; message: string; revokedAt?: number };

const MAX_ID_LENGTH = 1024;
const MAX_MESSAGE_LENGTH = 512;

function isBoundedString(value: unknown, max: number): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= max;
}

/** A control message from another instance, or undefined when it is not one (dropped). */
export function parseControl(value: unknown): (ControlMessage & { origin?: string }) | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (!(CONTROL_CODES as readonly unknown[]).includes(v.code) || !isBoundedString(v.message, MAX_MESSAGE_LENGTH)) return undefined;
  const origin = isBoundedString(v.origin, MAX_ID_LENGTH) ? { origin: v.origin } : {};
  const code = v.code as ControlCode;
  if (v.type === 'kick' && isBoundedString(v.sessionId, MAX_ID_LENGTH)) return { type: 'kick', sessionId: v.sessionId, code, message: v.message, ...origin };
  if (v.type === 'kick-user' && isBoundedString(v.userId, MAX_ID_LENGTH)) {
    const revokedAt = typeof v.revokedAt === 'number' && Number.isFinite(v.revokedAt) ? { revokedAt: v.revokedAt } : {};
    return { type: 'kick-user', userId: v.userId, code, message: v.message, ...revokedAt, ...origin };
  }
  return undefined;
}
