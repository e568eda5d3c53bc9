// A queue's redeliver list entry (`queue:{name}:redeliver`): a stream entry given back for
// any instance to claim, with who gave it, when, and whether a client had seen it:
// `<entryId>|<giver instance>|<given at ms>|<wasDelivered 0/1>`.
// The one TypeScript codec of the format; the scripts share lua/include/redeliver-entry.lua,
// and test/cluster/lua.test.ts checks that the two read each other's entries.

export interface RedeliverEntry {
  entryId: string;
  giver: string;
  givenAtMs: number;
  /** A client saw it: the next delivery is marked redelivered. */
  wasDelivered: boolean;
}

export function encodeRedeliverEntry(entry: RedeliverEntry): string {
  return `${entry.entryId}|${entry.giver}|${entry.givenAtMs}|${entry.wasDelivered ? '1' : '0'}`;
}

const ENTRY = /^([^|]+)\|(.+)\|(\d+)\|([01])$/s;

/** Undefined for anything not in the format. */
export function decodeRedeliverEntry(text: string): RedeliverEntry | undefined {
  const match = ENTRY.exec(text);
  if (match === null) return undefined;
  return { entryId: match[1]!, giver: match[2]!, givenAtMs: Number(match[3]), wasDelivered: match[4] === '1' };
}
