// The Relay over Redis pub/sub: one channel per topic or user-destination route key, and
// one control channel every instance hears (kicks, logouts).
//
// - An instance subscribes to a destination's channel only while it has local subscribers
//   there (Router tells it: setInterest), so no traffic flows for topics nobody listens to.
// - publish() never waits: the publishes of one event-loop turn are sent together, as one
//   pipeline (one socket write), in setImmediate — no round trip per message. The relay
//   builds that pipeline itself rather than leaving it to ioredis auto-pipelining, which
//   keeps one pipeline in flight per connection: a publish issued while the previous batch's
//   replies were still on their way waited for them, a round trip to Redis on top of its
//   own, and under CPU contention the waits piled up into a tail of hundreds of ms. A
//   publish while Redis is away fails at once and is counted as dropped: pub/sub between
//   instances is at-most-once.
// - Every envelope names its origin; an instance skips its own (it delivered locally).
// - Order: one instance publishes over one connection, and Redis delivers a channel's
//   messages in order, so one publisher's messages arrive in the order they were sent.
// - On a Redis Cluster the same is done with sharded pub/sub (SPUBLISH / SSUBSCRIBE): a
//   channel lives on the shard that owns its slot instead of being broadcast to all nodes.
// - Bounded: publishes sent and not yet answered by Redis are counted in bytes; past
//   MAX_UNANSWERED_BYTES the relay is congested and publishers wait (backpressure()) until
//   half of that is answered. The publishes share the connection with this instance's
//   liveness refresh, which must not wait behind an unbounded pipeline (it would be taken
//   for dead while flooding Redis).
// - Flow control across instances: an instance whose fan-out of others' messages is
//   congested says which destinations wait there, and for how many subscribers, on the flow
//   channel every instance hears (reportCongestion); each report lasts FLOW_REPORT_TTL_MS
//   unless renewed, so one lost, or from an instance that died, holds nobody for long.

import type { Cluster } from 'ioredis';
import type { Logger } from 'pino';
import type { Message } from '../broker/message';
import type { Relay } from '../broker/relay';
import { CONGESTION_RENEW_MS } from '../broker/remote-fanout';
import { decodeControl, encodeControl } from './control';
import type { ControlMessage } from './control';
import { decodeEnvelope, encodeEnvelope } from './envelope';
import { decodeFlowReport, encodeFlowReport } from './flow-report';
import type { Envelope } from './envelope';
import type { RedisKeys } from './keys';
import { isCluster } from './redis-client';
import type { RedisConnection } from './redis-client';

export interface RelayStats {
  published: number;
  /** Publishes Redis did not take (outage). */
  dropped: number;
  received: number;
  /** Own envelopes heard back and skipped. */
  skippedOwn: number;
  channels: number;
}

export interface RedisRelayOptions {
  /** The shared command connection (publishes ride on it). */
  publisher: RedisConnection;
  /** A connection of its own: a subscribed connection takes no other commands. */
  subscriber: RedisConnection;
  keys: RedisKeys;
  instanceId: string;
  /** An envelope from another instance. */
  deliver(envelope: Envelope): void;
  /** A control message from another instance. */
  onControl(control: ControlMessage): void;
  /** After a reconnect, once every wanted channel is subscribed again (what was published meanwhile is lost). */
  onResubscribed?(): void;
  /** Another instance's congestion report: destinations waiting there and their subscribers (empty: none), valid for ttlMs. */
  onFlowReport?(origin: string, waiting: ReadonlyMap<string, number>, ttlMs: number): void;
  logger: Logger;
}

/** Bytes of publishes sent to Redis and not answered yet, past which publishers wait. */
export const MAX_UNANSWERED_BYTES = 512 * 1024;

/** A congestion report is believed this long unless renewed (the sender renews it every CONGESTION_RENEW_MS). */
export const FLOW_REPORT_TTL_MS = 3 * CONGESTION_RENEW_MS;

export class RedisRelay implements Relay {
  private readonly options: RedisRelayOptions;
  private readonly isSharded: boolean;
  /** Channels this instance wants (re-subscribed whenever the subscriber reconnects). */
  private readonly wanted = new Set<string>();
  /** Signal channels (queue wake-ups) and what to do when one is heard. */
  private readonly listeners = new Map<string, () => void>();
  private readonly counts = { published: 0, dropped: 0, received: 0, skippedOwn: 0 };
  private readonly countDropped = (): void => {
    this.counts.dropped++;
  };
  /** Channel and envelope of each publish of this event-loop turn (single Redis only). */
  private batch: [string, Buffer][] = [];
  /** Bytes published and not answered yet (the current batch included). */
  private unansweredBytes = 0;
  /** While congested: resolves once half of MAX_UNANSWERED_BYTES is answered. */
  private uncongested: { promise: Promise<void>; resolve: () => void } | undefined;
  private isFlushScheduled = false;
  private readonly flush = (): void => this.flushBatch();

  constructor(options: RedisRelayOptions) {
    this.options = options;
    this.isSharded = isCluster(options.subscriber);
    const onMessage = (channel: Buffer, bytes: Buffer): void => this.onMessage(channel, bytes);
    options.subscriber.on(this.isSharded ? 'smessageBuffer' : 'messageBuffer', onMessage);
    options.subscriber.on('ready', () => this.resubscribe());
  }

  get stats(): RelayStats {
    return { ...this.counts, channels: this.wanted.size };
  }

  async start(): Promise<void> {
    const { controlChannel, flowChannel } = this.options.keys;
    this.wanted.add(controlChannel);
    this.wanted.add(flowChannel);
    await this.subscribe([controlChannel, flowChannel]);
  }

  /** Tell every instance which destinations' messages wait here (flow control); an empty map: none. */
  reportCongestion(waiting: ReadonlyMap<string, number>): void {
    this.send(this.options.keys.flowChannel, encodeFlowReport({ origin: this.options.instanceId, ttlMs: FLOW_REPORT_TTL_MS, waiting }));
  }

  publish(message: Message): void {
    const bytes = encodeEnvelope({
      origin: this.options.instanceId,
      messageId: message.id,
      destination: message.destination,
      routeKey: message.routeKey,
      headers: message.headers,
      body: message.body,
    });
    this.counts.published++;
    this.send(this.options.keys.destinationChannel(message.routeKey), bytes);
  }

  /** While too many publishes wait for Redis's answer: a promise that resolves once they drained; else undefined. */
  backpressure(): Promise<void> | undefined {
    if (this.unansweredBytes < MAX_UNANSWERED_BYTES) return this.uncongested?.promise;
    if (this.uncongested === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.uncongested = { promise, resolve };
    }
    return this.uncongested.promise;
  }

  private answered(byteCount: number): void {
    this.unansweredBytes -= byteCount;
    if (this.uncongested !== undefined && this.unansweredBytes <= MAX_UNANSWERED_BYTES / 2) {
      this.uncongested.resolve();
      this.uncongested = undefined;
    }
  }

  setInterest(routeKey: string, isInterested: boolean): Promise<void> | void {
    const channel = this.options.keys.destinationChannel(routeKey);
    if (isInterested) {
      this.wanted.add(channel);
      // Resolves when Redis confirmed the subscription; during an outage, at once (degraded:
      // pub/sub between instances is at most once, and the channel is subscribed on reconnect).
      return this.subscribeWanted([channel]).then(() => undefined);
    } else {
      this.wanted.delete(channel);
      this.unsubscribe(channel).catch(() => undefined); // gone with the connection anyway
    }
  }

  /** Call `onSignal` whenever `signal(channel)` is called on any instance (this one included). */
  listen(channel: string, onSignal: () => void): void {
    this.listeners.set(channel, onSignal);
    this.wanted.add(channel);
    void this.subscribeWanted([channel]);
  }

  unlisten(channel: string): void {
    if (!this.listeners.delete(channel)) return;
    this.wanted.delete(channel);
    this.unsubscribe(channel).catch(() => undefined);
  }

  /** An empty message on `channel`: at most once, like every publish (listeners poll as well). */
  signal(channel: string): void {
    this.send(channel, Buffer.alloc(0));
  }

  /** Tell every other instance; resolves with how many instances heard it (0 when Redis is away). */
  async publishControl(control: ControlMessage): Promise<number> {
    const bytes = Buffer.from(encodeControl(control, this.options.instanceId));
    const { publisher, keys } = this.options;
    try {
      const heard = isCluster(publisher) ? await publisher.spublish(keys.controlChannel, bytes) : await publisher.publish(keys.controlChannel, bytes);
      return Number(heard);
    } catch {
      this.counts.dropped++;
      return 0;
    }
  }

  private send(channel: string, bytes: Buffer): void {
    const { publisher } = this.options;
    this.unansweredBytes += bytes.length;
    if (isCluster(publisher)) {
      // Channels hash to different slots, so one pipeline cannot carry them: ioredis groups them by node.
      publisher
        .spublish(channel, bytes)
        .catch(this.countDropped)
        .finally(() => this.answered(bytes.length));
      return;
    }
    this.batch.push([channel, bytes]);
    if (!this.isFlushScheduled) {
      this.isFlushScheduled = true;
      setImmediate(this.flush);
    }
  }

  /** One pipeline for the turn's publishes, sent without waiting for the previous one's replies. */
  private flushBatch(): void {
    this.isFlushScheduled = false;
    const batch = this.batch;
    this.batch = [];
    const pipeline = (this.options.publisher as Exclude<RedisConnection, Cluster>).pipeline();
    let byteCount = 0;
    for (const [channel, bytes] of batch) {
      pipeline.publish(channel, bytes);
      byteCount += bytes.length;
    }
    pipeline
      .exec()
      .then(
        (results) => {
          for (const [error] of results ?? []) if (error !== null) this.counts.dropped++;
        },
        () => {
          this.counts.dropped += batch.length;
        },
      )
      .finally(() => this.answered(byteCount));
  }

  private onMessage(channelBytes: Buffer, bytes: Buffer): void {
    const channel = channelBytes.toString();
    if (channel === this.options.keys.controlChannel) {
      this.onControlBytes(bytes);
      return;
    }
    if (channel === this.options.keys.flowChannel) {
      this.onFlowBytes(bytes);
      return;
    }
    const listener = this.listeners.get(channel);
    if (listener !== undefined) {
      listener();
      return;
    }
    if (bytes.length === 0) return; // a signal on a channel no longer listened to (resubscribed after a reconnect)
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(bytes);
    } catch (err) {
      this.options.logger.warn({ err, channel }, 'undecodable envelope dropped');
      return;
    }
    if (envelope.origin === this.options.instanceId) {
      this.counts.skippedOwn++;
      return;
    }
    this.counts.received++;
    this.options.deliver(envelope);
  }

  private onFlowBytes(bytes: Buffer): void {
    const report = decodeFlowReport(bytes);
    if (report === undefined) {
      this.options.logger.warn('an invalid flow report was dropped');
      return;
    }
    if (report.origin === this.options.instanceId) return;
    this.options.onFlowReport?.(report.origin, report.waiting, report.ttlMs);
  }

  private onControlBytes(bytes: Buffer): void {
    const control = decodeControl(bytes);
    if (control === undefined) {
      this.options.logger.warn('an invalid control message was dropped');
      return;
    }
    if (control.origin === this.options.instanceId) return; // acted on locally already
    this.options.onControl(control);
  }

  private async subscribe(channels: string[]): Promise<void> {
    const { subscriber } = this.options;
    if (isCluster(subscriber)) {
      for (const channel of channels) await subscriber.ssubscribe(channel);
    } else {
      await subscriber.subscribe(...channels);
    }
  }

  /**
   * Subscribe to channels this instance wants; never rejects. A failure while the subscriber
   * is connected (a command timeout under load, a reply lost in a reconnect race) is retried
   * until it holds or the channel is no longer wanted: left alone it would lose the channel's
   * messages silently until the next reconnect. A failure during an outage is left to
   * resubscribe() on 'ready'.
   */
  private async subscribeWanted(channels: string[], onSubscribed?: () => void, attempt = 0): Promise<boolean> {
    try {
      await this.subscribe(channels);
      onSubscribed?.();
      return true;
    } catch (err) {
      const stillWanted = channels.filter((c) => this.wanted.has(c));
      this.options.logger.debug({ err, channels: stillWanted.length }, 'subscribe failed; retrying');
      if (stillWanted.length === 0 || this.options.subscriber.status !== 'ready') return false; // resubscribe() runs on 'ready'
      const delayMs = Math.min(100 * 2 ** attempt, 2000);
      setTimeout(() => {
        const wantedNow = stillWanted.filter((c) => this.wanted.has(c));
        if (wantedNow.length > 0) void this.subscribeWanted(wantedNow, onSubscribed, attempt + 1);
      }, delayMs).unref();
      return false;
    }
  }

  private async unsubscribe(channel: string): Promise<void> {
    const { subscriber } = this.options;
    if (isCluster(subscriber)) await subscriber.sunsubscribe(channel);
    else await subscriber.unsubscribe(channel);
  }

  /** After a reconnect: subscribe to every wanted channel again (idempotent where ioredis already did). */
  private resubscribe(): void {
    if (this.wanted.size === 0) return;
    void this.subscribeWanted([...this.wanted], () => this.options.onResubscribed?.());
  }
}
