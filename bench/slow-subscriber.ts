// A subscriber that reads slowly on purpose: a phone on a bad network among a room of fast
// readers. Over TCP it reads about `ratePerSec` MESSAGEs a second (in bytes: that many frames
// of the expected size, a tenth every 100 ms) and decodes every frame, so it can say what it
// received and what the broker told it it missed (x-dropped). unthrottle() lets it read at
// full speed (the end of a run).

import net from 'node:net';
import { Decoder, headerValue } from '../src/codec';
import type { Endpoint } from './load-client';

const TICK_MS = 100;
/** What a MESSAGE adds to its body (command and headers), about. */
const FRAME_OVERHEAD_BYTES = 160;

export class SlowSubscriber {
  /** MESSAGE frames received. */
  received = 0;
  /** x-dropped summed over them: what the broker said this subscriber missed. */
  toldDropped = 0;
  isClosed = false;
  closeReason: string | undefined;
  /** When it last took bytes from its socket (performance.now()). */
  lastReadAt = performance.now();
  private readonly socket: net.Socket;
  private readonly decoder: Decoder;
  private timer: NodeJS.Timeout | undefined;
  private isThrottled = true;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.decoder = new Decoder(
      (frame) => {
        if (frame.command === 'MESSAGE') {
          this.received++;
          this.toldDropped += Number(headerValue(frame.headers, 'x-dropped') ?? 0);
        } else if (frame.command === 'ERROR') {
          this.closeReason ??= `ERROR frame: ${headerValue(frame.headers, 'message') ?? ''}`;
        }
      },
      { acceptServerCommands: true, limits: { maxFrameBytes: 64 * 1024 * 1024, maxHeaders: 1000 } },
    );
    socket.on('close', () => {
      this.isClosed = true;
      this.closeReason ??= 'socket closed by peer';
      clearInterval(this.timer);
    });
    socket.on('error', (error) => (this.closeReason ??= `socket error: ${error.message}`));
  }

  /** Connect, subscribe (waiting for the RECEIPT), then read at `ratePerSec` messages of `bodyBytes`. */
  static async open(endpoint: Endpoint, destination: string, ratePerSec: number, bodyBytes: number, timeoutMs: number): Promise<SlowSubscriber> {
    if (endpoint.tcpPort === undefined) throw new Error('a slow subscriber needs a TCP port');
    const socket = net.connect({ host: endpoint.host, port: endpoint.tcpPort });
    const subscriber = new SlowSubscriber(socket);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`slow subscriber not subscribed within ${timeoutMs} ms`)), timeoutMs);
      let seen = '';
      const onData = (chunk: Buffer): void => {
        seen += chunk.toString('latin1');
        const end = seen.indexOf('RECEIPT');
        if (end === -1) return;
        clearTimeout(timer);
        socket.off('data', onData);
        socket.pause();
        const rest = seen.indexOf('\0', end);
        if (rest !== -1 && rest + 1 < seen.length) subscriber.decoder.push(Buffer.from(seen.slice(rest + 1), 'latin1'));
        resolve();
      };
      socket.on('data', onData);
      socket.once('error', reject);
      const login = endpoint.login === undefined ? '' : `login:${endpoint.login}\n`;
      const passcode = endpoint.passcode === undefined ? '' : `passcode:${endpoint.passcode}\n`;
      socket.write(`CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n${login}${passcode}\n\0SUBSCRIBE\nid:0\ndestination:${destination}\nack:auto\nreceipt:slow\n\n\0`);
    });
    const bytesPerTick = Math.max(1, Math.round((ratePerSec * (bodyBytes + FRAME_OVERHEAD_BYTES) * TICK_MS) / 1000));
    subscriber.timer = setInterval(() => subscriber.readSome(bytesPerTick), TICK_MS);
    return subscriber;
  }

  /** Read everything from now on, as fast as it comes. */
  unthrottle(): void {
    if (!this.isThrottled) return;
    this.isThrottled = false;
    clearInterval(this.timer);
    this.socket.on('data', (chunk: Buffer) => {
      this.lastReadAt = performance.now();
      this.decoder.push(chunk);
    });
    this.socket.resume();
  }

  close(): void {
    clearInterval(this.timer);
    this.socket.destroy();
  }

  private readSome(bytes: number): void {
    const available = this.socket.readableLength;
    if (available === 0) {
      this.socket.read(0); // ask the stream to fetch from the kernel for the next tick
      return;
    }
    const chunk = this.socket.read(Math.min(bytes, available)) as Buffer | null;
    if (chunk !== null) {
      this.lastReadAt = performance.now();
      this.decoder.push(chunk);
    }
  }
}
