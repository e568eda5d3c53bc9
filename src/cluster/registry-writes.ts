// How the Redis registry writes and removes a session: one strategy per kind of Redis
// (registry-writes-single.ts, registry-writes-cluster.ts), chosen once when the registry is
// built, so the registry itself never asks which kind it talks to. Both decide the policy with
// the same shared Lua part (include/registry-policy.lua); they differ in how many slots one script
// may touch.

import type { SessionRecord } from '../registry/registry';
import type { RedisKeys } from './keys';
import type { RedisConnection } from './redis-client';

/** One registration attempt: [1, evicted…] bound, [0, holders…] refused, [2] lost to a newer session (replace), [-1] fenced. */
export type RegistrationReply = [number, ...string[]];

/** The writer's standing in the cluster (membership.ts), read at each write. */
export interface WriterFence {
  /** Whether this instance may write for itself now (joined, not fenced). */
  readonly isJoined: boolean;
  /** The liveness key and the generation it must hold for a write to be accepted. */
  readonly fence: { key: string; generation: string };
}

export interface RegistrationRequest {
  record: SessionRecord;
  /** Sessions per user; -1 for no limit. */
  max: number;
  mode: 'reject' | 'replace';
  /**
   * Holders whose instance is dead (dead-holders.ts): they no longer count, and are dropped;
   * 'judge': the write judges them itself, in the same step (judgesDeadHolders).
   */
  dead: readonly string[] | 'judge';
  /** A CONNECT's own registration: it may wait a moment to go to Redis with others (LuaScript.runGathered). */
  mayWait?: boolean;
}

export interface RegistryWrites {
  /**
   * Whether the holders a registration evicts still have to be told (through their instance's
   * inbox) by the caller; false when the write told them itself, atomically with the eviction.
   */
  readonly leavesEvictedUntold: boolean;
  /** Whether register can judge the dead holders itself (`dead: 'judge'`), saving the caller a read. */
  readonly judgesDeadHolders: boolean;
  /** Write the session through the policy (registry-bind.lua's verdicts); nothing is left of a refused one. */
  register(request: RegistrationRequest): Promise<RegistrationReply>;
  /** Remove a session from every index; its record if this call removed it (exactly one caller when several race). */
  unregister(sessionId: string, instanceId: string): Promise<SessionRecord | undefined>;
}

export interface RegistryWritesOptions {
  redis: RedisConnection;
  keys: RedisKeys;
  sessionTtlSeconds: number;
  /** Undefined for a registry used without membership (tests of the registry alone). */
  writer(): WriterFence | undefined;
}

/** A script's reply as a RegistrationReply: the verdict a number, the ids strings. */
export function registrationReply(reply: unknown): RegistrationReply {
  const values = reply as unknown[];
  return [Number(values[0]), ...values.slice(1).map(String)];
}
