// The CONNECT and SUBSCRIBE hooks as interceptor links, and the login refresh of sessions the
// CONNECT hook admitted with an `expiresAt`.
//
// Fail closed: a CONNECT the backend did not clearly admit (timeout, refusal, a broken
// answer) gets ERROR and a close, never a session; the same for a SUBSCRIBE the hook must
// decide. Permissions the CONNECT hook gave are checked on every SEND and SUBSCRIBE.

import type { Logger } from 'pino';
import type { Destinations } from '../broker/destinations';
import { StompError } from '../session/errors';
import type { ConnectContext, DestinationContext, Interceptor, Principal, SessionView } from '../session/interceptor';
import type { Session } from '../session/session';
import { compilePattern } from '../auth/acl';
import { BackendSessions, compilePermissions, isPermitted } from './backend-sessions';
import { BackendUnavailable } from './client';
import type { HookCaller } from './client';
import { ContractError, parseConnectAnswer, parseRefreshAnswer, parseSubscribeAnswer } from './contract';
import type { ConnectCall, RefreshCall, SubscribeCall } from './contract';
import { errorCode, userHeaders } from './app-destinations';

export interface AccessHooksDeps {
  caller: HookCaller;
  sessions: BackendSessions;
  destinations: Destinations;
  logger: Logger;
  isConnectHookOn: boolean;
  isRefreshHookOn: boolean;
  /** SUBSCRIBEs to these ask /subscribe; empty: the hook is off. */
  subscribePatterns: readonly string[];
  /** App destinations are answered by the app handler, not decided here. */
  isAppDestination(destination: string): boolean;
  forwardHeaders: readonly string[];
  /** The open session with this id, to renew or end its login. */
  sessionById(sessionId: string): Session | undefined;
}

/** A hook that gave no usable answer: the frame is refused (fail closed). */
function unavailable(error: unknown): never {
  if (error instanceof BackendUnavailable || error instanceof ContractError) throw new StompError('UNAVAILABLE', `the application backend could not decide: ${error.message}`);
  throw error;
}

/** The CONNECT frame's headers, all of them (the first of a repeated name). */
function connectHeadersOf(ctx: ConnectContext): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of ctx.frame.headers) if (!Object.prototype.hasOwnProperty.call(out, name)) out[name] = value;
  return out;
}

function forwarded(session: SessionView, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const headers = session.peer.headers;
  if (headers === undefined) return out;
  for (const name of names) {
    const value = headers[name];
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/** How long before expiresAt the refresh is asked for: a fifth of what is left, between 1 s and 60 s. */
function refreshLeadMs(leftMs: number): number {
  return Math.min(60_000, Math.max(1000, Math.floor(leftMs / 5)));
}

/**
 * Two links: `connect` runs right after authentication (the policy, registry and presence then
 * see the user it admitted); `access` runs after the access rules (cheap local refusals first).
 */
export function accessHooks(deps: AccessHooksDeps): { connect: Interceptor; access: Interceptor } {
  const { caller, sessions, destinations } = deps;
  const subscribePatterns = deps.subscribePatterns.map(compilePattern);
  const needsSubscribeHook = (destination: string): boolean => subscribePatterns.length > 0 && !deps.isAppDestination(destination) && subscribePatterns.some((p) => p.test(destination));

  const canonical = (destination: string, userId: string): string => {
    const user = destinations.parseUser(destination);
    return user !== undefined && user.userId === undefined ? destinations.userRouteKey(userId, user.inner) : destination;
  };

  const scheduleRefresh = (sessionId: string, expiresAtMs: number): void => {
    const state = sessions.get(sessionId);
    if (state === undefined) return;
    clearTimeout(state.refreshTimer);
    const leftMs = expiresAtMs - Date.now();
    state.refreshTimer = setTimeout(() => void refresh(sessionId, expiresAtMs), Math.max(0, Math.min(leftMs - refreshLeadMs(leftMs), 2 ** 31 - 1)));
    state.refreshTimer.unref();
  };

  const refresh = async (sessionId: string, expiresAtMs: number): Promise<void> => {
    const session = deps.sessionById(sessionId);
    if (session === undefined || session.state !== 'connected' || session.principal === undefined) return;
    const call: RefreshCall = { ...sessions.callBase(session), expiresAt: expiresAtMs };
    let answer;
    try {
      const raw = await caller.call('refresh', call);
      answer = raw === undefined ? {} : parseRefreshAnswer(raw);
    } catch (error) {
      // Asked again shortly; the login still ends at expiresAt if the backend never answers.
      const retryAtMs = Date.now() + 1000;
      deps.logger.warn({ sessionId, detail: (error as Error).message }, 'login refresh failed: trying again');
      const state = sessions.get(sessionId);
      if (state !== undefined && retryAtMs < expiresAtMs) {
        state.refreshTimer = setTimeout(() => void refresh(sessionId, expiresAtMs), 1000);
        state.refreshTimer.unref();
      }
      return;
    }
    const principal = session.principal;
    if (!session.isOpen || principal === undefined) return;
    if (answer.error !== undefined || answer.expiresAt === undefined || answer.expiresAt <= expiresAtMs) {
      session.kick('TOKEN_EXPIRED', answer.error?.message || 'the application did not extend the login', 'token-expired');
      return;
    }
    session.renewLogin({ ...principal, expiresAtMs: answer.expiresAt });
    scheduleRefresh(sessionId, answer.expiresAt);
  };

  const admit = async (ctx: ConnectContext): Promise<void> => {
    const base = sessions.callBase(ctx.session);
    const call: ConnectCall = {
      ...base,
      userId: ctx.principal?.userId ?? '',
      roles: [...(ctx.principal?.roles ?? [])],
      connectHeaders: connectHeadersOf(ctx),
      http: forwarded(ctx.session, deps.forwardHeaders),
    };
    let answer;
    try {
      const raw = await caller.call('connect', call);
      if (raw === undefined) throw new StompError('UNAUTHENTICATED', 'the application admitted nobody');
      answer = parseConnectAnswer(raw);
    } catch (error) {
      unavailable(error);
    }
    if (answer.error !== undefined) throw new StompError(errorCode(answer.error.code, 'UNAUTHENTICATED'), answer.error.message || 'refused by the application');
    const earlier = ctx.principal;
    const userId = answer.userId ?? earlier?.userId;
    if (userId === undefined || userId === '') throw new StompError('UNAUTHENTICATED', 'the application answered no userId');
    if (earlier !== undefined && !earlier.isAnonymous && earlier.tokenIssuedAtMs !== undefined && userId !== earlier.userId) {
      throw new StompError('UNAUTHENTICATED', 'the application named another user than the token');
    }
    const expiresAtMs = Math.min(answer.expiresAt ?? Infinity, earlier?.expiresAtMs ?? Infinity);
    const principal: Principal = {
      userId,
      roles: answer.roles ?? earlier?.roles ?? [],
      isAnonymous: false,
      ...(Number.isFinite(expiresAtMs) ? { expiresAtMs } : {}),
      ...(earlier?.tokenIssuedAtMs !== undefined ? { tokenIssuedAtMs: earlier.tokenIssuedAtMs } : {}),
    };
    ctx.principal = principal;
    const state = sessions.of(ctx.session);
    state.attributes = answer.attributes ?? {};
    state.permissions = compilePermissions(answer.permissions);
    if (deps.isRefreshHookOn && answer.expiresAt !== undefined) scheduleRefresh(ctx.session.id, answer.expiresAt);
  };

  const connect: Interceptor = {
    name: 'backend-connect',
    ...(deps.isConnectHookOn ? { onConnect: admit } : {}),
    onClose(session) {
      // After the disconnect event, which is emitted right after the links' onClose and carries the attributes.
      queueMicrotask(() => sessions.forget(session.id));
    },
  };

  const access: Interceptor = {
    name: 'backend-access',

    onSend(ctx: DestinationContext) {
      const patterns = sessions.get(ctx.session.id)?.permissions?.send;
      const userId = ctx.session.principal!.userId;
      if (patterns !== undefined && !isPermitted(patterns, canonical(ctx.destination, userId), userId)) {
        throw new StompError('FORBIDDEN', `send to ${ctx.destination} is not allowed`);
      }
    },

    onSubscribe(ctx: DestinationContext): void | Promise<void> {
      const principal = ctx.session.principal!;
      const patterns = sessions.get(ctx.session.id)?.permissions?.subscribe;
      if (patterns !== undefined && !isPermitted(patterns, canonical(ctx.destination, principal.userId), principal.userId)) {
        throw new StompError('FORBIDDEN', `subscribe to ${ctx.destination} is not allowed`);
      }
      if (!needsSubscribeHook(ctx.destination)) return undefined;
      // Cached per session, destination and roles: a token refresh that changes roles asks again.
      const cacheKey = `${principal.roles.join(',')}\n${ctx.destination}`;
      if (sessions.get(ctx.session.id)?.allowedSubscriptions.has(cacheKey) === true) return undefined;
      const call: SubscribeCall = {
        ...sessions.callBase(ctx.session),
        destination: ctx.destination,
        headers: userHeaders(ctx.frame.headers, ['id', 'ack', 'prefetch-count']),
        subscriptionId: ctx.frame.headers.find(([name]) => name === 'id')?.[1] ?? ctx.destination,
      };
      return caller
        .call('subscribe', call)
        .then((raw) => {
          const answer = raw === undefined ? {} : parseSubscribeAnswer(raw);
          if (answer.error !== undefined) throw new StompError(errorCode(answer.error.code, 'FORBIDDEN'), answer.error.message || `subscribe to ${ctx.destination} is not allowed`);
          if (answer.allow !== true) throw new StompError('FORBIDDEN', `subscribe to ${ctx.destination} is not allowed by the application`);
          sessions.rememberAllowed(ctx.session, cacheKey);
        })
        .catch(unavailable);
    },
  };
  return { connect, access };
}
