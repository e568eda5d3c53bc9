// What the hooks keep per session: the CONNECT hook's attributes and permissions, the
// SUBSCRIBE hook's cached answers, the login refresh timer. Entries are made at CONNECT and
// dropped when the session closes (onClose), so memory follows the open sessions.

import { compilePattern, matches } from '../auth/acl';
import type { SessionView } from '../session/interceptor';
import type { HookCallBase, Permissions } from './contract';
import { callId } from './client';

export interface CompiledPermissions {
  subscribe: RegExp[] | undefined;
  send: RegExp[] | undefined;
}

export interface BackendSessionState {
  attributes: Record<string, unknown>;
  permissions: CompiledPermissions | undefined;
  /** Destinations the SUBSCRIBE hook allowed, for this session's roles (cleared when they change). */
  allowedSubscriptions: Set<string>;
  refreshTimer: NodeJS.Timeout | undefined;
}

/** At most this many cached SUBSCRIBE answers per session: past it the oldest is forgotten. */
const MAX_CACHED_SUBSCRIPTIONS = 1000;

export class BackendSessions {
  readonly instanceId: string;
  private readonly states = new Map<string, BackendSessionState>();

  constructor(instanceId: string) {
    this.instanceId = instanceId;
  }

  get(sessionId: string): BackendSessionState | undefined {
    return this.states.get(sessionId);
  }

  /** The state of `session`, made on first use. */
  of(session: SessionView): BackendSessionState {
    let state = this.states.get(session.id);
    if (state === undefined) {
      state = { attributes: {}, permissions: undefined, allowedSubscriptions: new Set(), refreshTimer: undefined };
      this.states.set(session.id, state);
    }
    return state;
  }

  attributesOf(sessionId: string): Record<string, unknown> {
    return this.states.get(sessionId)?.attributes ?? {};
  }

  rememberAllowed(session: SessionView, destination: string): void {
    const allowed = this.of(session).allowedSubscriptions;
    if (allowed.size >= MAX_CACHED_SUBSCRIPTIONS) allowed.delete(allowed.values().next().value!);
    allowed.add(destination);
  }

  forget(sessionId: string): void {
    const state = this.states.get(sessionId);
    if (state === undefined) return;
    clearTimeout(state.refreshTimer);
    this.states.delete(sessionId);
  }

  /** The fields every call carries. */
  callBase(session: SessionView): HookCallBase {
    return {
      id: callId(),
      instanceId: this.instanceId,
      sessionId: session.id,
      userId: session.principal?.userId ?? '',
      roles: [...(session.principal?.roles ?? [])],
      attributes: this.attributesOf(session.id),
      transport: session.transport,
      remoteAddress: session.peer.remoteAddress,
    };
  }
}

export function compilePermissions(permissions: Permissions | undefined): CompiledPermissions | undefined {
  if (permissions === undefined) return undefined;
  return {
    subscribe: permissions.subscribe?.map(compilePattern),
    send: permissions.send?.map(compilePattern),
  };
}

/** Whether `destination` matches one of `patterns` ({userId} places must be the session's user). */
export function isPermitted(patterns: readonly RegExp[], destination: string, userId: string): boolean {
  return patterns.some((pattern) => matches(pattern, destination, userId));
}
