// A trivial STOMP forwarder over TCP and WebSocket: the yardstick for bench/fanout, not a broker.
//
// It answers CONNECT and SUBSCRIBE receipts, and turns every SEND of one read into a MESSAGE,
// then writes the MESSAGEs of that read to every subscriber in one write each. No sessions,
// no acks, no limits, no heart-beats, one topic: what "just forwarding bytes" costs in Node on
// this machine. Its one piece of flow control is the naive kind: while any subscriber has
// more than --hold-bytes (1 MiB) queued, a publisher's RECEIPTs are held and its socket is not
// read (0: never). Run it, then point the bench at it:
//   node dist/bench/forwarder.js [port] [--ws-port N] [--hold-bytes N]   # prints {"port":N,"wsPort":M}
//   node dist/bench/fanout.js --transport tcp --target 127.0.0.1:N:M --broker-pid <pid> --pin-external

import net from 'node:net';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';
import type WebSocket from 'ws';
import { Decoder, encodeFrame, headerValue } from '../src/codec';
import type { Frame } from '../src/codec';

/** One subscriber, over TCP or WebSocket. */
interface Subscriber {
  write(bytes: Buffer): void;
  /** Bytes queued towards it, not yet handed to the kernel. */
  readonly queuedBytes: number;
}

/** One connection as a publisher: what a hold pauses, and where its RECEIPTs go. */
interface Publisher {
  pause(): void;
  resume(): void;
  send(bytes: Buffer): void;
}

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: { 'ws-port': { type: 'string' }, 'hold-bytes': { type: 'string' } },
});
const holdBytes = Number(values['hold-bytes'] ?? 1024 * 1024);

const subscribers = new Set<Subscriber>();
/** Subscribers past holdBytes; publishers wait while any is. */
const behind = new Set<Subscriber>();
/** Held publishers: their reader and the RECEIPTs they wait for. */
const held = new Map<Publisher, Buffer[]>();
let messageSeq = 0;

function checkDrained(subscriber: Subscriber): void {
  if (!behind.has(subscriber) || subscriber.queuedBytes > holdBytes) return;
  behind.delete(subscriber);
  if (behind.size > 0) return;
  for (const [publisher, receipts] of held) {
    for (const receipt of receipts) publisher.send(receipt);
    publisher.resume();
  }
  held.clear();
}

/** A connection: decodes frames, forwards SENDs per read, answers receipts (held while a subscriber is behind). */
function connection(self: Publisher, subscriber: Subscriber): (chunk: Buffer) => void {
  let outgoing: Buffer[] = [];
  const replyBytes = (frame: Frame): Buffer => encodeFrame(frame, '1.2');
  const send = (bytes: Buffer): void => self.send(bytes);
  const decoder = new Decoder((frame) => {
    const receipt = headerValue(frame.headers, 'receipt');
    if (frame.command === 'CONNECT' || frame.command === 'STOMP') {
      send(
        replyBytes({
          command: 'CONNECTED',
          headers: [
            ['version', '1.2'],
            ['heart-beat', '0,0'],
          ],
          body: Buffer.alloc(0),
        }),
      );
      decoder.version = '1.2';
    } else if (frame.command === 'SUBSCRIBE') {
      subscribers.add(subscriber);
    } else if (frame.command === 'SEND') {
      const destination = headerValue(frame.headers, 'destination') ?? '';
      const head = `MESSAGE\nsubscription:0\nmessage-id:${++messageSeq}\ndestination:${destination}\ncontent-length:${frame.body.length}\n\n`;
      outgoing.push(Buffer.from(head, 'latin1'), frame.body, Buffer.from([0]));
    }
    if (receipt === undefined) return;
    const bytes = replyBytes({ command: 'RECEIPT', headers: [['receipt-id', receipt]], body: Buffer.alloc(0) });
    const waiting = held.get(self);
    if (waiting !== undefined) waiting.push(bytes);
    else send(bytes);
  });
  return (chunk) => {
    decoder.push(chunk);
    if (outgoing.length === 0) return;
    const batch = Buffer.concat(outgoing);
    outgoing = [];
    for (const target of subscribers) {
      target.write(batch);
      if (holdBytes > 0 && target.queuedBytes > holdBytes) behind.add(target);
    }
    // The RECEIPTs of this read (sent above) are already out: hold the next ones, and stop reading.
    if (behind.size > 0 && !held.has(self)) {
      held.set(self, []);
      self.pause();
    }
  };
}

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  const subscriber: Subscriber = {
    write: (bytes) => {
      socket.write(bytes);
    },
    get queuedBytes() {
      return socket.writableLength;
    },
  };
  socket.on('drain', () => checkDrained(subscriber));
  const onData = connection({ send: (bytes) => socket.write(bytes), pause: () => socket.pause(), resume: () => socket.resume() }, subscriber);
  socket.on('data', onData);
  socket.on('close', () => {
    subscribers.delete(subscriber);
    checkDrained(subscriber);
  });
  socket.on('error', () => socket.destroy());
});

function listenWs(port: number): Promise<number> {
  const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: false, handleProtocols: (protocols) => (protocols.has('v12.stomp') ? 'v12.stomp' : false) });
  wss.on('connection', (ws: WebSocket) => {
    const socket = (ws as unknown as { _socket: net.Socket })._socket;
    socket.setNoDelay(true);
    const subscriber: Subscriber = {
      write: (bytes) => ws.send(bytes, { binary: false }, () => checkDrained(subscriber)),
      get queuedBytes() {
        return ws.bufferedAmount;
      },
    };
    const onData = connection({ send: (bytes) => ws.send(bytes, { binary: false }), pause: () => ws.pause(), resume: () => ws.resume() }, subscriber);
    ws.on('message', (data: Buffer) => onData(data));
    ws.on('close', () => {
      subscribers.delete(subscriber);
      checkDrained(subscriber);
    });
    ws.on('error', () => ws.terminate());
  });
  return new Promise((resolve) => wss.on('listening', () => resolve((wss.address() as net.AddressInfo).port)));
}

server.listen(Number(positionals[0] ?? 0), '127.0.0.1', () => {
  const port = (server.address() as net.AddressInfo).port;
  const wsPortOption = values['ws-port'];
  if (wsPortOption === undefined) {
    process.stdout.write(`${JSON.stringify({ port })}\n`);
    return;
  }
  void listenWs(Number(wsPortOption)).then((wsPort) => process.stdout.write(`${JSON.stringify({ port, wsPort })}\n`));
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
