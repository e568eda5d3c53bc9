// SEND (STOMP 1.2 "SEND"): destination checked, chain consulted, message published or
// held by its transaction. The body is decoded once and encoded once per destination.

import { headerValue } from '../../codec';
import type { Frame } from '../../codec';
import { hasControlCharacters } from '../../broker/destinations';
import type { PublishRefusal } from '../../broker/router';
import { StompError, missingHeader } from '../errors';
import { afterChain, runChain } from '../interceptor';
import type { Session, Transaction } from '../session';
import { handlerFor } from '../destination-handler';
import { heldByteSize } from '../../broker/message';
import { hold, transactionOf } from './transaction';

export function requireDestination(session: Session, frame: Frame): string {
  const destination = headerValue(frame.headers, 'destination');
  if (destination === undefined) throw missingHeader(frame.command, 'destination');
  if (hasControlCharacters(destination)) {
    throw new StompError('INVALID_DESTINATION', `${JSON.stringify(destination.slice(0, 200))} contains control characters`);
  }
  if (session.deps.router.kindOf(destination) === undefined && handlerFor(session.deps.destinationHandlers, destination) === undefined) {
    throw new StompError('UNKNOWN_DESTINATION', `${JSON.stringify(destination)} is not a known destination kind`);
  }
  return destination;
}

function refuse(refusal: PublishRefusal): never {
  throw new StompError(refusal.code, refusal.message);
}

/** A publish that resolves later (queues in Redis) fails the frame if it was refused. */
export function refusedIfAny(published: void | Promise<PublishRefusal | undefined>): void | Promise<void> {
  if (published === undefined) return undefined;
  return published.then((refusal) => {
    if (refusal !== undefined) refuse(refusal);
  });
}

/** SENDs to Redis-kept queues a session may have under way without waiting (no receipt asked). */
const MAX_UNCONFIRMED_PUBLISHES = 64;
const unconfirmed = new WeakMap<Session, number>();

/**
 * A publish that completes later (a queue in Redis). A SEND asking for a receipt waits for it
 * (the RECEIPT means stored); one without is pipelined — Redis stores one connection's
 * commands in order, so a later receipt still covers it — up to MAX_UNCONFIRMED_PUBLISHES,
 * past which the session waits (backpressure). A refusal nobody waited for still fails the session.
 */
function stored(session: Session, frame: Frame, published: void | Promise<PublishRefusal | undefined>): void | Promise<void> {
  if (published === undefined) return undefined;
  const count = unconfirmed.get(session) ?? 0;
  if (headerValue(frame.headers, 'receipt') !== undefined || count >= MAX_UNCONFIRMED_PUBLISHES) return refusedIfAny(published);
  unconfirmed.set(session, count + 1);
  published.then(
    (refusal) => {
      unconfirmed.set(session, (unconfirmed.get(session) ?? 1) - 1);
      if (refusal !== undefined && session.isOpen) session.fail(new StompError(refusal.code, refusal.message), frame);
    },
    (error: unknown) => session.fail(error, frame),
  );
  return undefined;
}

/**
 * A publish done: a queue one may still be stored (stored()); a topic or user one may hold
 * the session (flow control, or this turn's fan-out work is done): its RECEIPT waits then.
 */
function published(session: Session, frame: Frame, result: void | Promise<PublishRefusal | undefined>): void | Promise<void> {
  if (result !== undefined) return stored(session, frame, result);
  return session.paceAfterPublish();
}

/** The last handled SEND of each transaction still under way at COMMIT. */
const handledInOrder = new WeakMap<Transaction, Promise<void>>();

export function handleSend(session: Session, frame: Frame): void | Promise<void> {
  const destination = requireDestination(session, frame);
  const handler = handlerFor(session.deps.destinationHandlers, destination);
  if (handler?.isControl === true) return handler.send(session, frame, destination);
  const transaction = transactionOf(session, frame);
  const { router, interceptors } = session.deps;
  return afterChain(session, runChain(interceptors, 'onSend', { session, frame, destination }), () => {
    if (handler !== undefined) {
      if (transaction === undefined) return handler.send(session, frame, destination);
      const held: Frame = { ...frame, body: Buffer.from(frame.body) };
      // COMMIT runs its steps at once: a transaction's handled SENDs still go one after another, in order.
      const step = (): void | Promise<void> => {
        const previous = handledInOrder.get(transaction);
        const next = previous === undefined ? handler.send(session, held, destination) : previous.then(() => handler.send(session, held, destination));
        if (next !== undefined)
          handledInOrder.set(
            transaction,
            next.catch(() => undefined),
          );
        return next;
      };
      hold(session, transaction, step, heldByteSize(frame.headers, frame.body.length));
      return undefined;
    }
    // A held body gets its own copy: it must not pin the socket's read buffer until COMMIT.
    const body = transaction === undefined ? frame.body : Buffer.from(frame.body);
    const message = router.createMessage(destination, frame.headers, body, session.userId);
    if (transaction === undefined) {
      const refusal = router.admit([message]);
      if (refusal === undefined) return published(session, frame, router.publish(message, session.flowAccount));
      // Queues in Redis: admitted, then stored, before the frame is done (and its RECEIPT sent).
      if (refusal instanceof Promise) return refusal.then((r) => (r === undefined ? stored(session, frame, router.publish(message)) : refuse(r)));
      refuse(refusal);
    }
    // Checked against the queue limits at COMMIT, with the rest of the transaction.
    hold(session, transaction, () => refusedIfAny(router.publish(message, session.flowAccount)), message.byteSize, message);
  });
}
