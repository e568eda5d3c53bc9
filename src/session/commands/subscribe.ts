// SUBSCRIBE / UNSUBSCRIBE (STOMP 1.2 "SUBSCRIBE"). In 1.0 the id is optional: the
// destination stands in for it, as other brokers do.
//
// A subscription costs memory as long as it lives (its id and destination, up to a header
// line each, and its objects): counted (subscriptionHeldBytes) per session against
// MAX_SUBSCRIPTION_BYTES_PER_SESSION (TOO_MANY_SUBSCRIPTIONS), and reserved from the
// server-wide pending budget (SERVER_BUSY) until UNSUBSCRIBE or the session's end.

import { headerValue } from '../../codec';
import type { Frame } from '../../codec';
import { Subscription, subscriptionHeldBytes } from '../../broker/subscription';
import type { AckMode } from '../../broker/subscription';
import { StompError, missingHeader } from '../errors';
import { afterChain, runChain } from '../interceptor';
import type { Session } from '../session';
import { requireDestination } from './send';
import { handlerFor } from '../destination-handler';

const ACK_MODES: ReadonlySet<string> = new Set<AckMode>(['auto', 'client', 'client-individual']);

export function handleSubscribe(session: Session, frame: Frame): void | Promise<void> {
  const destination = requireDestination(session, frame);
  const id = headerValue(frame.headers, 'id') ?? (session.version === '1.0' ? destination : undefined);
  if (id === undefined) throw missingHeader('SUBSCRIBE', 'id');
  if (session.subscriptions.has(id)) throw new StompError('DUPLICATE_SUBSCRIPTION', `subscription id ${JSON.stringify(id)} is already in use`);
  const { maxSubscriptionsPerSession, maxSubscriptionBytesPerSession, maxUnacked } = session.deps.settings;
  if (session.subscriptions.size >= maxSubscriptionsPerSession) {
    throw new StompError('TOO_MANY_SUBSCRIPTIONS', `a session may hold ${maxSubscriptionsPerSession} subscriptions`);
  }
  const heldBytes = subscriptionHeldBytes(id, destination);
  if (session.subscriptionBytes + heldBytes > maxSubscriptionBytesPerSession) {
    throw new StompError('TOO_MANY_SUBSCRIPTIONS', `a session's subscriptions may hold ${maxSubscriptionBytesPerSession} bytes (ids and destinations)`);
  }
  const ackMode = headerValue(frame.headers, 'ack') ?? 'auto';
  if (!ACK_MODES.has(ackMode)) throw new StompError('INVALID_HEADER', `ack must be auto, client or client-individual, got ${JSON.stringify(ackMode)}`);
  // RabbitMQ's prefetch-count: how many unacknowledged messages this subscription may hold.
  const prefetchHeader = headerValue(frame.headers, 'prefetch-count');
  if (prefetchHeader !== undefined && !/^[1-9]\d{0,8}$/.test(prefetchHeader)) {
    throw new StompError('INVALID_HEADER', `prefetch-count must be a positive integer, got ${JSON.stringify(prefetchHeader)}`);
  }
  const unackedLimit = Math.min(maxUnacked, prefetchHeader === undefined ? maxUnacked : Number(prefetchHeader));

  const { router, interceptors, events } = session.deps;
  const handler = handlerFor(session.deps.destinationHandlers, destination);
  if (handler !== undefined) {
    // Answered once (@SubscribeMapping): no standing subscription is kept.
    const subscribe = handler.subscribe?.bind(handler);
    if (subscribe === undefined || handler.isControl === true) throw new StompError('UNKNOWN_DESTINATION', `${JSON.stringify(destination)} cannot be subscribed to`);
    return afterChain(session, runChain(interceptors, 'onSubscribe', { session, frame, destination }), () => {
      const answered = subscribe(session, frame, destination, id);
      if (answered === undefined) {
        session.sendReceiptFor(frame);
        return undefined;
      }
      return answered.then(() => {
        if (session.isOpen) session.sendReceiptFor(frame);
      });
    });
  }
  const bind = (): Promise<void> | undefined => {
    if (!session.deps.pendingBudget.tryReserve(heldBytes)) {
      throw new StompError('SERVER_BUSY', 'the server holds too many subscriptions and frames in progress; try again later');
    }
    session.subscriptionBytes += heldBytes;
    const subscription = new Subscription(session, id, destination, ackMode as AckMode, unackedLimit);
    session.subscriptions.set(id, subscription);
    if (router.kindOf(destination) === 'queue') {
      events.emit('subscribe', { session: session.info(), subscriptionId: id, destination, ackMode, subscription, headers: frame.headers });
      session.sendReceiptFor(frame); // before any stored queue message the subscription releases
      void router.subscribe(subscription); // a queue has no relay to wait for: nothing returned
      return undefined;
    }
    // A topic: the RECEIPT promises that a message published after it, on any instance,
    // arrives; with Redis that holds once this instance subscribed to the topic's channel.
    // Listeners hear of the subscription with that moment (a presence JOIN is decided after
    // it, so this instance hears its own JOIN, after the RECEIPT).
    const relayReady = router.subscribe(subscription);
    events.emit('subscribe', { session: session.info(), subscriptionId: id, destination, ackMode, subscription, headers: frame.headers, relayReady });
    if (relayReady === undefined) {
      session.sendReceiptFor(frame);
      return undefined;
    }
    return relayReady.then(() => {
      if (session.isOpen) session.sendReceiptFor(frame);
    });
  };
  return afterChain(session, runChain(interceptors, 'onSubscribe', { session, frame, destination }), () => {
    const refusal = router.admitSubscription(destination);
    if (refusal instanceof Promise) {
      // Queues in Redis: MAX_QUEUES is decided there.
      return refusal.then((r) => {
        if (r !== undefined) throw new StompError(r.code, r.message);
        if (session.isOpen) return bind();
        return undefined;
      });
    }
    if (refusal !== undefined) throw new StompError(refusal.code, refusal.message);
    return bind();
  });
}

export function handleUnsubscribe(session: Session, frame: Frame): void | Promise<void> {
  const id = headerValue(frame.headers, 'id') ?? (session.version === '1.0' ? headerValue(frame.headers, 'destination') : undefined);
  if (id === undefined) throw missingHeader('UNSUBSCRIBE', 'id');
  const { router, interceptors, events } = session.deps;
  return afterChain(session, runChain(interceptors, 'onUnsubscribe', { session, frame }), () => {
    const subscription = session.subscriptions.get(id);
    if (subscription === undefined) return; // unknown or already gone: nothing to undo
    session.subscriptions.delete(id);
    const heldBytes = subscriptionHeldBytes(subscription.id, subscription.destination);
    session.subscriptionBytes -= heldBytes;
    session.deps.pendingBudget.release(heldBytes);
    router.unsubscribe(subscription);
    events.emit('unsubscribe', { session: session.info(), subscriptionId: id, destination: subscription.destination, ackMode: subscription.ackMode, subscription });
  });
}
