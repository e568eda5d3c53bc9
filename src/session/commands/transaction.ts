// BEGIN / COMMIT / ABORT (STOMP 1.2 "BEGIN"): SENDs and ACKs naming a transaction are held
// and run in order on COMMIT; ABORT, DISCONNECT or a lost connection drops them.

import { headerValue } from '../../codec';
import type { Frame } from '../../codec';
import { StompError, missingHeader } from '../errors';
import { afterChain, runChain } from '../interceptor';
import type { Session, TransactionStep } from '../session';

export const MAX_OPEN_TRANSACTIONS = 64;

/** The transaction a SEND/ACK/NACK names, checked before anything else happens; undefined if none. */
export function transactionOf(session: Session, frame: Frame): TransactionStep[] | undefined {
  const name = headerValue(frame.headers, 'transaction');
  if (name === undefined) return undefined;
  const steps = session.transactions.get(name);
  if (steps === undefined) throw new StompError('UNKNOWN_TRANSACTION', `no transaction ${JSON.stringify(name)} was begun`);
  if (steps.length >= session.deps.settings.maxTransactionFrames) {
    throw new StompError('TRANSACTION_TOO_LARGE', `transaction ${JSON.stringify(name)} holds ${steps.length} frames, the limit`);
  }
  return steps;
}

/** Run `step` now, or hold it in `transaction` until COMMIT. */
export function runOrHold(transaction: TransactionStep[] | undefined, step: TransactionStep): void {
  if (transaction === undefined) step();
  else transaction.push(step);
}

function transactionName(frame: Frame): string {
  const name = headerValue(frame.headers, 'transaction');
  if (name === undefined) throw missingHeader(frame.command, 'transaction');
  return name;
}

export function handleBegin(session: Session, frame: Frame): void | Promise<void> {
  const name = transactionName(frame);
  if (session.transactions.has(name)) throw new StompError('DUPLICATE_TRANSACTION', `transaction ${JSON.stringify(name)} is already open`);
  if (session.transactions.size >= MAX_OPEN_TRANSACTIONS) {
    throw new StompError('TRANSACTION_TOO_LARGE', `more than ${MAX_OPEN_TRANSACTIONS} open transactions`);
  }
  return afterChain(runChain(session.deps.interceptors, 'onTransaction', { session, frame }), () => {
    session.transactions.set(name, []);
  });
}

export function handleCommit(session: Session, frame: Frame): void | Promise<void> {
  const name = transactionName(frame);
  const steps = session.transactions.get(name);
  if (steps === undefined) throw new StompError('UNKNOWN_TRANSACTION', `no transaction ${JSON.stringify(name)} to commit`);
  return afterChain(runChain(session.deps.interceptors, 'onTransaction', { session, frame }), () => {
    session.transactions.delete(name);
    for (const step of steps) step();
  });
}

export function handleAbort(session: Session, frame: Frame): void | Promise<void> {
  const name = transactionName(frame);
  if (!session.transactions.has(name)) throw new StompError('UNKNOWN_TRANSACTION', `no transaction ${JSON.stringify(name)} to abort`);
  return afterChain(runChain(session.deps.interceptors, 'onTransaction', { session, frame }), () => {
    session.transactions.delete(name);
  });
}
