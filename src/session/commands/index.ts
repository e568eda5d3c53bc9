// One handler per client command, as the spec's table of contents lists them. Each one:
// validate headers → run the interceptor chain → act. Receipts are sent by the session.

import type { Frame } from '../../codec';
import type { Session } from '../session';
import { handleAck, handleNack } from './ack';
import { handleConnect } from './connect';
import { handleDisconnect } from './disconnect';
import { handleSend } from './send';
import { handleSubscribe, handleUnsubscribe } from './subscribe';
import { handleAbort, handleBegin, handleCommit } from './transaction';

export type CommandHandler = (session: Session, frame: Frame) => void | Promise<void>;

export const COMMAND_HANDLERS: Readonly<Record<string, CommandHandler>> = {
  CONNECT: handleConnect,
  STOMP: handleConnect,
  SEND: handleSend,
  SUBSCRIBE: handleSubscribe,
  UNSUBSCRIBE: handleUnsubscribe,
  ACK: handleAck,
  NACK: handleNack,
  BEGIN: handleBegin,
  COMMIT: handleCommit,
  ABORT: handleAbort,
  DISCONNECT: handleDisconnect,
};
