// The workload's clients: unchanged @stomp/stompjs over WebSocket and stompit over TCP, behind
// one small interface, each recording everything it does and sees into the history. Neither
// reconnects nor heart-beats by itself: every connection is one session of the history, and a
// fault reaches a client only the way the broker tells it (ERROR, or the socket closing).

import { Client as StompJsClient } from '@stomp/stompjs';
import type { IMessage, StompSubscription } from '@stomp/stompjs';
import stompit from 'stompit';
import WebSocket from 'ws';
import type { HistoryRecorder, PresenceObservation } from './history';

export interface Delivery {
  id: string | undefined;
  redelivered: boolean;
  presence: PresenceObservation | undefined;
  /** Client-individual subscriptions: ACK it (with a receipt, recorded). */
  ack(): void;
}

export interface SubscribeOptions {
  ack: 'auto' | 'client-individual';
  snapshot: boolean;
  /** Called when the SUBSCRIBE's RECEIPT comes (after it is recorded). */
  onSubscribed?: () => void;
}

export interface SessionClient {
  readonly id: string;
  readonly user: string;
  readonly instance: string;
  /** CONNECTED came and neither ERROR nor close since. */
  readonly isOpen: boolean;
  /** Resolves when CONNECTED, ERROR or close came, whichever first. */
  readonly answered: Promise<void>;
  subscribe(sub: string, destination: string, options: SubscribeOptions, onMessage?: (delivery: Delivery) => void): void;
  unsubscribe(sub: string): void;
  send(destination: string, id: string, withReceipt: boolean): void;
  /** DISCONNECT (or just close, when `abrupt`). */
  close(abrupt?: boolean): void;
  /** Resolves once every ACK sent has its RECEIPT, or after `timeoutMs`. */
  acksReceipted(timeoutMs: number): Promise<void>;
}

export interface ClientTarget {
  session: string;
  user: string;
  instance: string;
  port: number;
}

function presenceOf(kind: string | undefined, body: string): PresenceObservation | undefined {
  if (kind !== 'snapshot' && kind !== 'join' && kind !== 'leave') return undefined;
  const parsed = JSON.parse(body) as { members?: { userId: string }[]; userId?: string; sessionId?: string; reason?: string | null; seq?: number };
  return {
    kind,
    users: kind === 'snapshot' ? (parsed.members ?? []).map((m) => m.userId) : [parsed.userId ?? '?'],
    serverSession: parsed.sessionId,
    reason: parsed.reason ?? undefined,
    seq: parsed.seq,
  };
}

function codeOf(message: string): string {
  return message.split(':')[0]!.trim();
}

/** Shared bookkeeping: the state a session is in and what gets recorded when it changes. */
abstract class RecordingSession implements SessionClient {
  readonly id: string;
  readonly user: string;
  readonly instance: string;
  readonly answered: Promise<void>;
  protected readonly recorder: HistoryRecorder;
  protected isClosing = false;
  private state: 'connecting' | 'open' | 'ended' = 'connecting';
  private hasClosed = false;
  private markAnswered!: () => void;
  private receiptSeq = 0;
  private acksAwaitingReceipt = 0;

  protected constructor(target: ClientTarget, transport: 'tcp' | 'ws', recorder: HistoryRecorder) {
    this.id = target.session;
    this.user = target.user;
    this.instance = target.instance;
    this.recorder = recorder;
    this.answered = new Promise((resolve) => (this.markAnswered = resolve));
    recorder.record({ type: 'connect', session: this.id, user: this.user, instance: this.instance, transport });
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  protected onConnected(serverSession: string): void {
    if (this.state !== 'connecting') return;
    this.state = 'open';
    this.recorder.record({ type: 'connected', session: this.id, serverSession });
    this.markAnswered();
  }

  protected onError(message: string): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.recorder.record({ type: 'error', session: this.id, code: codeOf(message), message });
    this.markAnswered();
  }

  protected onClosed(): void {
    if (this.hasClosed) return;
    this.hasClosed = true;
    this.state = 'ended';
    this.recorder.record({ type: 'closed', session: this.id, byClient: this.isClosing });
    this.markAnswered();
  }

  protected recordMessage(sub: string, destination: string, headers: Record<string, string | undefined>, body: string, ack: () => void): Delivery {
    const presence = presenceOf(headers['x-presence'], body);
    const id = presence === undefined ? headers['x-op'] : undefined;
    const redelivered = headers.redelivered === 'true';
    this.recorder.record({ type: 'message', session: this.id, sub, destination, id, redelivered, ...(presence !== undefined ? { presence } : {}) });
    return {
      id,
      redelivered,
      presence,
      ack: () => {
        if (!this.isOpen || id === undefined) return;
        this.recorder.record({ type: 'ack', session: this.id, id });
        this.acksAwaitingReceipt++;
        ack();
      },
    };
  }

  protected onSubscribed(sub: string, options: SubscribeOptions): void {
    this.recorder.record({ type: 'subscribed', session: this.id, sub });
    options.onSubscribed?.();
  }

  protected onAckReceipt(id: string): void {
    this.acksAwaitingReceipt--;
    this.recorder.record({ type: 'receipt', session: this.id, of: 'ack', id });
  }

  async acksReceipted(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.acksAwaitingReceipt > 0 && this.isOpen && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  }

  protected nextReceipt(prefix: string): string {
    return `${prefix}-${this.id}-${++this.receiptSeq}`;
  }

  abstract subscribe(sub: string, destination: string, options: SubscribeOptions, onMessage?: (delivery: Delivery) => void): void;
  abstract unsubscribe(sub: string): void;
  abstract send(destination: string, id: string, withReceipt: boolean): void;
  abstract close(abrupt?: boolean): void;
}

/**
 * @stomp/stompjs throws "There is no underlying STOMP connection" when its socket is already gone
 * but its close has not been reported yet: the operation is lost with the connection, whose close
 * the history records a moment later.
 */
function unlessGone(operation: () => void): void {
  try {
    operation();
  } catch {
    // the connection is going: onWebSocketClose records it
  }
}

class StompJsSession extends RecordingSession {
  private readonly client: StompJsClient;
  private readonly subscriptions = new Map<string, StompSubscription>();

  constructor(target: ClientTarget, recorder: HistoryRecorder) {
    super(target, 'ws', recorder);
    let ws: WebSocket | undefined;
    this.client = new StompJsClient({
      webSocketFactory: () => {
        ws = new WebSocket(`ws://127.0.0.1:${target.port}/ws`, ['v12.stomp']);
        ws.on('error', () => undefined);
        return ws;
      },
      connectHeaders: { login: target.user },
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      connectionTimeout: 0,
      debug: () => undefined,
      onConnect: (frame) => this.onConnected(frame.headers.session ?? '?'),
      onStompError: (frame) => this.onError(frame.headers.message ?? '(no message header)'),
      onWebSocketClose: () => {
        this.onClosed();
        void this.client.deactivate();
      },
    });
    this.client.activate();
  }

  subscribe(sub: string, destination: string, options: SubscribeOptions, onMessage?: (delivery: Delivery) => void): void {
    if (!this.isOpen) return;
    const receipt = this.nextReceipt('sub');
    this.recorder.record({ type: 'subscribe', session: this.id, sub, destination, ack: options.ack, snapshot: options.snapshot });
    unlessGone(() => {
      this.client.watchForReceipt(receipt, () => this.onSubscribed(sub, options));
      const headers: Record<string, string> = { id: sub, ack: options.ack, receipt };
      if (options.snapshot) headers['x-presence-snapshot'] = 'true';
      const subscription = this.client.subscribe(
        destination,
        (message: IMessage) => {
          const delivery = this.recordMessage(sub, destination, message.headers, message.body, () => {
            const ackReceipt = this.nextReceipt('ack');
            const id = message.headers['x-op']!;
            unlessGone(() => {
              this.client.watchForReceipt(ackReceipt, () => this.onAckReceipt(id));
              message.ack({ receipt: ackReceipt });
            });
          });
          onMessage?.(delivery);
        },
        headers,
      );
      this.subscriptions.set(sub, subscription);
    });
  }

  unsubscribe(sub: string): void {
    const subscription = this.subscriptions.get(sub);
    if (subscription === undefined || !this.isOpen) return;
    this.recorder.record({ type: 'unsubscribe', session: this.id, sub });
    unlessGone(() => subscription.unsubscribe());
    this.subscriptions.delete(sub);
  }

  send(destination: string, id: string, withReceipt: boolean): void {
    if (!this.isOpen) return;
    this.recorder.record({ type: 'send', session: this.id, destination, id, receipt: withReceipt });
    unlessGone(() => this.publish(destination, id, withReceipt));
  }

  private publish(destination: string, id: string, withReceipt: boolean): void {
    const headers: Record<string, string> = { 'x-op': id };
    if (withReceipt) {
      const receipt = this.nextReceipt('send');
      headers.receipt = receipt;
      this.client.watchForReceipt(receipt, () => this.recorder.record({ type: 'receipt', session: this.id, of: 'send', id }));
    }
    this.client.publish({ destination, body: id, headers });
  }

  close(abrupt = false): void {
    this.isClosing = true;
    if (abrupt) this.client.forceDisconnect();
    void this.client.deactivate();
  }
}

/** stompit's send options with a receipt callback only: an onError would subscribe to the client's errors for good. */
function receiptOnly(onReceipt: () => void): stompit.Client.SendOptions {
  return { onReceipt } as stompit.Client.SendOptions;
}

/**
 * stompit 1.0 reads the body of an ERROR frame with `content-type: text/plain` (ours have one)
 * and then calls `this.destroy(error)` with `this` the frame stream, not the client: the frame
 * emits an 'error' nobody listens to (an uncaught exception in any stompit app) and the client
 * never reports the ERROR. Its handler for other ERROR frames is right; use that one always.
 */
function patchErrorHandler(client: StompitClient): void {
  const setHandlers = client.setCommandHandlers.bind(client);
  client.setCommandHandlers = (handlers: Record<string, unknown>) =>
    setHandlers({
      ...handlers,
      ERROR(this: StompitClient, frame: { headers: Record<string, string>; resume(): void }) {
        frame.resume();
        this.destroy(this.createApplicationError(frame.headers.message ?? 'server sent ERROR frame'));
      },
    });
}

type StompitClient = stompit.Client & {
  _receipts: Record<string, () => void>;
  getTransportSocket(): import('node:net').Socket;
  setCommandHandlers(handlers: Record<string, unknown>): void;
  createApplicationError(message: string): Error;
};

class StompitSession extends RecordingSession {
  private readonly client: StompitClient;
  private readonly subscriptions = new Map<string, ReturnType<stompit.Client['subscribe']>>();

  constructor(target: ClientTarget, recorder: HistoryRecorder) {
    super(target, 'tcp', recorder);
    this.client = stompit.connect({ host: '127.0.0.1', port: target.port, timeout: 0, connectHeaders: { host: '/', login: target.user, 'accept-version': '1.2', 'heart-beat': '0,0' } }, (error) => {
      if (error !== null && error !== undefined) this.onFailure(error);
      else this.onConnected(String((this.client as unknown as { headers: Record<string, string> }).headers.session ?? '?'));
    }) as StompitClient;
    patchErrorHandler(this.client);
    this.client.on('error', (error: Error) => this.onFailure(error));
    // stompit destroys its socket with the ERROR as the reason: the socket re-emits it.
    this.client.getTransportSocket().on('error', () => undefined);
    this.client.getTransportSocket().on('close', () => this.onClosed());
  }

  private onFailure(error: Error): void {
    const isApplicationError = (error as Error & { isApplicationError?: () => boolean }).isApplicationError?.() === true;
    if (isApplicationError) this.onError(error.message);
    else this.onClosed();
  }

  subscribe(sub: string, destination: string, options: SubscribeOptions, onMessage?: (delivery: Delivery) => void): void {
    if (!this.isOpen) return;
    const receipt = this.nextReceipt('sub');
    this.recorder.record({ type: 'subscribe', session: this.id, sub, destination, ack: options.ack, snapshot: options.snapshot });
    // stompit keeps no receipt for a SUBSCRIBE: register ours in its receipt table, or it
    // would take the RECEIPT for an unknown one and close the connection.
    this.client._receipts[receipt] = () => this.onSubscribed(sub, options);
    const headers: Record<string, string> = { destination, id: sub, ack: options.ack, receipt };
    if (options.snapshot) headers['x-presence-snapshot'] = 'true';
    const subscription = this.client.subscribe(headers, (error, message) => {
      if (error) return;
      message.readString('utf-8', (readError, body) => {
        if (readError) return;
        const messageHeaders = (message as unknown as { headers: Record<string, string> }).headers;
        const delivery = this.recordMessage(sub, destination, messageHeaders, body ?? '', () => {
          const id = messageHeaders['x-op']!;
          this.client.ack(
            message,
            {},
            receiptOnly(() => this.onAckReceipt(id)),
          );
        });
        onMessage?.(delivery);
      });
    });
    this.subscriptions.set(sub, subscription);
  }

  unsubscribe(sub: string): void {
    const subscription = this.subscriptions.get(sub);
    if (subscription === undefined || !this.isOpen) return;
    this.recorder.record({ type: 'unsubscribe', session: this.id, sub });
    subscription.unsubscribe();
    this.subscriptions.delete(sub);
  }

  send(destination: string, id: string, withReceipt: boolean): void {
    if (!this.isOpen) return;
    this.recorder.record({ type: 'send', session: this.id, destination, id, receipt: withReceipt });
    const options = withReceipt ? receiptOnly(() => this.recorder.record({ type: 'receipt', session: this.id, of: 'send', id })) : undefined;
    this.client.send({ destination, 'x-op': id }, options).end(id);
  }

  close(abrupt = false): void {
    this.isClosing = true;
    if (abrupt || !this.isOpen) this.client.destroy(new Error('closed by the workload'));
    else this.client.disconnect();
  }
}

export function openSession(transport: 'tcp' | 'ws', target: ClientTarget, recorder: HistoryRecorder): SessionClient {
  return transport === 'ws' ? new StompJsSession(target, recorder) : new StompitSession(target, recorder);
}
