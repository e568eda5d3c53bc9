// The STOMP protocol as a raw-bytes client sees it over TCP: connecting, negotiation,
// receipts, errors, acks, transactions, disconnect.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { RawClient, header } from '../helpers/raw-client';

let broker: RunningServer;
const clients: RawClient[] = [];

async function client(): Promise<RawClient> {
  const c = await RawClient.tcp(broker.tcpPort!);
  clients.push(c);
  return c;
}

async function connected(headers: Record<string, string> = {}): Promise<RawClient> {
  const c = await client();
  await c.connect(headers);
  return c;
}

async function subscribe(c: RawClient, id: string, destination: string, ack = 'auto'): Promise<void> {
  c.sendFrame('SUBSCRIBE', { id, destination, ack, receipt: `sub-${id}` });
  const receipt = await c.expect('RECEIPT');
  assert.equal(header(receipt, 'receipt-id'), `sub-${id}`);
}

before(async () => {
  broker = await startBroker({ HEARTBEAT: '0,0' });
});

after(async () => {
  for (const c of clients) c.destroy();
  await broker.stop();
});

describe('connecting', { timeout: 10000 }, () => {
  it('CONNECT gets CONNECTED with version, heart-beat, session and server', async () => {
    const c = await client();
    const frame = await c.connect({ login: 'alice' });
    assert.equal(header(frame, 'version'), '1.2');
    assert.equal(header(frame, 'heart-beat'), '0,0');
    assert.match(header(frame, 'session') ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(header(frame, 'server'), 'stompd/0.1.0');
    assert.equal(header(frame, 'user-name'), 'alice');
  });

  it('STOMP is the same as CONNECT', async () => {
    const c = await client();
    c.sendFrame('STOMP', { 'accept-version': '1.1,1.2', host: '/' });
    const frame = await c.expect('CONNECTED');
    assert.equal(header(frame, 'version'), '1.2');
  });

  it('negotiates the highest common version', async () => {
    const c = await client();
    c.sendFrame('CONNECT', { 'accept-version': '1.0,1.1', host: '/' });
    assert.equal(header(await c.expect('CONNECTED'), 'version'), '1.1');
  });

  it('a missing accept-version means 1.0', async () => {
    const c = await client();
    c.send('CONNECT\nlogin:old\n\n\0');
    assert.equal(header(await c.expect('CONNECTED'), 'version'), '1.0');
  });

  it('no common version: ERROR with a version header, then close', async () => {
    const c = await client();
    c.sendFrame('CONNECT', { 'accept-version': '2.0,3.1', host: '/' });
    const error = await c.expect('ERROR');
    assert.match(header(error, 'message') ?? '', /^UNSUPPORTED_VERSION/);
    assert.equal(header(error, 'version'), '1.0,1.1,1.2');
    await c.waitClosed();
  });

  it('a frame before CONNECT is refused', async () => {
    const c = await client();
    c.sendFrame('SEND', { destination: '/topic/x', receipt: 'r1' }, 'hi');
    const error = await c.expect('ERROR');
    assert.match(header(error, 'message') ?? '', /^NOT_CONNECTED/);
    assert.equal(header(error, 'receipt-id'), 'r1');
    await c.waitClosed();
  });

  it('a second CONNECT is refused', async () => {
    const c = await connected();
    c.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/' });
    assert.match(header(await c.expect('ERROR'), 'message') ?? '', /^ALREADY_CONNECTED/);
    await c.waitClosed();
  });

  it('a malformed heart-beat header is refused', async () => {
    const c = await client();
    c.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', 'heart-beat': 'soon' });
    assert.match(header(await c.expect('ERROR'), 'message') ?? '', /^BAD_HEARTBEAT/);
    await c.waitClosed();
  });

  it('CONNECT headers are not unescaped: a passcode keeps its backslashes and colons', async () => {
    const c = await client();
    c.send('CONNECT\naccept-version:1.2\nhost:/\nlogin:a\\cb:c\npasscode:x\\y\n\n\0');
    const frame = await c.expect('CONNECTED');
    assert.equal(header(frame, 'user-name'), 'a\\cb:c');
  });
});

describe('receipts, errors and disconnect', { timeout: 10000 }, () => {
  it('answers any frame carrying receipt with RECEIPT receipt-id', async () => {
    const c = await connected();
    c.sendFrame('SEND', { destination: '/topic/nobody', receipt: 'r-send' }, 'x');
    c.sendFrame('BEGIN', { transaction: 't', receipt: 'r-begin' });
    c.sendFrame('ABORT', { transaction: 't', receipt: 'r-abort' });
    c.sendFrame('UNSUBSCRIBE', { id: 'none', receipt: 'r-unsub' });
    for (const id of ['r-send', 'r-begin', 'r-abort', 'r-unsub']) assert.equal(header(await c.expect('RECEIPT'), 'receipt-id'), id);
  });

  it('DISCONNECT with receipt: RECEIPT, then the broker closes', async () => {
    const c = await connected();
    c.sendFrame('DISCONNECT', { receipt: 'bye' });
    assert.equal(header(await c.expect('RECEIPT'), 'receipt-id'), 'bye');
    await c.waitClosed();
  });

  it('an error: ERROR with message and receipt-id, then close; others unaffected', async () => {
    const bystander = await connected();
    await subscribe(bystander, 's', '/topic/after-error');
    const c = await connected();
    c.sendFrame('SEND', { receipt: 'r9' }, 'no destination');
    const error = await c.expect('ERROR');
    assert.match(header(error, 'message') ?? '', /^MISSING_HEADER: SEND needs a destination header/);
    assert.equal(header(error, 'receipt-id'), 'r9');
    assert.match(error.body.toString(), /MISSING_HEADER/);
    await c.waitClosed();
    const sender = await connected();
    sender.sendFrame('SEND', { destination: '/topic/after-error' }, 'still here');
    assert.equal((await bystander.expect('MESSAGE')).body.toString(), 'still here');
  });

  it('required headers are checked per command', async () => {
    const cases: [string, Record<string, string>, RegExp][] = [
      ['SUBSCRIBE', { destination: '/topic/a' }, /SUBSCRIBE needs a id header/],
      ['SUBSCRIBE', { id: '1' }, /SUBSCRIBE needs a destination header/],
      ['UNSUBSCRIBE', {}, /UNSUBSCRIBE needs a id header/],
      ['ACK', {}, /ACK needs a id header/],
      ['NACK', {}, /NACK needs a id header/],
      ['BEGIN', {}, /BEGIN needs a transaction header/],
      ['COMMIT', {}, /COMMIT needs a transaction header/],
      ['ABORT', {}, /ABORT needs a transaction header/],
    ];
    for (const [command, headers, pattern] of cases) {
      const c = await connected();
      c.sendFrame(command, headers);
      const error = await c.expect('ERROR');
      assert.match(header(error, 'message') ?? '', pattern, command);
      await c.waitClosed();
    }
  });

  it('an unknown destination prefix is refused for SEND and SUBSCRIBE', async () => {
    for (const command of ['SEND', 'SUBSCRIBE']) {
      const c = await connected();
      c.sendFrame(command, { destination: '/exchange/x', id: '1' });
      assert.match(header(await c.expect('ERROR'), 'message') ?? '', /^UNKNOWN_DESTINATION/);
      await c.waitClosed();
    }
  });

  it('a duplicate subscription id is refused', async () => {
    const c = await connected();
    await subscribe(c, 'dup', '/topic/a');
    c.sendFrame('SUBSCRIBE', { id: 'dup', destination: '/topic/b' });
    assert.match(header(await c.expect('ERROR'), 'message') ?? '', /^DUPLICATE_SUBSCRIPTION/);
  });

  it('an invalid ack mode is refused', async () => {
    const c = await connected();
    c.sendFrame('SUBSCRIBE', { id: '1', destination: '/topic/a', ack: 'sometimes' });
    assert.match(header(await c.expect('ERROR'), 'message') ?? '', /^INVALID_HEADER/);
  });
});

describe('messages', { timeout: 10000 }, () => {
  it('MESSAGE carries destination, message-id, subscription and the sender headers', async () => {
    const sub = await connected();
    await subscribe(sub, 'mine', '/topic/headers');
    const pub2 = await connected();
    pub2.sendFrame('SEND', { destination: '/topic/headers', 'content-type': 'text/plain', 'x-trace': 'a:b\\c', receipt: 'r' }, 'hello');
    await pub2.expect('RECEIPT');
    const message = await sub.expect('MESSAGE');
    assert.equal(header(message, 'destination'), '/topic/headers');
    assert.equal(header(message, 'subscription'), 'mine');
    assert.ok(header(message, 'message-id'));
    assert.equal(header(message, 'content-type'), 'text/plain');
    assert.equal(header(message, 'x-trace'), 'a:b\\c');
    assert.equal(header(message, 'content-length'), '5');
    assert.equal(header(message, 'receipt'), undefined);
    assert.equal(header(message, 'ack'), undefined, 'auto mode has no ack header');
    assert.equal(message.body.toString(), 'hello');
  });

  it('binary bodies with NULs travel intact', async () => {
    const sub = await connected();
    await subscribe(sub, '1', '/topic/binary');
    const pub = await connected();
    const body = Buffer.from([0, 1, 2, 255, 0, 10, 13, 0]);
    pub.sendFrame('SEND', { destination: '/topic/binary' }, body);
    const message = await sub.expect('MESSAGE');
    assert.deepEqual(message.body, body);
  });

  it('a 1.0 session gets unescaped headers and may subscribe without id', async () => {
    const sub = await client();
    sub.send('CONNECT\n\n\0');
    await sub.expect('CONNECTED');
    sub.send('SUBSCRIBE\ndestination:/topic/old\nreceipt:s\n\n\0');
    await sub.expect('RECEIPT');
    const pub = await connected();
    pub.sendFrame('SEND', { destination: '/topic/old', note: 'a:b' }, 'v1.0');
    const message = await sub.expect('MESSAGE');
    assert.equal(header(message, 'subscription'), '/topic/old');
    assert.equal(header(message, 'note'), 'a:b');
  });
});

describe('acknowledgements', { timeout: 10000 }, () => {
  it('client-individual: an ACK covers one message; unacked ones go to another consumer when the first leaves', async () => {
    const first = await connected();
    await subscribe(first, 'q', '/queue/individual', 'client-individual');
    const pub = await connected();
    for (const n of [1, 2, 3]) pub.sendFrame('SEND', { destination: '/queue/individual' }, `m${n}`);
    const m1 = await first.expect('MESSAGE');
    const m2 = await first.expect('MESSAGE');
    const m3 = await first.expect('MESSAGE');
    assert.ok(header(m1, 'ack'));
    first.sendFrame('ACK', { id: header(m2, 'ack')!, receipt: 'a' });
    await first.expect('RECEIPT');
    const second = await connected();
    await subscribe(second, 'q2', '/queue/individual', 'client-individual');
    first.destroy();
    const redelivered = [await second.expect('MESSAGE'), await second.expect('MESSAGE')].map((m) => m.body.toString());
    assert.deepEqual(redelivered, ['m1', 'm3']);
    assert.equal(header(m3, 'redelivered'), undefined);
  });

  it('client mode: an ACK covers the message and every earlier one', async () => {
    const consumer = await connected();
    await subscribe(consumer, 'c', '/queue/cumulative', 'client');
    const pub = await connected();
    for (const n of [1, 2, 3]) pub.sendFrame('SEND', { destination: '/queue/cumulative' }, `m${n}`);
    await consumer.expect('MESSAGE');
    const m2 = await consumer.expect('MESSAGE');
    await consumer.expect('MESSAGE');
    consumer.sendFrame('ACK', { id: header(m2, 'ack')!, receipt: 'a' });
    await consumer.expect('RECEIPT');
    const other = await connected();
    await subscribe(other, 'o', '/queue/cumulative', 'client');
    consumer.sendFrame('DISCONNECT', { receipt: 'bye' });
    await consumer.expect('RECEIPT');
    const left = await other.expect('MESSAGE');
    assert.equal(left.body.toString(), 'm3', 'm1 and m2 were acked by the ACK of m2');
    assert.equal(header(left, 'redelivered'), 'true');
    await other.expectSilence();
  });

  it('NACK redelivers to another consumer', async () => {
    const a = await connected();
    await subscribe(a, 'a', '/queue/nack', 'client-individual');
    const b = await connected();
    await subscribe(b, 'b', '/queue/nack', 'client-individual');
    const pub = await connected();
    pub.sendFrame('SEND', { destination: '/queue/nack' }, 'first');
    await a.waitUntil(() => a.frames.length + b.frames.length > 2, 3000, 'a delivery');
    const [by, other] = a.frames.length > 1 ? [a, b] : [b, a];
    const first = await by.expect('MESSAGE');
    by.sendFrame('NACK', { id: header(first, 'ack')! });
    const again = await other.expect('MESSAGE');
    assert.equal(again.body.toString(), 'first');
    assert.equal(header(again, 'redelivered'), 'true');
  });

  it('STOMP 1.1 acks by message-id and subscription', async () => {
    const consumer = await connected({ 'accept-version': '1.1' });
    await subscribe(consumer, 's11', '/queue/v11', 'client-individual');
    const pub = await connected();
    pub.sendFrame('SEND', { destination: '/queue/v11' }, 'one');
    pub.sendFrame('SEND', { destination: '/queue/v11' }, 'two');
    const one = await consumer.expect('MESSAGE');
    await consumer.expect('MESSAGE');
    consumer.sendFrame('ACK', { 'message-id': header(one, 'message-id')!, subscription: 's11', receipt: 'r' });
    await consumer.expect('RECEIPT');
    consumer.sendFrame('ACK', { 'message-id': 'x' });
    assert.match(header(await consumer.expect('ERROR'), 'message') ?? '', /ACK needs a subscription header/);
    const other = await connected();
    await subscribe(other, 'o', '/queue/v11', 'auto');
    assert.equal((await other.expect('MESSAGE')).body.toString(), 'two', 'only the unacked message comes back');
  });
});

describe('transactions', { timeout: 10000 }, () => {
  it('SENDs are held until COMMIT, in order', async () => {
    const sub = await connected();
    await subscribe(sub, 't', '/topic/tx');
    const pub = await connected();
    pub.sendFrame('BEGIN', { transaction: 'tx1' });
    pub.sendFrame('SEND', { destination: '/topic/tx', transaction: 'tx1' }, 'a');
    pub.sendFrame('SEND', { destination: '/topic/tx', transaction: 'tx1' }, 'b');
    pub.sendFrame('SEND', { destination: '/topic/tx', receipt: 'outside' }, 'outside');
    await pub.expect('RECEIPT');
    assert.equal((await sub.expect('MESSAGE')).body.toString(), 'outside');
    await sub.expectSilence(100);
    pub.sendFrame('COMMIT', { transaction: 'tx1' });
    assert.equal((await sub.expect('MESSAGE')).body.toString(), 'a');
    assert.equal((await sub.expect('MESSAGE')).body.toString(), 'b');
  });

  it('ABORT drops held SENDs and ACKs', async () => {
    const sub = await connected();
    await subscribe(sub, 't', '/queue/tx-abort', 'client-individual');
    const pub = await connected();
    pub.sendFrame('SEND', { destination: '/queue/tx-abort' }, 'keep');
    const message = await sub.expect('MESSAGE');
    pub.sendFrame('BEGIN', { transaction: 'x' });
    pub.sendFrame('SEND', { destination: '/queue/tx-abort', transaction: 'x' }, 'dropped');
    pub.sendFrame('ABORT', { transaction: 'x', receipt: 'aborted' });
    await pub.expect('RECEIPT');
    sub.sendFrame('BEGIN', { transaction: 'acks' });
    sub.sendFrame('ACK', { id: header(message, 'ack')!, transaction: 'acks' });
    sub.sendFrame('ABORT', { transaction: 'acks', receipt: 'r' });
    await sub.expect('RECEIPT');
    await sub.expectSilence(100);
    sub.destroy();
    const next = await connected();
    await subscribe(next, 'n', '/queue/tx-abort');
    assert.equal((await next.expect('MESSAGE')).body.toString(), 'keep', 'the aborted ACK did not acknowledge the message');
    await next.expectSilence(100);
  });

  it('a dropped connection discards its open transaction', async () => {
    const sub = await connected();
    await subscribe(sub, 't', '/topic/tx-drop');
    const pub = await connected();
    pub.sendFrame('BEGIN', { transaction: 'gone' });
    pub.sendFrame('SEND', { destination: '/topic/tx-drop', transaction: 'gone', receipt: 'held' }, 'never');
    await pub.expect('RECEIPT');
    pub.sendFrame('DISCONNECT', {});
    await pub.waitClosed();
    await sub.expectSilence(150);
  });

  it('unknown and duplicate transactions are errors', async () => {
    const a = await connected();
    a.sendFrame('COMMIT', { transaction: 'nope' });
    assert.match(header(await a.expect('ERROR'), 'message') ?? '', /^UNKNOWN_TRANSACTION/);
    const b = await connected();
    b.sendFrame('BEGIN', { transaction: 't' });
    b.sendFrame('BEGIN', { transaction: 't' });
    assert.match(header(await b.expect('ERROR'), 'message') ?? '', /^DUPLICATE_TRANSACTION/);
    const c = await connected();
    c.sendFrame('SEND', { destination: '/topic/x', transaction: 'never-begun' }, 'x');
    assert.match(header(await c.expect('ERROR'), 'message') ?? '', /^UNKNOWN_TRANSACTION/);
  });
});
