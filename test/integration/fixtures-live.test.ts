// Every invalid fixture of the codec corpus, replayed on a live connection after CONNECT:
// the broker answers ERROR with a message header and closes that connection, while a
// bystander on the same broker keeps sending and receiving.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { DecoderLimits } from '../../src/codec';
import { DEFAULT_LIMITS } from '../../src/codec';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { RawClient, header } from '../helpers/raw-client';

interface Expectation {
  version?: '1.0' | '1.1' | '1.2';
  limits?: Partial<DecoderLimits>;
  acceptServerCommands?: boolean;
  error?: string;
  framesBeforeError?: number;
}

const FRAMES_DIR = path.resolve(__dirname, '../../../frames');
const invalid = fs
  .readdirSync(FRAMES_DIR)
  .filter((name) => name.startsWith('invalid-') && name.endsWith('.json'))
  .map((name) => ({
    name: name.slice(0, -'.json'.length),
    expectation: JSON.parse(fs.readFileSync(path.join(FRAMES_DIR, name), 'utf8')) as Expectation,
    bytes: fs.readFileSync(path.join(FRAMES_DIR, name.replace(/\.json$/, '.stomp'))),
  }));

const brokers = new Map<string, { broker: RunningServer; bystander: RawClient }>();

/** One broker per distinct set of limits, each with a bystander subscribed to itself. */
async function brokerFor(limits: Partial<DecoderLimits> | undefined): Promise<{ broker: RunningServer; bystander: RawClient }> {
  const key = JSON.stringify(limits ?? {});
  let entry = brokers.get(key);
  if (entry === undefined) {
    const broker = await startBroker({ HEARTBEAT: '0,0' }, {}, { limits: { ...DEFAULT_LIMITS, ...limits } });
    const bystander = await RawClient.tcp(broker.tcpPort!);
    bystander.send('CONNECT\naccept-version:1.2\nhost:/\n\n\0');
    await bystander.expect('CONNECTED');
    bystander.send('SUBSCRIBE\nid:b\ndestination:/topic/b\n\n\0');
    entry = { broker, bystander };
    brokers.set(key, entry);
  }
  return entry;
}

let roundTrips = 0;
async function stillWorks(bystander: RawClient): Promise<void> {
  const body = `ping-${++roundTrips}`;
  bystander.send(`SEND\ndestination:/topic/b\n\n${body}\0`);
  const message = await bystander.expect('MESSAGE');
  assert.equal(message.body.toString(), body);
}

after(async () => {
  for (const { broker, bystander } of brokers.values()) {
    bystander.destroy();
    await broker.stop();
  }
});

describe('invalid fixtures on a live connection', { timeout: 60000 }, () => {
  it('the corpus has invalid fixtures to replay', () => {
    assert.ok(invalid.length >= 30, `only ${invalid.length} invalid fixtures`);
  });

  for (const fixture of invalid) {
    it(fixture.name, async () => {
      const { broker, bystander } = await brokerFor(fixture.expectation.limits);
      const client = await RawClient.tcp(broker.tcpPort!);
      try {
        const version = fixture.expectation.version ?? '1.2';
        client.send(`CONNECT\naccept-version:${version}\nhost:/\n\n\0`);
        await client.expect('CONNECTED');
        client.send(fixture.bytes);
        let error = await client.next();
        while (error.command !== 'ERROR') error = await client.next(); // RECEIPTs of valid frames before the bad one
        const message = header(error, 'message') ?? '';
        assert.match(message, /^[A-Z_]+: ./, 'ERROR message starts with a code');
        if (!fixture.expectation.framesBeforeError) assert.ok(message.startsWith(`${fixture.expectation.error}:`), `${message} is not ${fixture.expectation.error}`);
        await client.waitClosed();
        await stillWorks(bystander);
      } finally {
        client.destroy();
      }
    });
  }
});
