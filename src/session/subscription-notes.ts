// Keeps each session's subscriptions noted in the registry, so the HTTP API (and the
// dashboard) can show them for a session on any instance. Off the hot path: SUBSCRIBE and
// UNSUBSCRIBE only mark the session, and the marked ones are written together a moment
// later (at most one write per session per FLUSH_DELAY_MS, however busy it is).

import type { SessionRegistry, SubscriptionNote } from '../registry/registry';
import type { LifecycleEvents } from './events';

/** How long a change waits to be written with the others that follow it. */
const FLUSH_DELAY_MS = 250;

export class SubscriptionNotes {
  private readonly registry: SessionRegistry;
  /** sessionId → its subscriptions by id, for this instance's connected sessions. */
  private readonly bySession = new Map<string, Map<string, SubscriptionNote>>();
  private readonly changed = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(events: LifecycleEvents, registry: SessionRegistry) {
    this.registry = registry;
    events.on('subscribe', ({ session, subscriptionId, destination, ackMode }) => {
      let notes = this.bySession.get(session.sessionId);
      if (notes === undefined) this.bySession.set(session.sessionId, (notes = new Map<string, SubscriptionNote>()));
      notes.set(subscriptionId, { id: subscriptionId, destination, ack: ackMode });
      this.mark(session.sessionId);
    });
    events.on('unsubscribe', ({ session, subscriptionId, isSessionEnding }) => {
      if (isSessionEnding === true) return; // the record goes with the session
      this.bySession.get(session.sessionId)?.delete(subscriptionId);
      this.mark(session.sessionId);
    });
    events.on('disconnect', ({ session }) => {
      this.bySession.delete(session.sessionId);
      this.changed.delete(session.sessionId);
    });
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private mark(sessionId: string): void {
    this.changed.add(sessionId);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), FLUSH_DELAY_MS);
      this.timer.unref();
    }
  }

  private flush(): void {
    this.timer = undefined;
    for (const sessionId of this.changed) {
      const notes = this.bySession.get(sessionId);
      if (notes === undefined) continue;
      // A failure (Redis away) leaves the old list until the session's next change.
      this.registry.noteSubscriptions(sessionId, [...notes.values()]).catch(() => undefined);
    }
    this.changed.clear();
  }
}
