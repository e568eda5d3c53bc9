// Command-line options of bench/fanout: parsed once into a frozen FanoutOptions, each bad
// value refused with one line naming the option. Defaults live in DEFAULTS and in --help.

import { parseArgs } from 'node:util';
import type { Transport } from './load-client';
import { TIMESTAMP_DIGITS } from './payload';

export interface ExternalTarget {
  host: string;
  tcpPort: number | undefined;
  wsPort: number | undefined;
}

/** window: at most --window messages not yet received (a healthy broker never needs to drop); max: paced by RECEIPTs only. */
export type PublishMode = 'window' | 'max';

export interface FanoutOptions {
  transports: Transport[];
  mode: PublishMode;
  /** Subscribers (the first ones) that read only about slowRate messages a second (TCP). */
  slowSubscribers: number;
  slowRate: number;
  subscribers: number;
  /** SEND frames published per transport run. */
  messages: number;
  bodyBytes: number;
  /** At most this many messages published and not yet received by the tracker subscriber. */
  window: number;
  /** SEND frames per socket write. */
  batch: number;
  /** Every n-th subscriber (and the tracker) records latency. */
  sampleEvery: number;
  /** Connections opened concurrently while setting up. */
  connectBatch: number;
  /** Bound on one transport run, set-up included. */
  timeoutSeconds: number;
  /** A run with no delivery for this long ends, its missing deliveries counted as drops. */
  idleSeconds: number;
  destination: string;
  wsPath: string;
  login: string | undefined;
  passcode: string | undefined;
  /** undefined: spawn stompd. */
  target: ExternalTarget | undefined;
  label: string | undefined;
  brokerEnv: Record<string, string>;
  brokerNodeArgs: string[];
  /** The stompd to spawn (another build's dist/src/main.js); undefined: this one's. */
  mainPath: string | undefined;
  /** An external broker's pid, to report its CPU use. */
  brokerPid: number | undefined;
  /** Pin the external broker's threads to the broker core for the run, then restore them. */
  isPinningExternal: boolean;
  isPinning: boolean;
  isQuiet: boolean;
}

export class OptionError extends Error {
  override readonly name = 'OptionError';
}

const DEFAULTS = {
  transport: 'both',
  mode: 'window',
  slow: 0,
  slowRate: 10,
  subscribers: 1000,
  messages: 10000,
  size: 80,
  window: 200,
  batch: 50,
  sampleEvery: 50,
  connectBatch: 100,
  timeout: 60,
  idle: 5,
  destination: '/topic/bench-fanout',
  wsPath: '/ws',
} as const;

export const USAGE = `Usage: node dist/bench/fanout.js [options]

One publisher, N subscribers on one topic; prints one JSON line per transport on stdout.

  --transport tcp|ws|both   transports to measure (default ${DEFAULTS.transport})
  --mode window|max         window: at most --window messages in flight towards the tracker
                            subscriber; max: as fast as the broker's RECEIPTs let the publisher
                            go (each --batch ends with a SEND asking for one, at most --window
                            messages unconfirmed): a broker without flow control drops then
                            (default ${DEFAULTS.mode})
  --slow K                  the first K subscribers read only --slow-rate messages/s (TCP only);
                            at the end they read the rest, one more message is published, and
                            each reports what it received and what it was told it missed
                            (default ${DEFAULTS.slow})
  --slow-rate R             messages per second a slow subscriber reads (default ${DEFAULTS.slowRate})
  --subscribers N           subscriber connections (default ${DEFAULTS.subscribers})
  --messages M              messages published per transport (default ${DEFAULTS.messages})
  --size BYTES              body size, >= ${TIMESTAMP_DIGITS} (default ${DEFAULTS.size})
  --window W                max messages in flight towards the tracker subscriber (default ${DEFAULTS.window})
  --batch B                 SEND frames per write (default ${DEFAULTS.batch})
  --sample-every K          every K-th subscriber records latency (default ${DEFAULTS.sampleEvery})
  --connect-batch C         connections opened at once during set-up (default ${DEFAULTS.connectBatch})
  --timeout S               bound on one transport run, set-up included (default ${DEFAULTS.timeout})
  --idle S                  end a run after S seconds without a delivery (default ${DEFAULTS.idle})
  --destination D           topic (default ${DEFAULTS.destination})
  --target HOST:TCP[:WS]    benchmark a running broker (loopback only) instead of spawning stompd;
                            leave TCP empty (HOST::WS) for WebSocket only
  --label NAME              broker name in the report (default "stompd" or "external HOST:PORT")
  --login L --passcode P    CONNECT credentials
  --ws-path PATH            WebSocket path (default ${DEFAULTS.wsPath})
  --broker-env K=V          environment for the spawned stompd (repeatable)
  --broker-node-arg=ARG     node flag for the spawned stompd, e.g. --broker-node-arg=--cpu-prof (repeatable)
  --main PATH               spawn this main.js (another build of stompd, for before/after) instead of this one's
  --broker-pid PID          an external broker's pid, to report its CPU use
  --pin-external            with --broker-pid: pin that broker's threads to CPU 0 during the run
                            (each thread's own affinity is put back afterwards)
  --no-pin                  do not pin broker and load generator to separate cores
  --quiet                   no progress on stderr
  --help                    this text
`;

export function positiveInteger(option: string, raw: string, min = 1): number {
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new OptionError(`--${option}=${JSON.stringify(raw)}: expected an integer >= ${min}`);
  return Number(raw);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function parsePort(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,5}$/.test(raw) || Number(raw) === 0 || Number(raw) > 65535) return Number.NaN;
  return Number(raw);
}

export function parseTarget(raw: string): ExternalTarget {
  const [host, tcp, ws, ...rest] = raw.split(':');
  const tcpPort = parsePort(tcp);
  const wsPort = parsePort(ws);
  if (host === undefined || rest.length > 0 || Number.isNaN(tcpPort) || Number.isNaN(wsPort) || (tcpPort === undefined && wsPort === undefined)) {
    throw new OptionError(`--target=${JSON.stringify(raw)}: expected HOST:TCP_PORT[:WS_PORT]`);
  }
  if (!isLoopback(host)) throw new OptionError(`--target=${JSON.stringify(raw)}: the benchmark only runs against loopback (127.0.0.1, localhost)`);
  return { host, tcpPort, wsPort };
}

/** undefined when --help was asked for. */
export function parseFanoutOptions(argv: readonly string[]): Readonly<FanoutOptions> | undefined {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        transport: { type: 'string' },
        mode: { type: 'string' },
        slow: { type: 'string' },
        'slow-rate': { type: 'string' },
        subscribers: { type: 'string' },
        messages: { type: 'string' },
        size: { type: 'string' },
        window: { type: 'string' },
        batch: { type: 'string' },
        'sample-every': { type: 'string' },
        'connect-batch': { type: 'string' },
        timeout: { type: 'string' },
        idle: { type: 'string' },
        destination: { type: 'string' },
        target: { type: 'string' },
        label: { type: 'string' },
        login: { type: 'string' },
        passcode: { type: 'string' },
        'ws-path': { type: 'string' },
        'broker-env': { type: 'string', multiple: true },
        'broker-node-arg': { type: 'string', multiple: true },
        main: { type: 'string' },
        'broker-pid': { type: 'string' },
        'pin-external': { type: 'boolean' },
        'no-pin': { type: 'boolean' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean' },
      },
    }));
  } catch (error) {
    throw new OptionError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return undefined;

  const transport = values.transport ?? DEFAULTS.transport;
  if (transport !== 'tcp' && transport !== 'ws' && transport !== 'both') throw new OptionError(`--transport=${JSON.stringify(transport)}: expected tcp, ws or both`);
  const transports: Transport[] = transport === 'both' ? ['tcp', 'ws'] : [transport];

  const target = values.target === undefined ? undefined : parseTarget(values.target);
  if (target !== undefined) {
    if (transports.includes('tcp') && target.tcpPort === undefined) throw new OptionError('--target has no TCP port but --transport asks for tcp');
    if (transports.includes('ws') && target.wsPort === undefined) throw new OptionError('--target has no WebSocket port but --transport asks for ws');
  }
  const wsPath = values['ws-path'] ?? DEFAULTS.wsPath;
  if (!wsPath.startsWith('/')) throw new OptionError(`--ws-path=${JSON.stringify(wsPath)}: expected a path starting with "/"`);
  const destination = values.destination ?? DEFAULTS.destination;
  if (!destination.startsWith('/') || /[\r\n:]/.test(destination)) throw new OptionError(`--destination=${JSON.stringify(destination)}: expected a path without ":" or line breaks`);

  const brokerEnv: Record<string, string> = {};
  for (const pair of values['broker-env'] ?? []) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new OptionError(`--broker-env=${JSON.stringify(pair)}: expected KEY=VALUE`);
    brokerEnv[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  if (target !== undefined && (Object.keys(brokerEnv).length > 0 || values['broker-node-arg'] !== undefined)) {
    throw new OptionError('--broker-env and --broker-node-arg only apply to the spawned stompd, not to --target');
  }

  for (const credential of ['login', 'passcode'] as const) {
    const value = values[credential];
    if (value !== undefined && /[\r\n:\0]/.test(value)) throw new OptionError(`--${credential}: no ":", NUL or line breaks`);
  }

  if (values['pin-external'] && (values['broker-pid'] === undefined || values['no-pin'])) {
    throw new OptionError('--pin-external needs --broker-pid (and no --no-pin)');
  }

  const mode = values.mode ?? DEFAULTS.mode;
  if (mode !== 'window' && mode !== 'max') throw new OptionError(`--mode=${JSON.stringify(mode)}: expected window or max`);
  const subscribers = positiveInteger('subscribers', values.subscribers ?? String(DEFAULTS.subscribers));
  const slowSubscribers = positiveInteger('slow', values.slow ?? String(DEFAULTS.slow), 0);
  if (slowSubscribers >= subscribers) throw new OptionError(`--slow (${slowSubscribers}) must leave at least one subscriber reading at full speed (--subscribers ${subscribers})`);
  if (slowSubscribers > 0 && transports.includes('ws')) throw new OptionError('--slow needs --transport tcp: slow subscribers read over TCP');
  const window = positiveInteger('window', values.window ?? String(DEFAULTS.window));
  const batch = positiveInteger('batch', values.batch ?? String(DEFAULTS.batch));
  if (batch > window) throw new OptionError(`--batch (${batch}) cannot be larger than --window (${window})`);

  return Object.freeze({
    transports,
    mode,
    slowSubscribers,
    slowRate: positiveInteger('slow-rate', values['slow-rate'] ?? String(DEFAULTS.slowRate)),
    subscribers,
    messages: positiveInteger('messages', values.messages ?? String(DEFAULTS.messages)),
    bodyBytes: positiveInteger('size', values.size ?? String(DEFAULTS.size), TIMESTAMP_DIGITS),
    window,
    batch,
    sampleEvery: positiveInteger('sample-every', values['sample-every'] ?? String(DEFAULTS.sampleEvery)),
    connectBatch: positiveInteger('connect-batch', values['connect-batch'] ?? String(DEFAULTS.connectBatch)),
    timeoutSeconds: positiveInteger('timeout', values.timeout ?? String(DEFAULTS.timeout)),
    idleSeconds: positiveInteger('idle', values.idle ?? String(DEFAULTS.idle)),
    destination,
    wsPath,
    login: values.login,
    passcode: values.passcode,
    target,
    label: values.label,
    brokerEnv,
    brokerNodeArgs: values['broker-node-arg'] ?? [],
    mainPath: values.main,
    brokerPid: values['broker-pid'] === undefined ? undefined : positiveInteger('broker-pid', values['broker-pid']),
    isPinningExternal: values['pin-external'] ?? false,
    isPinning: !values['no-pin'],
    isQuiet: values.quiet ?? false,
  });
}
