// Command-line options of bench/cross-instance: parsed once into a frozen
// CrossInstanceOptions, each bad value refused with one line naming the option.

import { parseArgs } from 'node:util';
import { OptionError, positiveInteger } from './fanout-options';
import type { Transport } from './load-client';
import { TIMESTAMP_DIGITS } from './payload';

/** single: one stompd, no Redis. cross: publisher on A, every subscriber on B. split: half on A, half on B. */
export type Scenario = 'single' | 'cross' | 'split';
/**
 * fixed: --rate messages per second; max: as fast as the window lets the publisher go;
 * receipts: as fast as the broker's RECEIPTs let it go (flow control decides the rate).
 */
export type Mode = 'fixed' | 'max' | 'receipts';

export const SCENARIOS: readonly Scenario[] = ['single', 'cross', 'split'];

export interface CrossInstanceOptions {
  mode: Mode;
  scenarios: Scenario[];
  /** Rounds; each round runs every scenario once, so repeats are interleaved. */
  repeat: number;
  transport: Transport;
  subscribers: number;
  /** fixed mode: messages per second. */
  ratePerSec: number;
  /** How long the publisher publishes, per run. */
  durationSeconds: number;
  bodyBytes: number;
  /** max mode: messages in flight towards the tracker subscriber; receipts mode: messages not yet confirmed. */
  window: number;
  /** max and receipts modes: SEND frames per write. */
  batch: number;
  sampleEvery: number;
  connectBatch: number;
  /** After publishing stops: end the run after this long without a delivery. */
  idleSeconds: number;
  destination: string;
  brokerEnv: Record<string, string>;
  brokerNodeArgs: string[];
  /** The stompd to spawn (another build's dist/src/main.js); undefined: this one's. */
  mainPath: string | undefined;
  isPinning: boolean;
  isQuiet: boolean;
  /** The unsampled subscribers are held by bench/stomp-sink.c (TCP), not by Node clients. */
  isNativeSink: boolean;
}

export { OptionError };

const DEFAULTS = {
  mode: 'fixed',
  scenarios: SCENARIOS.join(','),
  repeat: 1,
  transport: 'tcp',
  subscribers: 100,
  rate: 2000,
  duration: 10,
  size: 80,
  window: 200,
  batch: 50,
  sampleEvery: 10,
  connectBatch: 100,
  idle: 5,
  destination: '/topic/bench-cross',
} as const;

export const USAGE = `Usage: node dist/bench/cross-instance.js [options]

One publisher, N subscribers on one topic, across two stompd instances joined by one
redis-server (all spawned by the bench on loopback), next to a single stompd without Redis.
Prints one JSON line per run, then one summary line (medians per scenario) on stdout.

  --mode fixed|max|receipts fixed: --rate messages/s (latency); max: as fast as the window allows;
                            receipts: as fast as the broker's RECEIPTs allow (each --batch ends
                            with a SEND asking for one, at most --window messages unconfirmed):
                            the broker's flow control sets the rate (default ${DEFAULTS.mode})
  --scenarios LIST          comma-separated from single, cross, split (default ${DEFAULTS.scenarios})
                              single: one stompd, no Redis; cross: publisher on A, subscribers on B;
                              split: publisher on A, half the subscribers on A, half on B
  --repeat N                rounds of every scenario, interleaved; the summary gives medians (default ${DEFAULTS.repeat})
  --transport tcp|ws        (default ${DEFAULTS.transport})
  --subscribers N           subscriber connections (default ${DEFAULTS.subscribers})
  --rate R                  fixed mode: messages published per second (default ${DEFAULTS.rate})
  --duration S              seconds of publishing per run (default ${DEFAULTS.duration})
  --size BYTES              body size, >= ${TIMESTAMP_DIGITS} (default ${DEFAULTS.size})
  --window W                max mode: messages in flight towards the tracker subscriber (default ${DEFAULTS.window})
  --batch B                 max mode: SEND frames per write (default ${DEFAULTS.batch})
  --sample-every K          every K-th subscriber (and the last) records latency (default ${DEFAULTS.sampleEvery})
  --connect-batch C         connections opened at once during set-up (default ${DEFAULTS.connectBatch})
  --idle S                  after publishing, end a run after S seconds without a delivery (default ${DEFAULTS.idle})
  --destination D           topic (default ${DEFAULTS.destination})
  --broker-env K=V          extra environment for every spawned stompd (repeatable)
  --broker-node-arg=ARG     extra node flag for every spawned stompd, e.g. --broker-node-arg=--cpu-prof (repeatable)
  --main PATH               spawn this main.js (another build of stompd, for before/after) instead of this one's
  --no-pin                  do not pin: by default the brokers share CPU 0, redis-server and
                            the load generator CPU 1
  --native-sink             TCP only: the subscribers that record no latency are held by
                            bench/stomp-sink.c (built with cc), which reads with epoll at a
                            fraction of Node's cost per read, so that the load generator leaves
                            the cores to the brokers (two instances on a 2-core machine); its
                            CPU is reported as cpu.sinks
  --quiet                   no progress on stderr
  --help                    this text
`;

/** undefined when --help was asked for. */
export function parseCrossInstanceOptions(argv: readonly string[]): Readonly<CrossInstanceOptions> | undefined {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        mode: { type: 'string' },
        scenarios: { type: 'string' },
        repeat: { type: 'string' },
        transport: { type: 'string' },
        subscribers: { type: 'string' },
        rate: { type: 'string' },
        duration: { type: 'string' },
        size: { type: 'string' },
        window: { type: 'string' },
        batch: { type: 'string' },
        'sample-every': { type: 'string' },
        'connect-batch': { type: 'string' },
        idle: { type: 'string' },
        destination: { type: 'string' },
        'broker-env': { type: 'string', multiple: true },
        'broker-node-arg': { type: 'string', multiple: true },
        main: { type: 'string' },
        'no-pin': { type: 'boolean' },
        'native-sink': { type: 'boolean' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean' },
      },
    }));
  } catch (error) {
    throw new OptionError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return undefined;

  const mode = values.mode ?? DEFAULTS.mode;
  if (mode !== 'fixed' && mode !== 'max' && mode !== 'receipts') throw new OptionError(`--mode=${JSON.stringify(mode)}: expected fixed, max or receipts`);
  const transport = values.transport ?? DEFAULTS.transport;
  if (transport !== 'tcp' && transport !== 'ws') throw new OptionError(`--transport=${JSON.stringify(transport)}: expected tcp or ws`);

  if (values['native-sink'] && transport !== 'tcp') throw new OptionError('--native-sink: TCP only (use --transport tcp)');

  const scenarioList = (values.scenarios ?? DEFAULTS.scenarios).split(',').map((s) => s.trim());
  const scenarios: Scenario[] = [];
  for (const name of scenarioList) {
    if (!(SCENARIOS as readonly string[]).includes(name)) throw new OptionError(`--scenarios: unknown scenario ${JSON.stringify(name)} (expected ${SCENARIOS.join(', ')})`);
    if (!scenarios.includes(name as Scenario)) scenarios.push(name as Scenario);
  }

  const destination = values.destination ?? DEFAULTS.destination;
  if (!destination.startsWith('/') || /[\r\n:]/.test(destination)) throw new OptionError(`--destination=${JSON.stringify(destination)}: expected a path without ":" or line breaks`);

  const brokerEnv: Record<string, string> = {};
  for (const pair of values['broker-env'] ?? []) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new OptionError(`--broker-env=${JSON.stringify(pair)}: expected KEY=VALUE`);
    brokerEnv[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  for (const owned of ['REDIS_URL', 'REDIS_CLUSTER_NODES', 'REDIS_PREFIX', 'INSTANCE_ID']) {
    if (owned in brokerEnv) throw new OptionError(`--broker-env: ${owned} is set by the bench itself`);
  }

  const subscribers = positiveInteger('subscribers', values.subscribers ?? String(DEFAULTS.subscribers));
  if (scenarios.includes('split') && subscribers < 2) throw new OptionError('--subscribers: the split scenario needs at least 2 (half on each instance)');
  const window = positiveInteger('window', values.window ?? String(DEFAULTS.window));
  const batch = positiveInteger('batch', values.batch ?? String(DEFAULTS.batch));
  if (batch > window) throw new OptionError(`--batch (${batch}) cannot be larger than --window (${window})`);

  return Object.freeze({
    mode,
    scenarios,
    repeat: positiveInteger('repeat', values.repeat ?? String(DEFAULTS.repeat)),
    transport,
    subscribers,
    ratePerSec: positiveInteger('rate', values.rate ?? String(DEFAULTS.rate)),
    durationSeconds: positiveInteger('duration', values.duration ?? String(DEFAULTS.duration)),
    bodyBytes: positiveInteger('size', values.size ?? String(DEFAULTS.size), TIMESTAMP_DIGITS),
    window,
    batch,
    sampleEvery: positiveInteger('sample-every', values['sample-every'] ?? String(DEFAULTS.sampleEvery)),
    connectBatch: positiveInteger('connect-batch', values['connect-batch'] ?? String(DEFAULTS.connectBatch)),
    idleSeconds: positiveInteger('idle', values.idle ?? String(DEFAULTS.idle)),
    destination,
    brokerEnv,
    brokerNodeArgs: values['broker-node-arg'] ?? [],
    mainPath: values.main,
    isPinning: !values['no-pin'],
    isQuiet: values.quiet ?? false,
    isNativeSink: values['native-sink'] ?? false,
  });
}
