// Session events for the backend's /events: the lifecycle feed turned into contract events,
// appended to the outbox, and one deliverer per outbox posting them in order, at most
// MAX_EVENTS_PER_CALL a call, retried with back-off until a 2xx (at least once).
//
// Unsubscribes that a session's end implies are not sent: its DISCONNECT says it. A
// disconnect with reason `instance-lost` (a session of another, dead instance) is never
// appended here: with Redis, the survivor that reaps the dead instance appends those to the
// dead instance's own outbox, after its last events. An instance told it was reaped
// (`instance-fenced`) appends its sessions' DISCONNECTs under the very id the reaper uses:
// at least once, and a backend that drops seen ids gets one.

import type { Logger } from 'pino';
import { leaveReasonFor } from '../presence/presence';
import type { SessionEventName } from '../config';
import type { LifecycleEvents, SessionInfo } from '../session/events';
import type { BackendSessions } from './backend-sessions';
import { callId } from './client';
import type { HookCaller } from './client';
import { MAX_EVENTS_PER_CALL } from './contract';
import type { SessionEvent, SessionEventType } from './contract';
import type { EventOutbox } from './event-outbox';

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

/** The id of a session's instance-lost DISCONNECT, the same whoever makes it (the redis outbox's adopt script spells it too). */
export function instanceLostEventId(instanceId: string, sessionId: string): string {
  return `${instanceId}:${sessionId}:instance-lost`;
}

export function appendSessionEvents(events: LifecycleEvents, wanted: ReadonlySet<SessionEventName>, sessions: BackendSessions, outbox: EventOutbox): void {
  const event = (type: SessionEventType, session: SessionInfo, extra: { destination?: string; reason?: string } = {}): SessionEvent => ({
    id: callId(),
    type,
    sessionId: session.sessionId,
    userId: session.userId,
    roles: [...session.roles],
    attributes: sessions.attributesOf(session.sessionId),
    ...extra,
    at: Date.now(),
    instanceId: sessions.instanceId,
  });
  if (wanted.has('connect')) events.on('connect', (info) => outbox.append(event('CONNECT', info)));
  if (wanted.has('subscribe')) events.on('subscribe', (e) => outbox.append(event('SUBSCRIBE', e.session, { destination: e.destination })));
  if (wanted.has('unsubscribe')) {
    events.on('unsubscribe', (e) => {
      if (e.isSessionEnding !== true && e.subscription !== undefined) outbox.append(event('UNSUBSCRIBE', e.session, { destination: e.destination }));
    });
  }
  if (wanted.has('disconnect')) {
    events.on('disconnect', (e) => {
      if (e.reason === 'instance-lost') return;
      const disconnect = event('DISCONNECT', e.session, { reason: leaveReasonFor(e.reason) });
      // Closed because this instance was taken for dead: the reaper may have sent the same
      // instance-lost DISCONNECT already; the same id lets the backend drop the second.
      if (e.reason === 'instance-fenced') disconnect.id = instanceLostEventId(sessions.instanceId, e.session.sessionId);
      outbox.append(disconnect);
    });
  }
}

export interface EventDeliverer {
  /** Calls that failed and will be tried again. */
  readonly retries: number;
  /** Deliver what is pending for up to `timeoutMs`, then stop. */
  stop(timeoutMs: number): Promise<void>;
}

/** Post the outbox's events to /events, oldest first, until stopped. */
export function deliverEvents(outbox: EventOutbox, caller: HookCaller, logger: Logger, onEmpty?: () => Promise<boolean>): EventDeliverer {
  let isStopping = false;
  let retries = 0;
  let lastWarnAt = 0;
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      timer.unref();
    });

  const loop = async (): Promise<void> => {
    let backoffMs = 0;
    while (true) {
      let batch;
      try {
        batch = await outbox.peek(MAX_EVENTS_PER_CALL);
      } catch (err) {
        if (isStopping) return;
        logger.debug({ err }, 'event outbox unreadable: trying again');
        await sleep(1000);
        continue;
      }
      if (batch.events.length === 0) {
        if (isStopping) return;
        // A dead instance's adopted outbox ends once empty.
        if (onEmpty !== undefined && (await onEmpty())) return;
        await outbox.whenAppended(1000);
        continue;
      }
      try {
        await caller.call('events', { events: batch.events });
        await outbox.remove(batch);
        backoffMs = 0;
      } catch (err) {
        retries++;
        if (isStopping) return;
        backoffMs = Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, backoffMs * 2));
        if (Date.now() - lastWarnAt > 10_000) {
          lastWarnAt = Date.now();
          logger.warn({ detail: (err as Error).message, pending: outbox.pendingCount(), retryInMs: backoffMs }, 'session events not delivered: retrying');
        }
        await sleep(backoffMs);
      }
    }
  };
  const running = loop();

  return {
    get retries() {
      return retries;
    },
    async stop(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (outbox.pendingCount() > 0 && Date.now() < deadline) await sleep(20);
      isStopping = true;
      await Promise.race([running, sleep(Math.max(0, deadline - Date.now()))]);
    },
  };
}
