// Command-line entry: environment → Config → server, with signal handling.
// A bad configuration value stops the start with one line naming the variable.

import { ConfigError, loadConfig } from './config';
import { startServer } from './server';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`stompd: invalid configuration: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const server = await startServer(config);

  let isStopping = false;
  const stop = (signal: string): void => {
    if (isStopping) return;
    isStopping = true;
    server.logger.info({ signal }, 'shutting down');
    server.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        server.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((error: unknown) => {
  process.stderr.write(`stompd: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
