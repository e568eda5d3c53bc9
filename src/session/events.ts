// Typed lifecycle events, the feed for the session registry, presence and metrics.
// Emitted synchronously, in order: connect, then (un)subscribes, then exactly one
// disconnect for every session that emitted connect.

import { EventEmitter } from 'node:events';
import type { Header, StompVersion } from '../codec';
import type { Subscription } from '../broker/subscription';
import type { TransportKind } from '../transport/connection';

export type DisconnectReason =
  /** The client sent DISCONNECT. */
  | 'client'
  /** Nothing heard within the negotiated heart-beat interval times the grace factor. */
  | 'heartbeat-timeout'
  /** The socket closed without DISCONNECT (closed tab, killed process). */
  | 'socket-closed'
  | 'socket-error'
  /** The session was refused with an ERROR frame. */
  | 'error-sent'
  /** The token's exp passed during the session (ERROR TOKEN_EXPIRED). */
  | 'token-expired'
  /** Closed by the broker on purpose (policy, admin). */
  | 'kicked'
  /** The user was logged out everywhere (ERROR LOGGED_OUT). */
  | 'logged-out'
  /** Reported by a surviving instance: the instance holding the session died. */
  | 'instance-lost'
  /** This instance was reaped by another (a stall or a cut from Redis): its sessions end with ERROR UNAVAILABLE. */
  | 'instance-fenced'
  | 'shutdown';

export interface SessionInfo {
  sessionId: string;
  userId: string;
  roles: readonly string[];
  isAnonymous: boolean;
  transport: TransportKind;
  remoteAddress: string;
  /**
   * The negotiated STOMP version; undefined for a session of another instance that this one
   * reports lost (`instance-lost`): the registry does not record versions.
   */
  version: StompVersion | undefined;
  connectedAt: number;
}

export interface SubscriptionEvent {
  session: SessionInfo;
  subscriptionId: string;
  destination: string;
  ackMode: string;
  /** The subscription itself (this instance's sessions only). */
  subscription?: Subscription;
  /** subscribe: the SUBSCRIBE frame's headers. */
  headers?: readonly Header[];
  /** subscribe, a topic with Redis: settles once this instance subscribed to the destination's channel (then the RECEIPT goes). */
  relayReady?: Promise<void>;
  /** unsubscribe: the session is ending; a disconnect event with its reason follows at once. */
  isSessionEnding?: boolean;
}

export interface DisconnectEvent {
  session: SessionInfo;
  reason: DisconnectReason;
  /** The ERROR code sent, when there was one. */
  errorCode?: string;
}

export interface LifecycleEventMap {
  connect: [SessionInfo];
  subscribe: [SubscriptionEvent];
  unsubscribe: [SubscriptionEvent];
  disconnect: [DisconnectEvent];
}

export class LifecycleEvents extends EventEmitter<LifecycleEventMap> {}
