// BEGIN / COMMIT / ABORT (STOMP 1.2 "BEGIN"): SENDs and ACKs naming a transaction are held
// and run in order on COMMIT; ABORT, DISCONNECT or a lost connection drops them.

import { headerValue } from '../../codec';
import type { Frame } from '../../codec';
import { StompError, missingHeader } from '../errors';
import { afterChain, runChain } from '../interceptor';
import type { Session, Transaction, TransactionStep } from '../session';

export const MAX_OPEN_TRANSACTIONS = 64;

/**
 * The transaction a SEND/ACK/NACK names, checked before anything else happens; undefined if
 * none. Held frames are bounded per transaction in count and per session in body bytes.
 */
export function transactionOf(session: Session, frame: Frame): Transaction | undefined {
  const name = headerValue(frame.headers, 'transaction');
  if (name === undefined) return undefined;
  const transaction = session.transactions.get(name);
  if (transaction === undefined) throw new StompError('UNKNOWN_TRANSACTION', `no transaction ${JSON.stringify(name)} was begun`);
  const { maxTransactionFrames, maxTransactionBytes } = session.deps.settings;
  if (transaction.steps.length >= maxTransactionFrames) {
    throw new StompError('TRANSACTION_TOO_LARGE', `transaction ${JSON.stringify(name)} holds ${transaction.steps.length} frames, the limit`);
  }
  let heldBytes = frame.body.length;
  for (const open of session.transactions.values()) heldBytes += open.heldBytes;
  if (heldBytes > maxTransactionBytes) {
    throw new StompError('TRANSACTION_TOO_LARGE', `open transactions would hold more than ${maxTransactionBytes} bytes`);
  }
  return transaction;
}

/** Run `step` now, or hold it (and `heldBytes` of body) in `transaction` until COMMIT. */
export function runOrHold(transaction: Transaction | undefined, step: TransactionStep, heldBytes = 0): void {
  if (transaction === undefined) {
    step();
    return;
  }
  transaction.steps.push(step);
  transaction.heldBytes += heldBytes;
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
  return afterChain(session, runChain(session.deps.interceptors, 'onTransaction', { session, frame }), () => {
    session.transactions.set(name, { steps: [], heldBytes: 0 });
  });
}

export function handleCommit(session: Session, frame: Frame): void | Promise<void> {
  const name = transactionName(frame);
  const transaction = session.transactions.get(name);
  if (transaction === undefined) throw new StompError('UNKNOWN_TRANSACTION', `no transaction ${JSON.stringify(name)} to commit`);
  return afterChain(session, runChain(session.deps.interceptors, 'onTransaction', { session, frame }), () => {
    session.transactions.delete(name);
    for (const step of transaction.steps) step();
  });
}

export function handleAbort(session: Session, frame: Frame): void | Promise<void> {
  const name = transactionName(frame);
  if (!session.transactions.has(name)) throw new StompError('UNKNOWN_TRANSACTION', `no transaction ${JSON.stringify(name)} to abort`);
  return afterChain(session, runChain(session.deps.interceptors, 'onTransaction', { session, frame }), () => {
    session.transactions.delete(name);
  });
}
