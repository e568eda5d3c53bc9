// The application hooks, assembled: the pooled client, the per-session state, the CONNECT /
// SUBSCRIBE links, the app destinations, and the session events with their outbox and
// deliverer. server.ts loads this file only when BACKEND_URL is set (a dynamic import), so a
// broker without a backend never loads undici or any of this.

import type { Logger } from 'pino';
import type { Router } from '../broker/router';
import type { BackendConfig } from '../config';
import type { DestinationHandler } from '../session/destination-handler';
import { StompError } from '../session/errors';
import type { LifecycleEvents } from '../session/events';
import type { Interceptor } from '../session/interceptor';
import type { Session } from '../session/session';
import { accessHooks } from './access-hooks';
import { appDestinations } from './app-destinations';
import { BackendSessions } from './backend-sessions';
import { createBackendClient } from './client';
import type { BackendCallStats } from './client';
import type { EventOutbox, SharedOutboxes } from './event-outbox';
import { appendSessionEvents, deliverEvents } from './session-events';
import type { EventDeliverer } from './session-events';

export interface BackendDeps {
  instanceId: string;
  router: Router;
  events: LifecycleEvents;
  logger: Logger;
  topicPrefix: string;
  sessionById: (sessionId: string) => Session | undefined;
  /** Where the session events wait (memory, or Redis streams), and how a dead instance's are taken over. */
  outboxes: SharedOutboxes;
}

export interface BackendStats {
  calls: BackendCallStats;
  /** Non-fatal errors told to senders, by code. */
  errors: Record<string, number>;
  pendingEvents: number;
  droppedEvents: number;
  eventRetries: number;
}

export interface Backend {
  /** After authentication: the CONNECT hook. */
  readonly connectLink: Interceptor;
  /** After the access rules: permissions and the SUBSCRIBE hook. */
  readonly accessLink: Interceptor;
  /** App destinations; undefined when neither send nor subscribe is on. */
  readonly appHandler: DestinationHandler | undefined;
  stats(): BackendStats;
  /** A dead instance was reaped by this one: deliver its outbox (Redis only). */
  adoptInstance(deadId: string): Promise<void>;
  /** Deliver pending events for up to `timeoutMs` (a second at most when they are kept in Redis), then close the pool. */
  stop(timeoutMs: number): Promise<void>;
}

export function startBackend(config: BackendConfig, deps: BackendDeps): Backend {
  const caller = createBackendClient(config);
  const sessions = new BackendSessions(deps.instanceId);
  const { hooks } = config;
  const isAppDestination = (destination: string): boolean => config.appPrefixes.some((prefix) => destination.startsWith(prefix));
  const errors: Record<string, number> = {};
  const links = accessHooks({
    caller,
    sessions,
    destinations: deps.router.destinations,
    logger: deps.logger,
    isConnectHookOn: hooks.has('connect'),
    isRefreshHookOn: hooks.has('refresh'),
    subscribePatterns: hooks.has('subscribe') ? config.subscribePatterns : [],
    isAppDestination,
    forwardHeaders: config.forwardHeaders,
    sessionById: deps.sessionById,
  });
  let appHandler: DestinationHandler | undefined;
  if (hooks.has('send') || hooks.has('subscribe')) {
    const handler = appDestinations({ caller, sessions, router: deps.router, appPrefixes: config.appPrefixes, topicPrefix: deps.topicPrefix, logger: deps.logger, errorCounts: errors });
    // Calls through `handler`, not its functions taken off it: they stay its methods.
    appHandler = {
      name: handler.name,
      handles: (destination) => handler.handles(destination),
      send: hooks.has('send')
        ? (session, frame, destination) => handler.send(session, frame, destination)
        : (_session, _frame, destination) => {
            throw new StompError('UNKNOWN_DESTINATION', `SEND to ${JSON.stringify(destination)}: the send hook is off (BACKEND_HOOKS)`);
          },
      ...(hooks.has('subscribe') ? { subscribe: (session, frame, destination, subscriptionId) => handler.subscribe!(session, frame, destination, subscriptionId) } : {}),
    };
  }

  let outbox: EventOutbox | undefined;
  let deliverer: EventDeliverer | undefined;
  const adopted = new Set<EventDeliverer>();
  /** Dead instances whose outbox this one is delivering. */
  const adopting = new Set<string>();
  if (hooks.has('events')) {
    outbox = deps.outboxes.create(config.maxPendingEvents, config.events.has('disconnect'));
    appendSessionEvents(deps.events, config.events, sessions, outbox);
    deliverer = deliverEvents(outbox, caller, deps.logger);
  }
  async function adoptInstance(deadId: string): Promise<void> {
    // This instance's own old generation (it was fenced): its own deliverer keeps its outbox.
    if (outbox === undefined || adopting.has(deadId) || deadId === deps.instanceId) return;
    adopting.add(deadId);
    const taken = await deps.outboxes.adopt(deadId, config.maxPendingEvents).catch((err: unknown) => {
      adopting.delete(deadId);
      throw err;
    });
    if (taken === undefined) {
      adopting.delete(deadId);
      return;
    }
    deps.logger.info({ deadInstance: deadId }, 'delivering the session events of a dead instance');
    const adoptedDeliverer = deliverEvents(taken.outbox, caller, deps.logger, async () => {
      const isDone = await taken.finish();
      if (isDone) {
        adopting.delete(deadId);
        adopted.delete(adoptedDeliverer);
      }
      return isDone;
    });
    adopted.add(adoptedDeliverer);
  }
  if (outbox !== undefined) deps.outboxes.onInstanceGone = adoptInstance;

  const shownUrl = new URL(config.url);
  deps.logger.info({ url: `${shownUrl.origin}${shownUrl.pathname}`, hooks: [...hooks], appPrefixes: config.appPrefixes, signed: config.secret !== undefined }, 'backend hooks on');

  return {
    connectLink: links.connect,
    accessLink: links.access,
    appHandler,
    stats: () => ({
      calls: caller.stats,
      errors,
      pendingEvents: outbox?.pendingCount() ?? 0,
      droppedEvents: outbox?.droppedCount ?? 0,
      eventRetries: deliverer?.retries ?? 0,
    }),
    adoptInstance,
    async stop(timeoutMs) {
      // Events kept in Redis outlive this process (a survivor delivers them): a second is enough.
      const deliveryMs = deps.outboxes.isDurable ? Math.min(1000, timeoutMs) : timeoutMs;
      await Promise.all([deliverer?.stop(deliveryMs), ...[...adopted].map((d) => d.stop(0))]);
      await outbox?.stop();
      await caller.close();
    },
  };
}
