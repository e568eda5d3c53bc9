#!/usr/bin/env node
// Command-line entry (`stompd`, `npm start`): environment → Config → server, with signal handling.
// A start that cannot succeed (a bad configuration value, a PEM key or rules/users file found
// bad while building the server, a port in use) stops with one line on stderr naming the
// cause and the variable, exit code 1. `--help` is generated from config.ts's SETTINGS table.

import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { ConfigError, SETTING_DESCRIPTIONS, loadConfig } from './config';
import { DEFAULT_SCRYPT_PARAMS, hashPassword } from './auth/users';
import { startServer } from './server';

function refuseToStart(error: unknown): never {
  const line = error instanceof ConfigError ? `invalid configuration: ${error.message}` : error instanceof Error ? error.message : String(error);
  process.stderr.write(`stompd: ${line}\n`);
  process.exit(1);
}

/** The version of the package this file was built from (dist/src/main.js → ../../package.json). */
function version(): string {
  const manifest = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../package.json'), 'utf8')) as { version: string };
  return manifest.version;
}

function help(): string {
  const width = Math.max(...SETTING_DESCRIPTIONS.map((s) => s.variable.length));
  const rows = SETTING_DESCRIPTIONS.map(({ variable, fallback, expected }) => `  ${variable.padEnd(width)}  default: ${fallback === '' ? '(none)' : fallback}\n  ${' '.repeat(width)}  ${expected}`);
  return [
    `stompd ${version()}: a STOMP 1.2 broker over TCP and WebSocket`,
    '',
    'Usage:',
    '  stompd                        run the broker, configured by the environment variables below',
    '  stompd hash-password [--login <login>] [--roles <A,B>] [<password>]',
    '                                print a USERS_FILE entry (with --login) or the scrypt hash of',
    '                                the password, read from stdin when not given as an argument',
    '  stompd --help | --version',
    '',
    'Environment variables:',
    ...rows,
    '',
    'SIGINT or SIGTERM stops gracefully; SIGHUP re-reads USERS_FILE (AUTH=users) and the TLS files.',
    '',
  ].join('\n');
}

/** The first line of stdin (a password piped in or typed), without its line break. */
function readLineFromStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const done = (): void => {
      process.stdin.pause();
      resolve(text.split(/\r?\n/)[0] ?? '');
    };
    if (process.stdin.isTTY) process.stderr.write('password: ');
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n')) done();
    });
    process.stdin.once('end', done);
    process.stdin.once('error', reject);
  });
}

async function hashPasswordCommand(args: string[]): Promise<void> {
  let login: string | undefined;
  let roles: string[] = [];
  let password: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if ((arg === '--login' || arg === '--roles') && i + 1 >= args.length) throw new Error(`hash-password: ${arg} needs a value (see stompd --help)`);
    if (arg === '--login') login = args[++i];
    else if (arg === '--roles')
      roles = args[++i]!.split(',')
        .map((r) => r.trim())
        .filter((r) => r !== '');
    else if (arg.startsWith('--')) throw new Error(`hash-password: unknown option ${arg} (see stompd --help)`);
    else if (password === undefined) password = arg;
    else throw new Error('hash-password: one password at most (see stompd --help)');
  }
  password ??= await readLineFromStdin();
  if (password === '') throw new Error('hash-password: empty password');
  const passwordHash = await hashPassword(password, DEFAULT_SCRYPT_PARAMS);
  process.stdout.write(login === undefined ? `${passwordHash}\n` : `${JSON.stringify({ login, passwordHash, roles })}\n`);
}

async function runBroker(): Promise<void> {
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
  // Only where there is something to re-read: elsewhere SIGHUP keeps its default (exit).
  if (config.authMode === 'users' || config.tls !== undefined) {
    process.on('SIGHUP', () => {
      if (config.tls !== undefined) {
        try {
          server.reloadTls();
        } catch (error) {
          server.logger.error({ error: error instanceof Error ? error.message : String(error) }, 'TLS certificate not reloaded: keeping the previous one');
        }
      }
      if (config.authMode !== 'users') return;
      server.reloadUsers().then(
        (users) => server.logger.info({ usersFile: config.usersFile, users }, 'users file reloaded'),
        (error: unknown) => server.logger.error({ usersFile: config.usersFile, error: error instanceof Error ? error.message : String(error) }, 'users file not reloaded: keeping the previous users'),
      );
    });
  }
}

async function main(args: string[]): Promise<void> {
  const [command, ...rest] = args;
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(help());
    return;
  }
  if (command === '--version' || command === '-v') {
    process.stdout.write(`${version()}\n`);
    return;
  }
  if (command === 'hash-password') {
    await hashPasswordCommand(rest);
    return;
  }
  if (command !== undefined) throw new Error(`unknown argument ${JSON.stringify(command)} (see stompd --help)`);
  await runBroker();
}

main(process.argv.slice(2)).catch(refuseToStart);
