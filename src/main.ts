// Command-line entry: environment → Config → server, with signal handling.
// A bad configuration value (read from the environment, or found while building the server:
// a PEM key, a rules file) stops the start with one line naming the variable.

import pino from 'pino';
import { ConfigError, loadConfig } from './config';
import { startServer } from './server';

function refuseToStart(error: unknown): never {
  const line = error instanceof ConfigError ? `invalid configuration: ${error.message}` : error instanceof Error ? error.message : String(error);
  process.stderr.write(`stompd: ${line}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    refuseToStart(error);
  }
  // Asynchronous log writes: a slow stdout pipe must not stall the event loop. Flushed on exit.
  const destination = pino.destination({ dest: 1, sync: false });
  const exit = (code: number): never => {
    destination.flushSync();
    process.exit(code);
  };
  const server = await startServer(config, { logger: pino({ level: config.logLevel }, destination) }).catch((error: unknown) => {
    destination.flushSync();
    return refuseToStart(error);
  });

  let isStopping = false;
  const stop = (signal: string): void => {
    if (isStopping) return;
    isStopping = true;
    server.logger.info({ signal }, 'shutting down');
    // stop() destroys what is left at SHUTDOWN_TIMEOUT_MS; should it still not return, the
    // process goes anyway: a supervisor waiting on us must not wait forever.
    setTimeout(() => {
      server.logger.error('shutdown did not finish in time: exiting');
      exit(1);
    }, config.shutdownTimeoutMs + 2000).unref();
    server.stop().then(
      () => exit(0),
      (error: unknown) => {
        server.logger.error({ err: error }, 'shutdown failed');
        exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch(refuseToStart);
