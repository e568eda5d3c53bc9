// A lean NATS client for load generation, over TCP or WebSocket (bench/wire.ts), speaking the
// text protocol itself (INFO, CONNECT, PING/PONG, SUB, PUB, MSG, +OK/-ERR): the counterpart
// of load-client.ts, so that nats-server is measured with the same kind of client as stompd.
//
// - The handshake: the server's INFO, then CONNECT (verbose off, no echo) and a PING; the
//   PONG says the server took the CONNECT. A SUB is confirmed the same way: the server
//   answers PINGs in order, so its PONG comes after the SUB is in place.
// - Bytes in are a small state machine: a control line up to LF, or the payload of the last
//   MSG (its byte count, then CRLF). Each MSG counts one delivery; a subscriber given a
//   LatencyRecorder also reads the send time at the end of each payload (payload.ts), even
//   when the payload is split across reads. The server's PINGs are answered.

import type { LatencyRecorder } from './latency';
import { TIMESTAMP_DIGITS, nowMicros, readTimestamp } from './payload';
import { StampedFrames } from './send-frames';
import type { Transport } from './load-client';
import { openTcpWire, openWithin, openWsWire, type WireEvents, type WireOpening, type WireSocket } from './wire';

export interface NatsEndpoint {
  host: string;
  tcpPort: number | undefined;
  wsPort: number | undefined;
}

/** Called once per read that held at least one MSG. */
export type NatsDeliveryListener = (client: NatsLoadClient, messageCount: number) => void;

const LF = 10;
const CR = 13;
const M = 77;
const P = 80;
const I = 73;
const O = 79;
const MINUS = 45;
const PING = Buffer.from('PING\r\n', 'latin1');
const PONG = Buffer.from('PONG\r\n', 'latin1');
const CONNECT = Buffer.from(
  `CONNECT ${JSON.stringify({ verbose: false, pedantic: false, tls_required: false, name: 'stompd-bench', lang: 'node-raw', version: '0', protocol: 1, echo: false, headers: false, no_responders: false })}\r\n`,
  'latin1',
);

/** PUB frames to `subject`, built once and stamped per write. */
export class PubBatcher extends StampedFrames {
  constructor(subject: string, bodyBytes: number, maxFrames: number) {
    super(Buffer.from(`PUB ${subject} ${bodyBytes}\r\n`, 'latin1'), bodyBytes, Buffer.from('\r\n', 'latin1'), maxFrames);
  }
}

export class NatsLoadClient {
  readonly transport: Transport;
  /** MSGs counted since the subscription was confirmed. */
  received = 0;
  isClosed = false;
  closeReason: string | undefined;

  private onDelivered: NatsDeliveryListener | undefined;
  private latency: LatencyRecorder | undefined;
  private isCounting = false;
  /** Payload bytes (and its CRLF) of the current MSG still to come; 0 between messages. */
  private payloadLeft = 0;
  /** The current MSG's payload size. */
  private payloadBytes = 0;
  /** A control line cut by the end of a read. */
  private partialLine: Buffer | undefined;
  /** The current payload's timestamp, gathered across reads (sampled subscribers only). */
  private readonly stamp = Buffer.alloc(TIMESTAMP_DIGITS);
  private hasInfo = false;
  private waiters: { kind: 'info' | 'pong'; resolve: () => void; reject: (error: Error) => void }[] = [];
  /** Set once the transport is open. */
  private wire: WireSocket | undefined;

  private constructor(transport: Transport) {
    this.transport = transport;
  }

  /** Open the transport, read INFO, send CONNECT and wait for the PONG to a PING. */
  static async open(transport: Transport, endpoint: NatsEndpoint, timeoutMs: number): Promise<NatsLoadClient> {
    const client = await (transport === 'tcp' ? NatsLoadClient.openTcp(endpoint, timeoutMs) : NatsLoadClient.openWs(endpoint, timeoutMs));
    try {
      await client.wait('info', timeoutMs);
      client.wire?.send(Buffer.concat([CONNECT, PING]));
      await client.wait('pong', timeoutMs);
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  /** SUB and wait until the server has it, then count every MSG (and, with `latency`, time it). */
  async subscribe(subject: string, sid: string, onDelivered: NatsDeliveryListener, latency: LatencyRecorder | undefined, timeoutMs: number): Promise<void> {
    this.onDelivered = onDelivered;
    this.latency = latency;
    this.wire?.send(Buffer.concat([Buffer.from(`SUB ${subject} ${sid}\r\n`, 'latin1'), PING]));
    await this.wait('pong', timeoutMs);
    this.isCounting = true;
  }

  write(bytes: Buffer): void {
    if (!this.isClosed) this.wire?.send(bytes);
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeReason ??= 'closed by the bench';
    this.wire?.destroy();
  }

  // --- Transports ---

  private static openTcp(endpoint: NatsEndpoint, timeoutMs: number): Promise<NatsLoadClient> {
    if (endpoint.tcpPort === undefined) return Promise.reject(new Error('no NATS TCP port to connect to'));
    const port = endpoint.tcpPort;
    return NatsLoadClient.openOver('tcp', timeoutMs, (events) => openTcpWire(endpoint.host, port, undefined, events));
  }

  private static openWs(endpoint: NatsEndpoint, timeoutMs: number): Promise<NatsLoadClient> {
    if (endpoint.wsPort === undefined) return Promise.reject(new Error('no NATS WebSocket port to connect to'));
    const target = { host: endpoint.host, port: endpoint.wsPort, path: '/', protocol: undefined, localAddress: undefined };
    return NatsLoadClient.openOver('ws', timeoutMs, (events) => openWsWire(target, true, events));
  }

  private static openOver(transport: Transport, timeoutMs: number, open: (events: WireEvents) => WireOpening): Promise<NatsLoadClient> {
    const client = new NatsLoadClient(transport);
    // receive() copies what it keeps (a cut control line, the timestamp digits): a view will do.
    const opening = open({ onBytes: (bytes, start, end) => client.receive(bytes.subarray(start, end)), onLost: (reason) => client.lost(reason) });
    return openWithin(opening, timeoutMs, `NATS ${transport} connection`).then((wire) => {
      client.wire = wire;
      return client;
    });
  }

  // --- Bytes in ---

  /** The hot path: one indexOf per control line, payloads skipped by their byte count. */
  private receive(chunk: Buffer): void {
    let messages = 0;
    let at = 0;
    const length = chunk.length;
    while (at < length) {
      if (this.payloadLeft > 0) {
        const take = Math.min(this.payloadLeft, length - at);
        if (this.latency !== undefined) this.gatherStamp(chunk, at, take);
        at += take;
        this.payloadLeft -= take;
        if (this.payloadLeft === 0) {
          messages++;
          if (this.latency !== undefined) {
            const sentAt = readTimestamp(this.stamp, TIMESTAMP_DIGITS);
            if (sentAt >= 0) this.latency.record(nowMicros() - sentAt);
          }
        }
        continue;
      }
      const lineEnd = chunk.indexOf(LF, at);
      if (lineEnd === -1) {
        const rest = chunk.subarray(at);
        this.partialLine = this.partialLine === undefined ? Buffer.from(rest) : Buffer.concat([this.partialLine, rest]);
        break;
      }
      if (this.partialLine === undefined) {
        this.onLine(chunk, at, lineEnd);
      } else {
        const line = Buffer.concat([this.partialLine, chunk.subarray(at, lineEnd)]);
        this.partialLine = undefined;
        this.onLine(line, 0, line.length);
      }
      at = lineEnd + 1;
    }
    if (messages > 0 && this.isCounting) {
      this.received += messages;
      this.onDelivered!(this, messages);
    }
  }

  /** Copy what of [at, at + take) in payload coordinates falls in the timestamp slot. */
  private gatherStamp(chunk: Buffer, at: number, take: number): void {
    // Payload bytes (CRLF excluded) consumed before this piece, and the slot's place in the payload.
    const consumed = this.payloadBytes + 2 - this.payloadLeft;
    const slotStart = this.payloadBytes - TIMESTAMP_DIGITS;
    const from = Math.max(consumed, slotStart);
    const to = Math.min(consumed + take, this.payloadBytes);
    if (from < to) chunk.copy(this.stamp, from - slotStart, at + (from - consumed), at + (to - consumed));
  }

  /** One control line, [start, end) of `bytes`, end at its LF. */
  private onLine(bytes: Buffer, start: number, end: number): void {
    const first = bytes[start];
    if (first === M) {
      // MSG <subject> <sid> [reply-to] <#bytes>: the count is the last field.
      let digitsEnd = end;
      if (bytes[digitsEnd - 1] === CR) digitsEnd--;
      let size = 0;
      let scale = 1;
      for (let i = digitsEnd - 1; i > start && bytes[i] !== 32; i--) {
        size += (bytes[i]! - 48) * scale;
        scale *= 10;
      }
      this.payloadBytes = size;
      this.payloadLeft = size + 2;
      return;
    }
    if (first === P) {
      const second = bytes[start + 1];
      if (second === I) this.wire?.send(PONG);
      else if (second === O) this.settle('pong');
      return;
    }
    if (first === I) {
      this.hasInfo = true;
      this.settle('info');
      return;
    }
    if (first === MINUS) {
      const message = bytes.toString('latin1', start, end).trim();
      this.closeReason ??= message;
      for (const waiter of this.waiters.splice(0)) waiter.reject(new Error(message));
    }
    // +OK (verbose is off, but harmless)
  }

  private settle(kind: 'info' | 'pong'): void {
    const index = this.waiters.findIndex((w) => w.kind === kind);
    if (index !== -1) this.waiters.splice(index, 1)[0]!.resolve();
  }

  private wait(kind: 'info' | 'pong', timeoutMs: number): Promise<void> {
    if (kind === 'info' && this.hasInfo) return Promise.resolve();
    if (this.isClosed) return Promise.reject(new Error(`connection closed (${this.closeReason ?? 'by us'}) while waiting for ${kind.toUpperCase()}`));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no ${kind.toUpperCase()} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        kind,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.waiters.push(waiter);
    });
  }

  private lost(reason: string): void {
    this.closeReason ??= reason;
    this.isClosed = true;
    for (const waiter of this.waiters.splice(0)) waiter.reject(new Error(reason));
  }
}
