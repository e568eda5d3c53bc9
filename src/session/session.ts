// One Session per connection: the STOMP state machine between a transport and the router.
//
// States: awaiting-connect → connected → closing → closed. A frame not allowed in the
// current state is refused in one place (onFrame), every failure becomes an ERROR frame in
// one place (fail), and every way out — DISCONNECT, ERROR, heart-beat timeout, socket loss,
// kick, shutdown — goes through one cleanup (terminate): subscriptions removed (their
// unacknowledged queue messages redelivered), transactions dropped, one disconnect event.
// Nothing thrown while handling a frame escapes this session.

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { Decoder, FrameError, encodeFrame, headerValue } from '../codec';
import type { ByteBudget, DecoderLimits, Frame, Header, StompVersion } from '../codec';
import type { FlowAccount } from '../broker/flow';
import type { Router } from '../broker/router';
import type { Subscriber, Subscription } from '../broker/subscription';
import type { Message } from '../broker/message';
import type { Connection, ConnectionHandlers } from '../transport/connection';
import { COMMAND_HANDLERS } from './commands';
import { DroppedMessageLog } from './dropped-message-log';
import type { SessionCounters } from './counters';
import { StompError } from './errors';
import type { StompErrorCode } from './errors';
import type { DisconnectReason, LifecycleEvents, SessionInfo } from './events';
import { heartbeatIntervals, heartbeatOffer } from './heartbeat';
import type { HeartbeatSetting } from './heartbeat';
import type { Interceptor, Principal, SessionView } from './interceptor';
import type { DestinationHandler } from './destination-handler';

export type SessionState = 'awaiting-connect' | 'connected' | 'closing' | 'closed';

export type SlowConsumerPolicy = 'drop' | 'disconnect';

export interface SessionSettings {
  /** The server's own heart-beat offer (sx, sy). */
  heartbeat: HeartbeatSetting;
  /** A client asking for faster heart-beats than `heartbeat` gets them down to this. */
  heartbeatMinMs: number;
  /** A peer is dead after expectEveryMs × this without a byte. */
  heartbeatGrace: number;
  connectTimeoutMs: number;
  /** A frame begun must end within this: bytes trickled into one do not keep a session alive. */
  frameTimeoutMs: number;
  limits: DecoderLimits;
  serverName: string;
  slowConsumerPolicy: SlowConsumerPolicy;
  maxTransactionFrames: number;
  /** Bytes (headers and bodies) all open transactions of a session may hold. */
  maxTransactionBytes: number;
  maxSubscriptionsPerSession: number;
  /** What the session's subscriptions may cost together (subscriptionHeldBytes). */
  maxSubscriptionBytesPerSession: number;
  /** Unacknowledged messages per client / client-individual subscription (prefetch-count may lower it). */
  maxUnacked: number;
}

export interface SessionDeps {
  router: Router;
  interceptors: readonly Interceptor[];
  events: LifecycleEvents;
  logger: Logger;
  settings: SessionSettings;
  /** Shared by all sessions: frames in progress, frames held by transactions, subscriptions (MAX_PENDING_FRAME_BYTES). */
  pendingBudget: ByteBudget;
  /** Shared by every session of the broker; read by the metrics. */
  counters: SessionCounters;
  /** Destinations handled outside the router (app destinations, token refresh); none by default. */
  destinationHandlers?: readonly DestinationHandler[];
}

/** A step held by a transaction until COMMIT. */
/** A held SEND, ACK or NACK; a SEND stored in Redis returns a promise (rejects when refused). */
export type TransactionStep = () => void | Promise<void>;

export interface Transaction {
  steps: TransactionStep[];
  /** Bytes the held frames keep (headers and bodies), reserved from the pending budget. */
  heldBytes: number;
  /** The held SENDs' messages, checked against the queue limits together at COMMIT. */
  messages: Message[];
}

const EOL = Buffer.from('\n');

/** DISCONNECT answers before closing, SUBSCRIBE before stored queue messages flow. */
const HANDLERS_SENDING_OWN_RECEIPT = new Set(['CONNECT', 'STOMP', 'DISCONNECT', 'SUBSCRIBE']);

/**
 * An idle session should cost little (thousands of them sit on one instance): the session is
 * its connection's handlers itself, it holds one logger, one heart-beat timer, and no map for
 * transactions until it opens one.
 */
export class Session implements Subscriber, SessionView, ConnectionHandlers {
  readonly id = randomUUID();
  readonly connection: Connection;
  readonly deps: SessionDeps;
  state: SessionState = 'awaiting-connect';
  version: StompVersion = '1.2';
  principal: Principal | undefined;
  connectedAt = 0;
  readonly subscriptions = new Map<string, Subscription>();
  /** What `subscriptions` cost (subscriptionHeldBytes each), reserved from the pending budget. */
  subscriptionBytes = 0;

  private readonly decoder: Decoder;
  private lastReadAt = Date.now();
  private ackSeq = 0;
  /** Frames the decoder delivered: tells whether the frame in progress began in the last chunk. */
  private framesIn = 0;
  /** Date.now() when the frame in progress began; 0 between frames. */
  private partialFrameSince = 0;
  private frameTimer: NodeJS.Timeout | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  /** One timer for both heart-beat directions: it fires when the next beat or check is due. */
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** A beat is written once the line has been quiet this long (0: we send none). */
  private beatAfterQuietMs = 0;
  /** The peer is dead after this long without a byte (0: not checked). */
  private readDeadlineMs = 0;
  /** How often the read deadline is checked. */
  private readCheckEveryMs = 0;
  private expiryTimer: NodeJS.Timeout | undefined;
  private openTransactions: Map<string, Transaction> | undefined;
  private isWaiting = false;
  /** The frame whose RECEIPT a handler withheld (its work failed without failing the session). */
  private receiptWithheldFor: Frame | undefined;
  /** Made on the first drop: most sessions never drop, and an idle session should cost little. */
  private droppedLog: DroppedMessageLog | undefined;
  /** This session as a publisher under flow control: made on its first topic or user publish. */
  private publisherAccount: FlowAccount | undefined;
  /** Owned by flow control: behind and taking nothing (its publishers no longer wait for it). */
  isFlowStalled = false;

  constructor(connection: Connection, deps: SessionDeps) {
    this.connection = connection;
    this.deps = deps;
    this.decoder = new Decoder((frame) => this.onFrame(frame), { limits: deps.settings.limits, budget: deps.pendingBudget });
    connection.setHandlers(this);
    this.connectTimer = setTimeout(() => {
      this.fail(new StompError('CONNECT_TIMEOUT', `no CONNECT within ${deps.settings.connectTimeoutMs} ms`));
    }, deps.settings.connectTimeoutMs);
    this.connectTimer.unref();
    if (this.isDebugLogged) this.log.debug({ transport: connection.transport, remoteAddress: connection.peer.remoteAddress }, 'connection opened');
  }

  get transport(): Connection['transport'] {
    return this.connection.transport;
  }

  get peer(): Connection['peer'] {
    return this.connection.peer;
  }

  get sessionId(): string {
    return this.id;
  }

  get userId(): string {
    return this.principal?.userId ?? '';
  }

  /** Messages not written because this session read too slowly (policy `drop`). */
  get droppedMessages(): number {
    return this.droppedLog?.total ?? 0;
  }

  get isOpen(): boolean {
    return this.state === 'awaiting-connect' || this.state === 'connected';
  }

  /**
   * The session's logger: a child with its sessionId, and its userId once connected. Made
   * per use, not kept: a session logs a few lifecycle lines, and a kept child cost each idle
   * session ~0.5 KB (the two-level one before, ~1.2 KB).
   */
  get log(): Logger {
    const principal = this.principal;
    return this.deps.logger.child(principal === undefined ? { sessionId: this.id } : { sessionId: this.id, userId: principal.userId });
  }

  private get isDebugLogged(): boolean {
    return this.deps.logger.isLevelEnabled('debug');
  }

  /** The open transactions by name; the map is made when the first one opens. */
  get transactions(): Map<string, Transaction> {
    return (this.openTransactions ??= new Map());
  }

  // --- Subscriber (what the router sees) ---

  /** False once closing: messages handed back by this session's own subscriptions go elsewhere. */
  get isWritable(): boolean {
    return this.state === 'connected' && this.connection.isWritable;
  }

  /** A closed session holds nobody back (a stale entry in a publisher's window must not). */
  get isBehind(): boolean {
    return this.state === 'connected' && this.connection.isBehind;
  }

  get acceptedBytes(): number {
    return this.connection.acceptedBytes;
  }

  write(bytes: Buffer, isBinary?: boolean): void {
    this.connection.write(bytes, isBinary);
  }

  nextAckId(): string {
    return String(++this.ackSeq);
  }

  onSlowConsumer(subscription: Subscription, _message: Message): boolean {
    this.deps.counters.slowConsumerEvents++;
    if (this.deps.settings.slowConsumerPolicy === 'disconnect') {
      this.terminate('kicked', new StompError('SLOW_CONSUMER', `outbound buffer over its limit on ${subscription.destination}`));
      return false;
    }
    (this.droppedLog ??= new DroppedMessageLog(() => this.log)).record(subscription.destination);
    return true;
  }

  // --- Publishing ---

  /** The account flow control keeps of what this session publishes; undefined when flow control is off. */
  get flowAccount(): FlowAccount | undefined {
    return (this.publisherAccount ??= this.deps.router.flow?.account());
  }

  /**
   * After a topic or user publish: a promise while this session must wait before its next
   * frame (held by flow control, the relay to other instances is full, or this turn's
   * fan-out work is done), else undefined. Its
   * RECEIPT and its later frames wait with it (onFrame), and its socket is not read meanwhile.
   */
  paceAfterPublish(): Promise<void> | undefined {
    const held = this.publisherAccount?.settle();
    if (held !== undefined) return held;
    const { router } = this.deps;
    const relayFull = router.relayBackpressure();
    if (relayFull !== undefined) return relayFull;
    return router.turn.isSpent ? router.turn.nextTurn() : undefined;
  }

  // --- Frames out ---

  sendFrame(command: string, headers: Header[], body?: Buffer): void {
    const bytes = encodeFrame({ command, headers, body: body ?? Buffer.alloc(0) }, this.version);
    const counters = this.deps.counters;
    counters.framesOut[command] = (counters.framesOut[command] ?? 0) + 1;
    this.connection.write(bytes);
  }

  sendReceiptFor(frame: Frame): void {
    if (this.receiptWithheldFor === frame) {
      this.receiptWithheldFor = undefined;
      return;
    }
    const receipt = headerValue(frame.headers, 'receipt');
    if (receipt !== undefined) this.sendFrame('RECEIPT', [['receipt-id', receipt]]);
  }

  // --- ConnectionHandlers (what the transport calls) ---

  onData(chunk: Buffer): void {
    if (!this.isOpen) return; // refused or closing: whatever else comes is not buffered
    this.lastReadAt = Date.now();
    this.deps.counters.bytesIn += chunk.length;
    const framesBefore = this.framesIn;
    try {
      this.decoder.push(chunk);
    } catch (error) {
      this.fail(error);
      return;
    }
    this.watchPartialFrame(framesBefore, this.lastReadAt);
  }

  onClose(error: Error | undefined): void {
    if (!this.isOpen) return;
    if (error !== undefined && this.isDebugLogged) this.log.debug({ err: error }, 'socket error');
    this.terminate(error !== undefined ? 'socket-error' : 'socket-closed');
  }

  /** Not even RECEIPTs are read: the peer is gone in all but name. No ERROR: it could not be written. */
  onOverflow(): void {
    if (!this.isOpen) return;
    this.log.warn({ bufferedBytes: this.connection.bufferedBytes }, 'outbound buffer overflow: closing');
    this.deps.counters.slowConsumerEvents++;
    this.connection.destroy();
    this.terminate('kicked', new StompError('SLOW_CONSUMER', 'the client does not read what it is sent'));
  }

  onDrain(): void {
    for (const subscription of this.subscriptions.values()) this.deps.router.resumeSubscription(subscription);
  }

  /** Drained below flow control's mark: publishers held for this session may go on. */
  onCaughtUp(): void {
    this.deps.router.flow?.caughtUp(this);
  }

  onBusy(): void {
    this.fail(new FrameError('SERVER_BUSY', 'the server holds too many frames in progress; try again later'));
  }

  onStalled(): void {
    const { frameTimeoutMs } = this.deps.settings;
    this.fail(new StompError('FRAME_TIMEOUT', `a WebSocket message was begun and not completed within ${frameTimeoutMs} ms`));
  }

  // --- Frames in ---

  /**
   * Every byte counts as a heart-beat, so a peer trickling one frame a byte at a time would
   * never be found dead: a frame that began must end within frameTimeoutMs. One timer per
   * session, re-armed lazily: a busy reader only updates partialFrameSince.
   */
  private watchPartialFrame(framesBefore: number, nowMs: number): void {
    if (!this.isOpen) return;
    if (!this.decoder.isInFrame) {
      this.partialFrameSince = 0;
      return;
    }
    // A frame ended in this chunk (or none was under way): the partial one began in it.
    if (this.partialFrameSince === 0 || this.framesIn !== framesBefore) this.partialFrameSince = nowMs;
    if (this.frameTimer === undefined) this.armFrameTimer(this.deps.settings.frameTimeoutMs);
  }

  private armFrameTimer(delayMs: number): void {
    this.frameTimer = setTimeout(() => {
      this.frameTimer = undefined;
      if (this.partialFrameSince === 0 || !this.isOpen) return;
      const { frameTimeoutMs } = this.deps.settings;
      const leftMs = this.partialFrameSince + frameTimeoutMs - Date.now();
      if (leftMs > 0) {
        this.armFrameTimer(leftMs);
        return;
      }
      this.fail(new StompError('FRAME_TIMEOUT', `a frame was begun and not completed within ${frameTimeoutMs} ms`));
    }, delayMs);
    this.frameTimer.unref();
  }

  private onFrame(frame: Frame): void {
    this.framesIn++;
    const framesIn = this.deps.counters.framesIn;
    framesIn[frame.command] = (framesIn[frame.command] ?? 0) + 1;
    if (!this.isOpen) return;
    const isConnect = frame.command === 'CONNECT' || frame.command === 'STOMP';
    if (this.state === 'awaiting-connect' && !isConnect) {
      this.fail(new StompError('NOT_CONNECTED', `${frame.command} before CONNECT`), frame);
      return;
    }
    if (this.state === 'connected' && isConnect) {
      this.fail(new StompError('ALREADY_CONNECTED', 'a second CONNECT on a connected session'), frame);
      return;
    }
    if (this.isDebugLogged) this.log.debug({ command: frame.command }, 'frame in');
    let result: void | Promise<void>;
    try {
      result = COMMAND_HANDLERS[frame.command]!(this, frame);
    } catch (error) {
      this.fail(error, frame);
      return;
    }
    if (result === undefined) {
      this.afterFrame(frame);
      return;
    }
    // An asynchronous step (authentication): later frames wait, in order, undecoded.
    this.setWaiting(true);
    result.then(
      () => {
        if (!this.isOpen) return;
        this.afterFrame(frame);
        this.setWaiting(false);
      },
      (error: unknown) => this.fail(error, frame),
    );
  }

  private afterFrame(frame: Frame): void {
    if (!HANDLERS_SENDING_OWN_RECEIPT.has(frame.command)) this.sendReceiptFor(frame);
  }

  /** The frame's work did not happen (the backend failed), and the client was told otherwise: no RECEIPT. */
  withholdReceipt(frame: Frame): void {
    this.receiptWithheldFor = frame;
  }

  private setWaiting(isWaiting: boolean): void {
    if (this.isWaiting === isWaiting) return;
    this.isWaiting = isWaiting;
    if (isWaiting) {
      this.decoder.pause();
      this.connection.pauseReading();
      return;
    }
    this.connection.resumeReading();
    // Silence while this side did not read is not the peer's: its heart-beat deadline starts again.
    this.lastReadAt = Date.now();
    const framesBefore = this.framesIn;
    try {
      this.decoder.resume();
    } catch (error) {
      this.fail(error);
      return;
    }
    // While the session waited, reading was paused: the frame begins counting now.
    this.watchPartialFrame(framesBefore, Date.now());
  }

  // --- Connected ---

  /** Called by the CONNECT handler once the chain accepted the session. */
  establish(version: StompVersion, principal: Principal, clientHeartbeat: HeartbeatSetting): void {
    const { settings } = this.deps;
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.version = version;
    this.decoder.version = version;
    this.principal = principal;
    this.connectedAt = Date.now();
    this.state = 'connected';

    const offer = heartbeatOffer(clientHeartbeat, settings.heartbeat, settings.heartbeatMinMs);
    const { sendEveryMs, expectEveryMs } = heartbeatIntervals(clientHeartbeat, offer);
    const headers: Header[] = [
      ['version', version],
      ['heart-beat', `${offer.sendMs},${offer.receiveMs}`],
      ['session', this.id],
      ['server', settings.serverName],
      ['user-name', principal.userId],
    ];
    // The client can refresh its login in-band before then (TOKEN_REFRESH_DESTINATION).
    if (principal.expiresAtMs !== undefined) headers.push(['x-token-expires', String(Math.floor(principal.expiresAtMs))]);
    this.sendFrame('CONNECTED', headers);
    this.startHeartbeats(sendEveryMs, expectEveryMs);
    const { remoteAddress, proxyAddress } = this.peer;
    this.log.info({ transport: this.transport, remoteAddress, ...(proxyAddress !== undefined ? { proxyAddress } : {}), version, sendEveryMs, expectEveryMs }, 'session connected');
    this.deps.events.emit('connect', this.info());
    // After the connect event, so that an already expired token still yields connect, then
    // disconnect; not at all if a connect listener already closed the session.
    if (principal.expiresAtMs !== undefined && this.isOpen) this.closeAt(principal.expiresAtMs);
  }

  private startHeartbeats(sendEveryMs: number, expectEveryMs: number): void {
    // Beat once the line has been quiet for nine tenths of the interval: the peer hears
    // something at least once per interval (timer lateness included), and not more often
    // than it asked for. Anything written meanwhile counts as a beat and pushes it back.
    if (sendEveryMs > 0) this.beatAfterQuietMs = Math.max(1, Math.floor(sendEveryMs * 0.9));
    if (expectEveryMs > 0) {
      this.readDeadlineMs = expectEveryMs * this.deps.settings.heartbeatGrace;
      this.readCheckEveryMs = Math.max(10, Math.min(Math.floor(expectEveryMs / 2), 5000));
    }
    if (this.beatAfterQuietMs > 0 || this.readDeadlineMs > 0) this.armHeartbeat(Math.min(this.beatAfterQuietMs || Infinity, this.readCheckEveryMs || Infinity));
  }

  /** The session rides on the timer as its argument: no closure per session or per beat. */
  private armHeartbeat(delayMs: number): void {
    this.heartbeatTimer = setTimeout(Session.onHeartbeatTimer, delayMs, this);
    this.heartbeatTimer.unref();
  }

  private static onHeartbeatTimer(session: Session): void {
    session.heartbeatTimer = undefined;
    if (session.state !== 'connected') return;
    const nowMs = Date.now();
    // Not reading (a publisher held by flow control, or an asynchronous step): the peer's
    // beats wait unread in the socket, so silence is not the peer's; setWaiting(false) restarts the deadline.
    if (session.readDeadlineMs > 0 && !session.isWaiting) {
      const silentMs = nowMs - session.lastReadAt;
      if (silentMs > session.readDeadlineMs) {
        session.log.info({ silentMs, deadlineMs: session.readDeadlineMs }, 'heart-beat timeout');
        session.deps.counters.heartbeatTimeouts++;
        session.terminate('heartbeat-timeout');
        return;
      }
    }
    let nextMs = session.readCheckEveryMs || Infinity;
    const quietMs = session.beatAfterQuietMs;
    if (quietMs > 0) {
      const silentMs = nowMs - session.connection.lastWriteAt;
      if (silentMs >= quietMs) {
        session.connection.write(EOL);
        nextMs = Math.min(nextMs, quietMs);
      } else {
        nextMs = Math.min(nextMs, quietMs - silentMs);
      }
    }
    session.armHeartbeat(nextMs);
  }

  /**
   * The login was refreshed in-band (a new token, or the backend's /refresh): same user, new
   * roles and end. The caller re-checks what the old roles allowed.
   */
  renewLogin(principal: Principal): void {
    if (this.state !== 'connected' || principal.userId !== this.userId) return;
    this.principal = principal;
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (principal.expiresAtMs !== undefined) this.closeAt(principal.expiresAtMs);
  }

  /** Credentials expire at `atMs`: the session ends then (re-armed in steps, timers cap at ~24 days). */
  private closeAt(atMs: number): void {
    const leftMs = atMs - Date.now();
    if (leftMs <= 0) {
      this.terminate('token-expired', new StompError('TOKEN_EXPIRED', 'the token expired; reconnect with a fresh one'));
      return;
    }
    this.expiryTimer = setTimeout(() => this.closeAt(atMs), Math.min(leftMs, 2 ** 31 - 1));
    this.expiryTimer.unref();
  }

  info(): SessionInfo {
    const principal = this.principal;
    return {
      sessionId: this.id,
      userId: principal?.userId ?? '',
      roles: principal?.roles ?? [],
      isAnonymous: principal?.isAnonymous ?? true,
      transport: this.transport,
      remoteAddress: this.peer.remoteAddress,
      version: this.version,
      connectedAt: this.connectedAt,
    };
  }

  // --- Leaving ---

  /** Refuse with an ERROR frame (receipt-id when the frame asked for one), then close. */
  fail(error: unknown, frame?: Frame): void {
    if (!this.isOpen) return;
    let stompError: StompError | FrameError;
    if (error instanceof StompError || error instanceof FrameError) {
      stompError = error;
    } else {
      this.log.error({ err: error, command: frame?.command }, 'unexpected error in session');
      stompError = new StompError('INTERNAL_ERROR', 'internal error');
    }
    this.terminate('error-sent', stompError, frame);
  }

  /** Close on the broker's initiative: an admin kick, a replaced session, a logout. */
  kick(code: StompErrorCode, message: string, reason: DisconnectReason = 'kicked'): void {
    this.terminate(reason, new StompError(code, message));
  }

  /** The one way out. With an error, an ERROR frame is written and flushed first. */
  terminate(reason: DisconnectReason, error?: StompError | FrameError, frame?: Frame): void {
    if (!this.isOpen) return;
    const wasConnected = this.state === 'connected';
    this.state = 'closing';
    clearTimeout(this.connectTimer);
    clearTimeout(this.frameTimer);
    clearTimeout(this.heartbeatTimer);
    clearTimeout(this.expiryTimer);
    this.droppedLog?.flush();
    this.publisherAccount?.dispose();
    this.deps.router.flow?.forget(this);
    if (this.isWaiting) {
      // Reading was paused for an asynchronous step: resume it so the transport can see the
      // peer's side of the close (a WebSocket close handshake). The decoder stays paused.
      this.isWaiting = false;
      this.connection.resumeReading();
    }

    if (error !== undefined) {
      const headers: Header[] = [
        ['message', `${error.code}: ${error.message}`],
        ['content-type', 'text/plain'],
      ];
      const receipt = frame && headerValue(frame.headers, 'receipt');
      if (receipt !== undefined) headers.push(['receipt-id', receipt]);
      if (error instanceof StompError) headers.push(...error.headers);
      // Before CONNECTED the client knows no version yet (stompjs unescapes only after it):
      // such an ERROR goes out unescaped, line breaks folded, like CONNECTED itself.
      const encoding = wasConnected ? this.version : '1.0';
      const bytes = encodeFrame({ command: 'ERROR', headers, body: Buffer.from(`${error.code}: ${error.message}\n`) }, encoding);
      const counters = this.deps.counters;
      counters.framesOut.ERROR = (counters.framesOut.ERROR ?? 0) + 1;
      counters.errorsSent[error.code] = (counters.errorsSent[error.code] ?? 0) + 1;
      this.connection.write(bytes);
      // Why, for whom, from where; never credentials (no link puts a token in a message).
      // A connected session's logger already carries its userId.
      const userId = wasConnected ? undefined : error instanceof StompError ? error.userId : undefined;
      this.log.info({ code: error.code, reason, detail: error.message, remoteAddress: this.peer.remoteAddress, ...(userId !== undefined ? { userId } : {}) }, 'session refused');
    }

    const info = this.info();
    for (const subscription of this.subscriptions.values()) {
      this.deps.router.unsubscribe(subscription);
      if (wasConnected) {
        this.deps.events.emit('unsubscribe', {
          session: info,
          subscriptionId: subscription.id,
          destination: subscription.destination,
          ackMode: subscription.ackMode,
          subscription,
          isSessionEnding: true,
        });
      }
    }
    this.subscriptions.clear();
    this.deps.pendingBudget.release(this.subscriptionBytes);
    this.subscriptionBytes = 0;
    if (this.openTransactions !== undefined) {
      for (const transaction of this.openTransactions.values()) this.deps.pendingBudget.release(transaction.heldBytes);
      this.openTransactions.clear();
    }
    this.decoder.dispose(); // a frame in progress gives its bytes back

    if (reason === 'client' || error !== undefined) this.connection.end();
    else this.connection.destroy();
    this.state = 'closed';
    // end() flushed what was queued: the connection writes nothing more.
    this.deps.counters.bytesOutOfClosed += this.connection.bytesWritten;

    for (const link of this.deps.interceptors) {
      try {
        link.onClose?.(this, reason);
      } catch (err) {
        this.log.error({ err, interceptor: link.name }, 'interceptor onClose failed');
      }
    }
    if (wasConnected) {
      this.log.info({ reason }, 'session closed');
      this.deps.events.emit('disconnect', { session: info, reason, ...(error ? { errorCode: error.code } : {}) });
    }
  }
}
