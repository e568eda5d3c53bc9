// SEND (STOMP 1.2 "SEND"): destination checked, chain consulted, message published or
// held by its transaction. The body is decoded once and encoded once per destination.

import { headerValue } from '../../codec';
import type { Frame } from '../../codec';
import { hasControlCharacters } from '../../broker/destinations';
import { StompError, missingHeader } from '../errors';
import { afterChain, runChain } from '../interceptor';
import type { Session } from '../session';
import { hold, transactionOf } from './transaction';

export function requireDestination(session: Session, frame: Frame): string {
  const destination = headerValue(frame.headers, 'destination');
  if (destination === undefined) throw missingHeader(frame.command, 'destination');
  if (hasControlCharacters(destination)) {
    throw new StompError('INVALID_DESTINATION', `${JSON.stringify(destination.slice(0, 200))} contains control characters`);
  }
  if (session.deps.router.kindOf(destination) === undefined) {
    throw new StompError('UNKNOWN_DESTINATION', `${JSON.stringify(destination)} is not a known destination kind`);
  }
  return destination;
}

export function handleSend(session: Session, frame: Frame): void | Promise<void> {
  const destination = requireDestination(session, frame);
  const transaction = transactionOf(session, frame);
  const { router, interceptors } = session.deps;
  return afterChain(session, runChain(interceptors, 'onSend', { session, frame, destination }), () => {
    // A held body gets its own copy: it must not pin the socket's read buffer until COMMIT.
    const body = transaction === undefined ? frame.body : Buffer.from(frame.body);
    const message = router.createMessage(destination, frame.headers, body, session.userId);
    if (transaction === undefined) {
      const refusal = router.admit([message]);
      if (refusal !== undefined) throw new StompError(refusal.code, refusal.message);
      router.publish(message);
      return;
    }
    // Checked against the queue limits at COMMIT, with the rest of the transaction.
    hold(session, transaction, () => router.publish(message), message.byteSize, message);
  });
}
