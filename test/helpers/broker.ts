// Starts a real stompd in this process on ephemeral ports, silent unless TEST_LOG_LEVEL says otherwise.

import { loadConfig } from '../../src/config';
import type { Config } from '../../src/config';
import { startServer } from '../../src/server';
import type { RunningServer, ServerOptions } from '../../src/server';

/** `overrides` are environment variables; `patch` sets typed fields past the env checks (tiny limits). */
export async function startBroker(overrides: Record<string, string> = {}, options: ServerOptions = {}, patch: Partial<Config> = {}): Promise<RunningServer> {
  const config = loadConfig({
    HOST: '127.0.0.1',
    STOMP_PORT: '0',
    WS_PORT: '0',
    HTTP_PORT: 'off', // tests that drive the HTTP API pass HTTP_PORT: '0'
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...overrides,
  });
  return startServer({ ...config, ...patch }, options);
}
