// DISCONNECT (STOMP 1.2 "Connection Lingering"): RECEIPT when asked, then close gracefully.

import type { Frame } from '../../codec';
import { afterChain, runChain } from '../interceptor';
import type { Session } from '../session';

export function handleDisconnect(session: Session, frame: Frame): void | Promise<void> {
  return afterChain(session, runChain(session.deps.interceptors, 'onDisconnect', { session, frame }), () => {
    session.sendReceiptFor(frame);
    session.terminate('client');
  });
}
