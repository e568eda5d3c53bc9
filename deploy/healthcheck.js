#!/usr/bin/env node
// Container health probe (the Dockerfile's HEALTHCHECK): exit 0 when stompd accepts a TCP
// connection on its STOMP port (its WebSocket port when STOMP_PORT is off), 1 otherwise.
// Plain Node, no extra tools in the image. It only connects and closes: a CONNECT would open
// a session, and with authentication on be refused and logged on every probe.
'use strict';

const net = require('node:net');

const TIMEOUT_MS = 2000;

const env = process.env;
const stompPort = env.STOMP_PORT || '61613';
const port = Number(stompPort === 'off' ? env.WS_PORT || '15674' : stompPort);
// Listening on every address: loopback is one of them.
const host = !env.HOST || env.HOST === '0.0.0.0' || env.HOST === '::' ? '127.0.0.1' : env.HOST;

const socket = net.connect({ host, port });
socket.setTimeout(TIMEOUT_MS, () => {
  process.stderr.write(`stompd health: no answer from ${host}:${port} within ${TIMEOUT_MS} ms\n`);
  process.exit(1);
});
socket.once('connect', () => {
  socket.destroy();
  process.exit(0);
});
socket.once('error', (error) => {
  process.stderr.write(`stompd health: ${host}:${port}: ${error.message}\n`);
  process.exit(1);
});
