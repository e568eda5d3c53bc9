// StompError: a refusal with a stable code. Session.fail() is the one place that turns it
// (or a codec FrameError) into an ERROR frame and a close.

import type { Header } from '../codec';

export type StompErrorCode =
  | 'NOT_CONNECTED'
  | 'ALREADY_CONNECTED'
  | 'UNSUPPORTED_VERSION'
  | 'BAD_HEARTBEAT'
  | 'MISSING_HEADER'
  | 'INVALID_HEADER'
  | 'UNKNOWN_DESTINATION'
  | 'INVALID_DESTINATION'
  | 'DUPLICATE_SUBSCRIPTION'
  | 'TOO_MANY_SUBSCRIPTIONS'
  | 'UNKNOWN_TRANSACTION'
  | 'DUPLICATE_TRANSACTION'
  | 'TRANSACTION_TOO_LARGE'
  // Memory limits (MAX_PENDING_FRAME_BYTES, MAX_TOTAL_QUEUE_BYTES, MAX_QUEUES), and SERVER_BUSY also
  // when too much work of one kind is under way (password checks): try again shortly.
  | 'SERVER_BUSY'
  | 'QUEUE_FULL'
  | 'QUEUE_LIMIT'
  | 'CONNECT_TIMEOUT'
  | 'FRAME_TIMEOUT'
  | 'TOO_MANY_CONNECTIONS'
  | 'SLOW_CONSUMER'
  | 'SERVER_SHUTDOWN'
  | 'INTERNAL_ERROR'
  // Interceptor refusals (authentication, policies):
  | 'UNAUTHENTICATED'
  | 'TOKEN_EXPIRED'
  | 'DUPLICATE_SESSION'
  | 'TOO_MANY_SESSIONS'
  | 'SESSION_REPLACED'
  | 'FORBIDDEN'
  | 'KICKED'
  | 'LOGGED_OUT'
  | 'TOKEN_REVOKED'
  /** A decision needs Redis and Redis is unreachable right now. */
  | 'UNAVAILABLE'
  /** The application's backend (BACKEND_URL) gave no usable answer. */
  | 'BACKEND_UNAVAILABLE'
  /** A fatal error the backend answered without a code of its own. */
  | 'BACKEND_ERROR';

export class StompError extends Error {
  readonly code: StompErrorCode;
  /** Extra headers for the ERROR frame (for example `version` on UNSUPPORTED_VERSION). */
  readonly headers: readonly Header[];

  /**
   * Who was refused, when known before any principal exists (the login a refused CONNECT
   * tried): for the refusal's log line only, never sent.
   */
  readonly userId: string | undefined;

  constructor(code: StompErrorCode, message: string, headers: readonly Header[] = [], context: { userId?: string } = {}) {
    super(message);
    this.name = 'StompError';
    this.code = code;
    this.headers = headers;
    this.userId = context.userId;
  }
}

export function missingHeader(command: string, name: string): StompError {
  return new StompError('MISSING_HEADER', `${command} needs a ${name} header`);
}
