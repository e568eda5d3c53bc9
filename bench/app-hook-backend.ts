// The trivial application backend of bench/app-hook, run as its own process: every /send is
// answered by publishing the SEND's body (its send time included) to one topic, as a Spring
// @MessageMapping with @SendTo would. node:http with keep-alive, nothing else: the bench
// measures stompd's side of the hook, not a framework.
//
// Usage: node dist/bench/app-hook-backend.js <topic>; prints {"port":N} once listening.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

const topic = process.argv[2] ?? '/topic/bench-app';

const server = http.createServer({ keepAliveTimeout: 60_000 }, (request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    if (!request.url?.endsWith('/send')) {
      response.writeHead(204).end();
      return;
    }
    const call = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { body?: string };
    const answer = JSON.stringify({ publish: [{ destination: topic, body: call.body ?? '' }] });
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) }).end(answer);
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
