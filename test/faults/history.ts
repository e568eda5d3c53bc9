// The operation history of one fault schedule: every operation a client made, everything it
// observed, and every fault the harness injected, each stamped with the time it happened
// (ms since the schedule began). The checker reads only this, so a history can be written
// by hand for its tests, or saved from a failing run and read again.

/** Who did or saw it: a client session (one CONNECT attempt) or the harness. */
export type HistoryEvent =
  | { t: number; type: 'connect'; session: string; user: string; instance: string; transport: 'tcp' | 'ws' }
  | { t: number; type: 'connected'; session: string; serverSession: string }
  /** An ERROR frame: `code` is the part of its message header before ":". */
  | { t: number; type: 'error'; session: string; code: string; message: string }
  /** The connection ended; `byClient`: this client closed it (DISCONNECT or its own close). */
  | { t: number; type: 'closed'; session: string; byClient: boolean }
  | { t: number; type: 'subscribe'; session: string; sub: string; destination: string; ack: 'auto' | 'client-individual'; snapshot: boolean }
  | { t: number; type: 'subscribed'; session: string; sub: string }
  | { t: number; type: 'unsubscribe'; session: string; sub: string }
  /** A SEND; `id` is the workload's own identity of the message (the `x-op` header). */
  | { t: number; type: 'send'; session: string; destination: string; id: string; receipt: boolean }
  | { t: number; type: 'receipt'; session: string; of: 'send' | 'ack'; id: string }
  | {
      t: number;
      type: 'message';
      session: string;
      sub: string;
      destination: string;
      /** The workload id (x-op) of an ordinary message; undefined for a presence event. */
      id: string | undefined;
      redelivered: boolean;
      presence?: PresenceObservation;
    }
  | { t: number; type: 'ack'; session: string; id: string }
  /** The harness: a fault begins or ends (`instance` undefined: Redis itself). */
  | { t: number; type: 'fault'; fault: FaultKind; phase: 'start' | 'end'; instance: string | undefined }
  /** The workload stopped changing things and every fault was healed. */
  | { t: number; type: 'quiet' }
  /** The moment the checker judges the final state at (`convergeMs` or more after quiet). */
  | { t: number; type: 'end' }
  /** After end: a fresh subscriber's member list of a room (what Redis holds), auditor excluded. */
  | { t: number; type: 'audit'; destination: string; users: string[] }
  /** After end: whether a fresh CONNECT to the instance was answered (CONNECTED or ERROR) in time. */
  | { t: number; type: 'probe'; instance: string; isAnswered: boolean };

export type FaultKind =
  | 'cut' // connections to Redis closed and refused
  | 'blackhole' // connections kept, nothing forwarded
  | 'stall' // SIGSTOP … SIGCONT
  | 'kill' // SIGKILL (end: restarted as a new instance)
  | 'pubsub-kill' // the instance's subscriber connection killed in Redis (CLIENT KILL)
  | 'command-kill' // its command connection killed in Redis (CLIENT KILL)
  | 'redis-restart-empty'
  | 'redis-restart-data';

export interface PresenceObservation {
  kind: 'snapshot' | 'join' | 'leave';
  /** snapshot: the members listed; join/leave: the one user. */
  users: string[];
  /** The session the event is about (join/leave). */
  serverSession: string | undefined;
  reason: string | undefined;
  seq: number | undefined;
}

export interface History {
  /** Replays this schedule: printed with every failure. */
  seed: string;
  mode: 'reject' | 'replace';
  /** Bounds the checker applies, from the settings the brokers ran with. */
  bounds: HistoryBounds;
  events: HistoryEvent[];
}

export interface HistoryBounds {
  /** How long a fault may take to show (reap, ERROR, convergence) once it is over or began. */
  convergeMs: number;
  /** Under replace: the old session is closed within this of the new one's CONNECTED. */
  replaceMs: number;
}

/** An event as recorded: the recorder stamps the time. */
export type WithoutTime<E> = E extends unknown ? Omit<E, 't'> : never;

/** Appends events with the time since `startedAt`. */
export class HistoryRecorder {
  readonly events: HistoryEvent[] = [];
  private readonly startedAt = Date.now();

  now(): number {
    return Date.now() - this.startedAt;
  }

  record(event: WithoutTime<HistoryEvent>): void {
    this.events.push({ t: this.now(), ...event });
  }
}
