// BEGIN / COMMIT / ABORT (STOMP 1.2 "BEGIN"): SENDs and ACKs naming a transaction are held
// and run in order on COMMIT; ABORT, DISCONNECT or a lost connection drops them.
//
// What a transaction holds is counted in bytes, headers included (heldByteSize): per session
// against MAX_TRANSACTION_BYTES (TRANSACTION_TOO_LARGE), and reserved from the server-wide
// pending budget (SERVER_BUSY) until COMMIT, ABORT or close give it back. A COMMIT is all or
// nothing: refused as a whole (QUEUE_FULL, QUEUE_LIMIT) when the queues cannot take its SENDs.

import { headerValue } from '../../codec';
import type { Frame } from '../../codec';
import { heldByteSize } from '../../broker/message';
import type { Message } from '../../broker/message';
import type { PublishRefusal } from '../../broker/router';
import { StompError, missingHeader } from '../errors';
import { afterChain, runChain } from '../interceptor';
import type { Session, Transaction, TransactionStep } from '../session';

export const MAX_OPEN_TRANSACTIONS = 64;

/**
 * The transaction a SEND/ACK/NACK names, checked before anything else happens; undefined if
 * none. Held frames are bounded per transaction in count and per session in bytes.
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
  let heldBytes = heldByteSize(frame.headers, frame.body.length);
  for (const open of session.transactions.values()) heldBytes += open.heldBytes;
  if (heldBytes > maxTransactionBytes) {
    throw new StompError('TRANSACTION_TOO_LARGE', `open transactions would hold more than ${maxTransactionBytes} bytes (headers and bodies)`);
  }
  return transaction;
}

/** Hold `step` (and `heldBytes`; `message` for a SEND) in `transaction` until COMMIT. */
export function hold(session: Session, transaction: Transaction, step: TransactionStep, heldBytes: number, message?: Message): void {
  if (!session.deps.pendingBudget.tryReserve(heldBytes)) {
    throw new StompError('SERVER_BUSY', 'the server holds too many frames for transactions; try again later');
  }
  transaction.steps.push(step);
  transaction.heldBytes += heldBytes;
  if (message !== undefined) transaction.messages.push(message);
}

/** The transaction is over (committed, aborted, refused): what it held is given back. */
function end(session: Session, name: string, transaction: Transaction): void {
  session.transactions.delete(name);
  session.deps.pendingBudget.release(transaction.heldBytes);
  transaction.heldBytes = 0;
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
    session.transactions.set(name, { steps: [], heldBytes: 0, messages: [] });
  });
}

export function handleCommit(session: Session, frame: Frame): void | Promise<void> {
  const name = transactionName(frame);
  const transaction = session.transactions.get(name);
  if (transaction === undefined) throw new StompError('UNKNOWN_TRANSACTION', `no transaction ${JSON.stringify(name)} to commit`);
  return afterChain(session, runChain(session.deps.interceptors, 'onTransaction', { session, frame }), () => {
    end(session, name, transaction);
    const refusal = session.deps.router.admit(transaction.messages);
    const notCommitted = (r: PublishRefusal): never => {
      throw new StompError(r.code, `${r.message} (transaction ${JSON.stringify(name)} not committed)`);
    };
    if (refusal instanceof Promise) return refusal.then((r) => (r === undefined ? runSteps(session, transaction) : notCommitted(r)));
    if (refusal !== undefined) notCommitted(refusal);
    return runSteps(session, transaction);
  });
}

/**
 * Run a committed transaction's steps in order. Queue SENDs stored in Redis are issued in
 * order on one connection and waited for together: the RECEIPT follows once all are stored,
 * and once flow control lets the session go on (its SENDs count as one publisher's).
 */
function runSteps(session: Session, transaction: Transaction): void | Promise<void> {
  let waits: Promise<void>[] | undefined;
  for (const step of transaction.steps) {
    const result = step();
    if (result !== undefined) (waits ??= []).push(result);
  }
  if (transaction.messages.length > 0) {
    const paced = session.paceAfterPublish();
    if (paced !== undefined) (waits ??= []).push(paced);
  }
  if (waits === undefined) return undefined;
  return Promise.all(waits).then(() => undefined);
}

export function handleAbort(session: Session, frame: Frame): void | Promise<void> {
  const name = transactionName(frame);
  const transaction = session.transactions.get(name);
  if (transaction === undefined) throw new StompError('UNKNOWN_TRANSACTION', `no transaction ${JSON.stringify(name)} to abort`);
  return afterChain(session, runChain(session.deps.interceptors, 'onTransaction', { session, frame }), () => {
    end(session, name, transaction);
  });
}
