// Destinations that no router kind owns, handled by a part plugged in from outside the
// session core: the application's `/app/…` destinations (the backend answers them) and the
// in-band token refresh destination. The session core knows only this interface.

import type { Frame } from '../codec';
import type { Session } from './session';

export interface DestinationHandler {
  readonly name: string;
  /** Control destinations (token refresh) skip the interceptor chain and transactions: they carry no message. */
  readonly isControl?: boolean;
  handles(destination: string): boolean;
  /**
   * A SEND to it, after the chain. Resolving means done: the session sends the RECEIPT
   * (unless the handler called session.withholdReceipt(frame)); a rejection is the session's ERROR.
   */
  send(session: Session, frame: Frame, destination: string): void | Promise<void>;
  /** A SUBSCRIBE to it, answered once; absent: such a SUBSCRIBE is refused. */
  subscribe?(session: Session, frame: Frame, destination: string, subscriptionId: string): void | Promise<void>;
}

export function handlerFor(handlers: readonly DestinationHandler[] | undefined, destination: string): DestinationHandler | undefined {
  if (handlers === undefined) return undefined;
  for (const handler of handlers) if (handler.handles(destination)) return handler;
  return undefined;
}
