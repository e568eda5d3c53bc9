// The session record as Redis keeps it, `session:{sessionId}`: a hash with userId, roles
// (JSON), instanceId, transport, remoteAddress, connectedAt and lastSeenAt (epoch ms), and
// subscriptions (JSON) once noted. Built here and parsed here; what is read back was written
// by some instance (maybe another version, maybe half gone), so it is checked like input: no
// userId is no record, and a field of the wrong shape reads as its empty value.

import type { SessionRecord, SubscriptionNote } from '../registry/registry';

/** The hash's field/value pairs, flat (HSET's argument order). */
export function sessionHashFields(record: SessionRecord): string[] {
  return [
    'userId',
    record.userId,
    'roles',
    JSON.stringify(record.roles),
    'instanceId',
    record.instanceId,
    'transport',
    record.transport,
    'remoteAddress',
    record.remoteAddress,
    'connectedAt',
    String(record.connectedAt),
    'lastSeenAt',
    String(record.lastSeenAt),
    ...(record.subscriptions === undefined ? [] : ['subscriptions', encodeSubscriptions(record.subscriptions)]),
  ];
}

export function encodeSubscriptions(subscriptions: readonly SubscriptionNote[]): string {
  return JSON.stringify(subscriptions.map(({ id, destination, ack }) => ({ id, destination, ack })));
}

/** The record a hash holds; undefined when it holds none (gone, or never whole). */
export function parseSessionHash(sessionId: string, hash: Readonly<Record<string, string>>): SessionRecord | undefined {
  if (hash.userId === undefined || hash.userId === '') return undefined;
  return {
    sessionId,
    userId: hash.userId,
    roles: parseJson(hash.roles, isStringArray) ?? [],
    instanceId: hash.instanceId ?? '',
    transport: hash.transport ?? '',
    remoteAddress: hash.remoteAddress ?? '',
    connectedAt: epochMs(hash.connectedAt),
    lastSeenAt: epochMs(hash.lastSeenAt),
    ...(hash.subscriptions === undefined ? {} : { subscriptions: parseJson(hash.subscriptions, isSubscriptionList) ?? [] }),
  };
}

/** A hash as a script returns it: a flat list of fields and values. */
export function hashOfPairs(flat: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(flat)) return out;
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1]);
  return out;
}

function epochMs(text: string | undefined): number {
  const value = Number(text);
  return text !== undefined && Number.isFinite(value) ? value : 0;
}

function parseJson<T>(json: string | undefined, isValid: (value: unknown) => value is T): T | undefined {
  if (json === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(json);
    return isValid(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

function isSubscriptionList(value: unknown): value is SubscriptionNote[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'object' && item !== null && ['id', 'destination', 'ack'].every((field) => typeof (item as Record<string, unknown>)[field] === 'string'));
}
