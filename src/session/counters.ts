// What the sessions of one broker have done, as plain integers: the hot path only adds to
// them, and the metrics collector (src/http/metrics.ts) reads them when scraped. No metrics
// library is called per frame or per message.

const CLIENT_COMMANDS = ['CONNECT', 'STOMP', 'SEND', 'SUBSCRIBE', 'UNSUBSCRIBE', 'ACK', 'NACK', 'BEGIN', 'COMMIT', 'ABORT', 'DISCONNECT'];

export class SessionCounters {
  /** Frames received, by command (every client command present from the start). */
  readonly framesIn: Record<string, number> = Object.fromEntries(CLIENT_COMMANDS.map((c) => [c, 0]));
  /** Frames sent other than MESSAGE (the router counts deliveries), by command. */
  readonly framesOut: Record<string, number> = { CONNECTED: 0, RECEIPT: 0, ERROR: 0 };
  bytesIn = 0;
  /** Bytes written by connections whose session has closed (open ones: Connection.bytesWritten). */
  bytesOutOfClosed = 0;
  heartbeatTimeouts = 0;
  /** Sessions refused or closed with an ERROR frame, by its code. */
  readonly errorsSent: Record<string, number> = {};
  /** A message not written to a session over its write limit, or a session closed for it. */
  slowConsumerEvents = 0;
}
