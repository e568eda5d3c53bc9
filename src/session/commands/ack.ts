// ACK / NACK (STOMP 1.2 "ACK", "NACK"; 1.1 and 1.0 name the message instead).
//
// 1.2: `id` is the MESSAGE's `ack` header. 1.1: `message-id` + `subscription`. 1.0:
// `message-id` (+ optional `subscription`). In `client` mode an ACK or NACK covers every
// earlier message of the subscription too. An ack for a delivery we no longer hold (already
// acked or nacked, subscription gone) is ignored: it has nothing left to change.

import { headerValue } from '../../codec';
import type { Frame } from '../../codec';
import type { Subscription } from '../../broker/subscription';
import { missingHeader } from '../errors';
import { afterChain, runChain } from '../interceptor';
import type { Session } from '../session';
import { heldByteSize } from '../../broker/message';
import { hold, transactionOf } from './transaction';

interface Target {
  subscription: Subscription;
  ackId: string;
}

function findTarget(session: Session, frame: Frame): Target | undefined {
  const { headers, command } = frame;
  if (session.version === '1.2') {
    const ackId = headerValue(headers, 'id');
    if (ackId === undefined) throw missingHeader(command, 'id');
    for (const subscription of session.subscriptions.values()) {
      if (subscription.pending.has(ackId)) return { subscription, ackId };
    }
    return undefined;
  }
  const messageId = headerValue(headers, 'message-id');
  if (messageId === undefined) throw missingHeader(command, 'message-id');
  const subscriptionId = headerValue(headers, 'subscription');
  if (subscriptionId === undefined && session.version === '1.1') throw missingHeader(command, 'subscription');
  const candidates = subscriptionId === undefined ? [...session.subscriptions.values()] : [session.subscriptions.get(subscriptionId)];
  for (const subscription of candidates) {
    const ackId = subscription?.findAckIdByMessageId(messageId);
    if (subscription !== undefined && ackId !== undefined) return { subscription, ackId };
  }
  return undefined;
}

function handleAckOrNack(session: Session, frame: Frame, isNack: boolean): void | Promise<void> {
  const target = findTarget(session, frame);
  const transaction = transactionOf(session, frame);
  const { router, interceptors } = session.deps;
  return afterChain(session, runChain(interceptors, 'onAck', { session, frame }), () => {
    if (target === undefined) {
      session.log.debug({ command: frame.command }, 'ack for nothing pending: ignored');
      return;
    }
    const step = (): void => {
      if (isNack) router.nack(target.subscription, target.ackId);
      else router.ack(target.subscription, target.ackId);
    };
    if (transaction === undefined) step();
    else hold(session, transaction, step, heldByteSize(frame.headers, 0));
  });
}

export function handleAck(session: Session, frame: Frame): void | Promise<void> {
  return handleAckOrNack(session, frame, false);
}

export function handleNack(session: Session, frame: Frame): void | Promise<void> {
  return handleAckOrNack(session, frame, true);
}
