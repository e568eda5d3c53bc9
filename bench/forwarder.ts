// A trivial STOMP forwarder over TCP: the yardstick for bench/fanout, not a broker.
//
// It answers CONNECT and SUBSCRIBE receipts, and turns every SEND of one read into a MESSAGE,
// then writes the MESSAGEs of that read to every subscriber in one write each. No
// sessions, no acks, no limits, no heart-beats, one topic: what "just forwarding bytes"
// costs in Node on this machine. Run it, then point the bench at it:
//   node dist/bench/forwarder.js [port]        # prints {"port":N}
//   node dist/bench/fanout.js --transport tcp --target 127.0.0.1:N --broker-pid <pid> --pin-external

import net from 'node:net';
import { Decoder, encodeFrame, headerValue } from '../src/codec';
import type { Frame } from '../src/codec';

const subscribers = new Set<net.Socket>();
let messageSeq = 0;

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let outgoing: Buffer[] = [];
  const reply = (frame: Frame) => socket.write(encodeFrame(frame, '1.2'));
  const decoder = new Decoder((frame) => {
    const receipt = headerValue(frame.headers, 'receipt');
    if (frame.command === 'CONNECT' || frame.command === 'STOMP') {
      reply({
        command: 'CONNECTED',
        headers: [
          ['version', '1.2'],
          ['heart-beat', '0,0'],
        ],
        body: Buffer.alloc(0),
      });
      decoder.version = '1.2';
    } else if (frame.command === 'SUBSCRIBE') {
      subscribers.add(socket);
    } else if (frame.command === 'SEND') {
      const destination = headerValue(frame.headers, 'destination') ?? '';
      const head = `MESSAGE\nsubscription:0\nmessage-id:${++messageSeq}\ndestination:${destination}\ncontent-length:${frame.body.length}\n\n`;
      outgoing.push(Buffer.from(head, 'latin1'), frame.body, Buffer.from([0]));
    }
    if (receipt !== undefined) reply({ command: 'RECEIPT', headers: [['receipt-id', receipt]], body: Buffer.alloc(0) });
  });
  socket.on('data', (chunk: Buffer) => {
    decoder.push(chunk);
    if (outgoing.length === 0) return;
    const batch = Buffer.concat(outgoing);
    outgoing = [];
    for (const subscriber of subscribers) subscriber.write(batch);
  });
  socket.on('close', () => subscribers.delete(socket));
  socket.on('error', () => socket.destroy());
});

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as net.AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
