// The interceptor chain: one ordered list of links, each able to see and refuse the
// frames of a session by throwing a StompError (or returning a promise that rejects with
// one). Links run in order; a link that returns a promise makes the rest wait for it,
// while an all-synchronous chain costs no promise at all (SEND stays on the fast path).
//
// Authentication is a link like any other: an onConnect link sets ctx.principal.

import type { Frame } from '../codec';
import type { PeerInfo, TransportKind } from '../transport/connection';
import type { DisconnectReason } from './events';

export interface Principal {
  userId: string;
  /** Roles from the token (for example CUSTOMER, AGENT, ADMIN); empty when none. */
  roles: readonly string[];
  isAnonymous: boolean;
  /** Date.now() time at which the credentials stop being valid: the session is then closed (TOKEN_EXPIRED). */
  expiresAtMs?: number;
  /** Set for token logins: when the token was issued (its iat, 0 when it has none); a logout revokes earlier tokens. */
  tokenIssuedAtMs?: number;
}

/** What a link may know of the session it judges. */
export interface SessionView {
  readonly id: string;
  /** False once the session is closing: a link that finishes late must undo what it did. */
  readonly isOpen: boolean;
  readonly connectedAt: number;
  readonly transport: TransportKind;
  readonly peer: PeerInfo;
  readonly principal: Principal | undefined;
}

export interface FrameContext {
  readonly session: SessionView;
  readonly frame: Frame;
}

export interface ConnectContext extends FrameContext {
  /** Set by an authenticating link; the session refuses a CONNECT that ends without one. */
  principal: Principal | undefined;
}

export interface DestinationContext extends FrameContext {
  readonly destination: string;
}

type Hook<C> = (ctx: C) => void | Promise<void>;

export interface Interceptor {
  readonly name: string;
  onConnect?: Hook<ConnectContext>;
  onSend?: Hook<DestinationContext>;
  onSubscribe?: Hook<DestinationContext>;
  onUnsubscribe?: Hook<FrameContext>;
  /** ACK and NACK. */
  onAck?: Hook<FrameContext>;
  /** BEGIN, COMMIT and ABORT. */
  onTransaction?: Hook<FrameContext>;
  onDisconnect?: Hook<FrameContext>;
  /** The session is gone, for any reason; nothing can be refused any more. */
  onClose?(session: SessionView, reason: DisconnectReason): void;
}

export type HookName = Exclude<keyof Interceptor, 'name' | 'onClose'>;

/**
 * Run `hook` of every link in order. Synchronous unless some link returns a promise. A
 * session that closed while a link was busy goes no further down the chain.
 */
export function runChain<C extends { session: SessionView }>(links: readonly Interceptor[], hook: HookName, ctx: C, from = 0): void | Promise<void> {
  for (let i = from; i < links.length; i++) {
    if (!ctx.session.isOpen) return undefined;
    const fn = links[i]![hook] as Hook<C> | undefined;
    if (fn === undefined) continue;
    const result = fn.call(links[i], ctx);
    if (result !== undefined && typeof result.then === 'function') {
      return result.then(() => runChain(links, hook, ctx, i + 1));
    }
  }
  return undefined;
}

/**
 * Run `act` after a chain result: at once when the chain was synchronous; after an
 * asynchronous one only if `session` is still open (a closed session must not gain a
 * subscription, publish, or bind). An `act` that returns a promise (a SEND stored in Redis)
 * makes the frame wait for it too.
 */
export function afterChain(session: SessionView, result: void | Promise<void>, act: () => void | Promise<void>): void | Promise<void> {
  if (result === undefined) return act();
  return result.then(() => {
    if (session.isOpen) return act();
    return undefined;
  });
}
