// stompd's own TLS, with certificates the test makes (openssl): STOMP over TLS on
// STOMP_TLS_PORT with stompit, wss:// on WSS_PORT with @stomp/stompjs; expired and untrusted
// certificates refused by the clients; client certificates (TLS_CA_FILE); plain listeners
// off; a TLS handshake on a plain port closed at once with a log line; a missing or bad file
// is one line at start; SIGHUP swaps the certificate without dropping a session.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IMessage } from '@stomp/stompjs';
import stompit from 'stompit';
import WebSocket from 'ws';
import { BrokerProcess } from '../helpers/broker-process';
import { makeCertificates } from '../helpers/certificates';
import type { Certificates } from '../helpers/certificates';
import { capturedLog } from '../helpers/captured-log';
import { harness } from '../helpers/harness';
import { RawClient } from '../helpers/raw-client';
import { until } from '../helpers/until';

const MAIN = path.resolve(__dirname, '../../src/main.js');
const TIMEOUT_MS = 10_000;
let certs: Certificates;
const stompjsClients: Client[] = [];
const stompitClients: stompit.Client[] = [];
const processes: BrokerProcess[] = [];

before(() => {
  certs = makeCertificates();
});
after(async () => {
  await Promise.all(stompjsClients.map((c) => c.deactivate()));
  for (const c of stompitClients) c.destroy(new Error('test over'));
  await Promise.all(processes.map((p) => p.stop()));
  certs?.remove();
});
// After the hook above: clients leave before their brokers stop (stompit throws the
// SERVER_SHUTDOWN ERROR of a TLS connection as an uncaught exception).
const h = harness();

function tlsEnv(cert = certs.serverCert, key = certs.serverKey): Record<string, string> {
  return { TLS_CERT_FILE: cert, TLS_KEY_FILE: key, STOMP_TLS_PORT: '0', WSS_PORT: '0' };
}

/** stompit over TLS, trusting `ca`; resolves connected or rejects with the TLS error. */
function stompitTls(port: number, login: string, options: tls.ConnectionOptions = {}): Promise<stompit.Client> {
  return new Promise((resolve, reject) => {
    const client = stompit.connect({ host: '127.0.0.1', port, ssl: true, ca: [fs.readFileSync(certs.caCert)], connectHeaders: { host: '/', login, 'heart-beat': '0,0' }, ...options }, (error, connected) =>
      error ? reject(error) : resolve(connected),
    );
    client.on('error', () => undefined); // a refused handshake is reported to the callback above
    stompitClients.push(client);
  });
}

function stompitMessage(client: stompit.Client, destination: string): Promise<string> {
  return new Promise((resolve, reject) => {
    client.subscribe({ destination, ack: 'auto' }, (error, message) => {
      if (error) return reject(error);
      message.readString('utf8', (readError, body) => (readError ? reject(readError) : resolve(body ?? '')));
    });
  });
}

function stompitSend(client: stompit.Client, destination: string, body: string): void {
  const frame = client.send({ destination });
  frame.end(body);
}

/** @stomp/stompjs over wss://, trusting `ca`: resolves on CONNECTED, rejects on a socket error. */
function stompjsWss(port: number, login: string, ca: string = certs.caCert): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new WebSocket(`wss://127.0.0.1:${port}/ws`, ['v12.stomp'], { ca: fs.readFileSync(ca) }),
      connectHeaders: { login },
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      onConnect: () => resolve(client),
      onWebSocketError: (event) => reject(new Error(String((event as { message?: string }).message ?? 'websocket error'))),
      onWebSocketClose: () => reject(new Error('closed before CONNECTED')),
    });
    stompjsClients.push(client);
    client.activate();
  });
}

/** The TLS error a plain node client gets from `port` (undefined: the handshake succeeded). */
function handshakeError(port: number, options: tls.ConnectionOptions = {}): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: [fs.readFileSync(certs.caCert)], ...options });
    socket.once('secureConnect', () => {
      // TLS 1.3: a refused client certificate is told after the client's handshake completes.
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      socket.once('close', () => resolve('closed'));
      socket.once('data', () => undefined);
      socket.write('CONNECT\naccept-version:1.2\nhost:/\n\n\0', () => undefined);
      setTimeout(() => {
        socket.destroy();
        resolve(undefined);
      }, 1500);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

describe('TLS listeners', { timeout: 60_000 }, () => {
  it('stompit over TLS and stompjs over wss:// exchange messages, with a plain client too', async () => {
    const b = await h.broker(tlsEnv());
    assert.ok(b.stompTlsPort !== undefined && b.wssPort !== undefined);
    const overTls = await stompitTls(b.stompTlsPort, 'tls-client');
    const received = stompitMessage(overTls, '/topic/tls');
    const wss = await stompjsWss(b.wssPort, 'wss-client');
    const wssReceived = new Promise<IMessage>((resolve) => wss.subscribe('/topic/wss', resolve));
    const plain = await h.connected(b, { login: 'plain' });
    // Subscriptions are in once a plain SEND reaches them; retry until the first arrives.
    let body: string | undefined;
    void received.then((text) => (body = text));
    await until(
      () => {
        plain.sendFrame('SEND', { destination: '/topic/tls' }, 'to the TLS client');
        return body !== undefined;
      },
      'the TLS subscriber to receive',
      TIMEOUT_MS,
      100,
    );
    assert.equal(body, 'to the TLS client');
    stompitSend(overTls, '/topic/wss', 'from TLS to wss');
    assert.equal((await wssReceived).body, 'from TLS to wss');
  });

  it('a wss:// session outlives the handshake timeout (the deadline ends with the upgrade, found through the TLS socket)', async () => {
    const b = await h.broker({ ...tlsEnv(), HANDSHAKE_TIMEOUT_MS: '300' });
    const wss = await stompjsWss(b.wssPort!, 'long-lived');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.ok(wss.connected, 'still connected');
    const received = new Promise<IMessage>((resolve) => wss.subscribe('/topic/later', resolve));
    const plain = await h.connected(b, { login: 'later' });
    let isReceived = false;
    void received.then(() => (isReceived = true));
    await until(
      () => {
        plain.sendFrame('SEND', { destination: '/topic/later' }, 'still there');
        return isReceived;
      },
      'the wss subscriber to receive',
      TIMEOUT_MS,
      100,
    );
  });

  it('plain listeners can be off: only the TLS ports listen', async () => {
    const b = await h.broker({ ...tlsEnv(), STOMP_PORT: 'off', WS_PORT: 'off' });
    assert.equal(b.tcpPort, undefined);
    assert.equal(b.wsPort, undefined);
    await stompitTls(b.stompTlsPort!, 'only-tls');
    await stompjsWss(b.wssPort!, 'only-wss');
  });

  it('an expired certificate and an untrusted one are refused by the clients', async () => {
    const expired = await h.broker(tlsEnv(certs.expiredCert, certs.expiredKey));
    await assert.rejects(stompitTls(expired.stompTlsPort!, 'x'), (error: NodeJS.ErrnoException) => error.code === 'CERT_HAS_EXPIRED');
    await assert.rejects(stompjsWss(expired.wssPort!, 'x'), /expired/i);
    const untrusted = await h.broker(tlsEnv(certs.untrustedCert, certs.untrustedKey));
    await assert.rejects(stompitTls(untrusted.stompTlsPort!, 'x'), (error: NodeJS.ErrnoException) => error.code === 'DEPTH_ZERO_SELF_SIGNED_CERT');
    await assert.rejects(stompjsWss(untrusted.wssPort!, 'x'), /self[- ]signed/i);
  });

  it('TLS_CA_FILE: a client without a certificate from that CA is refused, one with it gets in', async () => {
    const b = await h.broker({ ...tlsEnv(), TLS_CA_FILE: certs.caCert });
    assert.notEqual(await handshakeError(b.stompTlsPort!), undefined, 'no client certificate');
    assert.notEqual(await handshakeError(b.stompTlsPort!, { cert: fs.readFileSync(certs.untrustedCert), key: fs.readFileSync(certs.untrustedKey) }), undefined, 'a certificate from elsewhere');
    await stompitTls(b.stompTlsPort!, 'alice', { cert: fs.readFileSync(certs.clientCert), key: fs.readFileSync(certs.clientKey) });
  });

  it('a TLS handshake on the plain ports is closed at once, with a log line that says so', async () => {
    const { logger, lines } = capturedLog();
    // A CONNECT timeout far past the test's: the close cannot be that timeout.
    const b = await h.broker({ CONNECT_TIMEOUT_MS: '600000', HANDSHAKE_TIMEOUT_MS: '600000' }, { logger });
    for (const port of [b.tcpPort!, b.wsPort!]) {
      const error = await handshakeError(port);
      assert.notEqual(error, undefined, `port ${port}: no TLS there`);
    }
    await until(() => lines.filter((l) => l.code === 'TLS_ON_PLAIN_PORT').length >= 1, 'the TLS-on-plain-port line', TIMEOUT_MS);
    const line = lines.find((l) => l.code === 'TLS_ON_PLAIN_PORT')!;
    assert.match(String(line.msg), /TLS handshake arrived on a plain port/);
    assert.match(String(line.remoteAddress), /^127\.0\.0\.1:\d+$/);
    // The plain ports still serve STOMP.
    await h.connected(b, { login: 'plain-after' });
    const ws = h.track(await RawClient.ws(b.wsPort!));
    await ws.connect({ login: 'ws-after' });
  });
});

/** A start that must fail: exit 1 and one line on stderr (returned). */
function failedStart(env: Record<string, string>): string {
  const result = spawnSync(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '', STOMP_PORT: '0', WS_PORT: '0', HTTP_PORT: 'off', ...env }, encoding: 'utf8', timeout: TIMEOUT_MS });
  assert.equal(result.status, 1, result.stderr);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, result.stderr);
  return lines[0]!;
}

describe('TLS files at start and on SIGHUP', { timeout: 60_000 }, () => {
  it('a missing or bad file stops the start with one line naming the variable', () => {
    assert.equal(failedStart(tlsEnv('/nonexistent/cert.pem')), 'stompd: TLS_CERT_FILE="/nonexistent/cert.pem": no such file');
    assert.match(failedStart(tlsEnv(certs.serverCert, certs.caCert)), /^stompd: TLS_KEY_FILE=".*ca\.pem": /);
    assert.match(failedStart(tlsEnv(certs.serverCert, certs.untrustedKey)), /^stompd: TLS_KEY_FILE=".*untrusted\.key": the key does not belong to the certificate in TLS_CERT_FILE$/);
    assert.match(failedStart(tlsEnv(certs.serverKey, certs.serverKey)), /^stompd: TLS_CERT_FILE=".*server\.key": not a valid certificate/);
    assert.match(failedStart({ TLS_CERT_FILE: certs.serverCert }), /^stompd: invalid configuration: TLS_KEY_FILE="": expected a path/);
    assert.match(failedStart({ ...tlsEnv(), TLS_CA_FILE: path.join(certs.dir, 'nope.pem') }), /^stompd: TLS_CA_FILE=".*nope\.pem": no such file$/);
  });

  it('SIGHUP: new handshakes get the new certificate, an open TLS session carries on; a bad file keeps the old one', async () => {
    const cert = path.join(certs.dir, 'live.pem');
    const key = path.join(certs.dir, 'live.key');
    fs.copyFileSync(certs.serverCert, cert);
    fs.copyFileSync(certs.serverKey, key);
    const broker = await BrokerProcess.start(tlsEnv(cert, key));
    processes.push(broker);
    const peerName = async (): Promise<string> => {
      const socket = tls.connect({ host: '127.0.0.1', port: broker.stompTlsPort, ca: [fs.readFileSync(certs.caCert)] });
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', resolve);
        socket.once('error', reject);
      });
      const name = socket.getPeerCertificate().subject.CN;
      socket.destroy();
      return String(name);
    };
    assert.equal(await peerName(), 'stompd-server');
    const before = await stompitTls(broker.stompTlsPort, 'before-reload');
    const received = stompitMessage(before, '/topic/reload');

    fs.copyFileSync(certs.reloadedCert, cert);
    fs.copyFileSync(certs.reloadedKey, key);
    broker.child.kill('SIGHUP');
    await broker.waitForLog((line) => line.msg === 'TLS certificate reloaded', TIMEOUT_MS);
    assert.equal(await peerName(), 'stompd-reloaded');

    const after = await stompitTls(broker.stompTlsPort, 'after-reload');
    let body: string | undefined;
    void received.then((text) => (body = text));
    await until(
      () => {
        stompitSend(after, '/topic/reload', 'across the reload');
        return body !== undefined;
      },
      'the session opened before the reload to receive',
      TIMEOUT_MS,
      100,
    );
    assert.equal(body, 'across the reload');

    fs.writeFileSync(cert, 'not a certificate');
    broker.child.kill('SIGHUP');
    const refused = await broker.waitForLog((line) => line.msg === 'TLS certificate not reloaded: keeping the previous one', TIMEOUT_MS);
    assert.match(String(refused.error), /^TLS_CERT_FILE=".*live\.pem": not a PEM file/);
    assert.equal(await peerName(), 'stompd-reloaded');
    assert.equal(broker.child.exitCode, null, 'still running');
  });
});
