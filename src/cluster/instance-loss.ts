// The one hook through which the cluster layer's parts learn that an instance is gone: the
// reaper (membership.ts) calls onInstanceLost on each of them in turn (registry first: its
// sessions are reported lost before anything else they held is given back), under its claim
// on the reap. A part gives back or forgets what the dead generation held: sessions
// (registry), unacknowledged queue messages (queues), room entries (presence), undelivered
// session events (the backend's outboxes).

/** The reaper's claim on a reap: a long reap keeps it; a reaper that stalled past it must stop. */
export interface ReapClaim {
  /** Extend the claim; rejects when it was lost (another reaper took over): stop where you are. */
  keep(): Promise<void>;
}

/** What a part gave back or forgot, counted for the reap's log line (`{ sessions: 3 }`). */
export type LossReport = Readonly<Record<string, number>>;

export interface InstanceLossHandler {
  /**
   * Generation `generation` of `instanceId` is dead and this instance reaps it: give back or
   * forget what it held. Must be safe to run twice or by two reapers at once (exactly-once
   * effects are decided in Redis). A rejection leaves the reap unfinished: it is tried again
   * once the claim expires.
   */
  onInstanceLost(instanceId: string, generation: string, claim: ReapClaim): Promise<LossReport | void>;
}
