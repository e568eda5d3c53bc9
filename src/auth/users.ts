// AUTH=users: CONNECT `login` and `passcode` checked against a users file (USERS_FILE, JSON):
//   { "users": [ { "login": "alice", "passwordHash": "scrypt$16384$8$1$<salt>$<hash>", "roles": ["AGENT"] } ] }
// Passwords are kept only as scrypt hashes that carry their own parameters and salt
// (`stompd hash-password` makes an entry), so stronger parameters can be rolled out entry by entry.
// The check runs the asynchronous scrypt (on libuv's thread pool: the event loop keeps
// serving other sessions meanwhile) and compares in constant time. An unknown login is
// derived against a dummy hash with the parameters of the file's first entry, so how long a
// refusal takes does not tell which logins exist. The file is re-read on SIGHUP (main.ts);
// a bad file then leaves the current table in place.

import fs from 'node:fs';
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { headerValue } from '../codec';
import { ConfigError } from '../config';
import { addressKey } from './address-key';
import { CheckSlots } from './check-slots';
import { StompError } from '../session/errors';
import type { ConnectContext, Interceptor, Principal } from '../session/interceptor';

export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  N: number;
  /** Block size. */
  r: number;
  /** Parallelism. */
  p: number;
}

/** About 50 ms and 16 MiB per check on a current CPU: OWASP's minimum for scrypt. */
export const DEFAULT_SCRYPT_PARAMS: Readonly<ScryptParams> = Object.freeze({ N: 16384, r: 8, p: 1 });

const SALT_BYTES = 16;
const HASH_BYTES = 32;
const BASE64 = '[A-Za-z0-9+/]+={0,2}';
const HASH_FORMAT = new RegExp(`^scrypt\\$(\\d+)\\$(\\d+)\\$(\\d+)\\$(${BASE64})\\$(${BASE64})$`);

export interface PasswordHash extends ScryptParams {
  salt: Buffer;
  hash: Buffer;
}

/** scrypt runs on libuv's thread pool (4 threads by default). */
const MAX_CONCURRENT_CHECKS = 4;
const MAX_WAITING_CHECKS = 256;
/** One client's share of the waiting room (~0.4 s of the pool's work at 50 ms a check): more from it are refused at once. */
const MAX_WAITING_CHECKS_PER_CLIENT = 32;

function derive(password: string, params: ScryptParams, salt: Buffer, keyBytes: number): Promise<Buffer> {
  // scrypt needs 128 · N · r bytes; Node refuses anything over maxmem (32 MiB by default).
  const maxmem = 256 * params.N * params.r;
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyBytes, { N: params.N, r: params.r, p: params.p, maxmem }, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

/** `scrypt$N$r$p$<salt>$<hash>` (base64), with a fresh random salt. */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT_PARAMS): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, params, salt, HASH_BYTES);
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** The parts of a stored hash, or why it is not one (bounds keep a check from costing minutes or gigabytes). */
export function parsePasswordHash(text: string): PasswordHash | string {
  const match = HASH_FORMAT.exec(text);
  if (match === null) return 'expected "scrypt$N$r$p$<salt>$<hash>" (make one with `stompd hash-password`); plain passwords are not accepted';
  const [N, r, p] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const salt = Buffer.from(match[4]!, 'base64');
  const hash = Buffer.from(match[5]!, 'base64');
  if (N < 1024 || N > 1048576 || (N & (N - 1)) !== 0) return `expected N to be a power of two from 1024 to 1048576, got ${N}`;
  if (r < 1 || r > 32) return `expected r from 1 to 32, got ${r}`;
  if (p < 1 || p > 16) return `expected p from 1 to 16, got ${p}`;
  if (salt.length < 8) return 'expected a salt of at least 8 bytes';
  if (hash.length < 16 || hash.length > 64) return 'expected a hash of 16 to 64 bytes';
  return { N, r, p, salt, hash };
}

interface UserEntry {
  login: string;
  password: PasswordHash;
  roles: readonly string[];
}

export interface UserTable {
  readonly byLogin: ReadonlyMap<string, UserEntry>;
  /** What an unknown login is checked against: same cost, never a match. */
  readonly dummy: PasswordHash;
}

export function parseUsers(text: string, source: string): UserTable {
  const fail = (why: string): never => {
    throw new ConfigError('USERS_FILE', source, why);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return fail(`expected JSON: ${(error as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || !Array.isArray((raw as { users?: unknown }).users)) return fail('expected an object with a "users" array');
  const byLogin = new Map<string, UserEntry>();
  (raw as { users: unknown[] }).users.forEach((item, index) => {
    const where = `users[${index}]`;
    if (typeof item !== 'object' || item === null) return fail(`expected ${where} to be an object`);
    const entry = item as { login?: unknown; passwordHash?: unknown; roles?: unknown };
    if (typeof entry.login !== 'string' || entry.login === '') return fail(`expected ${where}.login to be a non-empty string`);
    if (byLogin.has(entry.login)) return fail(`${where}: login ${JSON.stringify(entry.login)} appears twice`);
    if (typeof entry.passwordHash !== 'string') return fail(`expected ${where}.passwordHash (${entry.login}) to be a string`);
    const password = parsePasswordHash(entry.passwordHash);
    if (typeof password === 'string') return fail(`${where}.passwordHash (${entry.login}): ${password}`);
    const roles = entry.roles ?? [];
    if (!Array.isArray(roles) || !roles.every((role): role is string => typeof role === 'string')) return fail(`expected ${where}.roles (${entry.login}) to be an array of strings`);
    byLogin.set(entry.login, { login: entry.login, password, roles: Object.freeze([...roles]) });
    return undefined;
  });
  const first = byLogin.values().next().value;
  const params = first?.password ?? DEFAULT_SCRYPT_PARAMS;
  const dummy: PasswordHash = { N: params.N, r: params.r, p: params.p, salt: randomBytes(SALT_BYTES), hash: randomBytes(first?.password.hash.length ?? HASH_BYTES) };
  return { byLogin, dummy };
}

function readError(path: string, error: unknown): ConfigError {
  return new ConfigError('USERS_FILE', path, `expected a readable file: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
}

/** The users of USERS_FILE; read at once (a bad file stops the start), replaced by reload(). */
export class UsersFile {
  readonly path: string;
  private table: UserTable;

  constructor(path: string) {
    this.path = path;
    let text: string;
    try {
      text = fs.readFileSync(path, 'utf8');
    } catch (error) {
      throw readError(path, error);
    }
    this.table = parseUsers(text, path);
  }

  get size(): number {
    return this.table.byLogin.size;
  }

  /**
   * The file's permission bits (e.g. 0o644) when users other than its owner may read or write
   * it, else undefined: the hashes are slow to crack, not impossible, and a writable file lets
   * anyone add an admin. Not judged on Windows (no such bits).
   */
  exposedMode(): number | undefined {
    if (process.platform === 'win32') return undefined;
    try {
      const mode = fs.statSync(this.path).mode & 0o777;
      return (mode & 0o077) !== 0 ? mode : undefined;
    } catch {
      return undefined; // read a moment ago: gone meanwhile is the next reload's to report
    }
  }

  /** Re-read the file; on any error (ConfigError) the current users stay. Resolves to the new count. */
  async reload(): Promise<number> {
    let text: string;
    try {
      text = await fs.promises.readFile(this.path, 'utf8');
    } catch (error) {
      throw readError(this.path, error);
    }
    this.table = parseUsers(text, this.path);
    return this.table.byLogin.size;
  }

  /**
   * The principal `login` stands for if `passcode` is its password; StompError UNAUTHENTICATED
   * otherwise. An unknown login costs the same scrypt as a known one (a dummy hash with the
   * file's parameters: keep one set of parameters for every entry, as hash-password does).
   * At most MAX_CONCURRENT_CHECKS run at once (each takes ~16 MiB and a thread-pool thread for
   * ~50 ms); up to MAX_WAITING_CHECKS wait their turn, round robin between clients (`client`:
   * an addressKey), each with at most MAX_WAITING_CHECKS_PER_CLIENT waiting; more are refused
   * with SERVER_BUSY.
   */
  async verify(login: string, passcode: string, client = 'local'): Promise<Principal> {
    const { byLogin, dummy } = this.table;
    const entry = byLogin.get(login);
    const expected = entry?.password ?? dummy;
    await this.checks.acquire(client);
    let derived: Buffer;
    try {
      derived = await derive(passcode, expected, expected.salt, expected.hash.length);
    } finally {
      this.checks.release();
    }
    const isMatch = timingSafeEqual(derived, expected.hash);
    // One message for both: the client must not learn which logins exist. The log names the
    // user only when the login is one (an unknown "login" may be a password typed in the wrong field).
    if (entry === undefined || !isMatch) throw new StompError('UNAUTHENTICATED', 'wrong login or passcode', [], entry === undefined ? {} : { userId: login });
    return { userId: entry.login, roles: entry.roles, isAnonymous: false };
  }

  private readonly checks = new CheckSlots(MAX_CONCURRENT_CHECKS, MAX_WAITING_CHECKS, MAX_WAITING_CHECKS_PER_CLIENT);
}

/** The authenticating link of AUTH=users. */
export function passwordAuthenticator(users: UsersFile): Interceptor {
  return {
    name: 'users',
    async onConnect(ctx: ConnectContext): Promise<void> {
      const login = headerValue(ctx.frame.headers, 'login');
      if (login === undefined || login === '') throw new StompError('UNAUTHENTICATED', 'no login: send login and passcode headers on CONNECT');
      ctx.principal = await users.verify(login, headerValue(ctx.frame.headers, 'passcode') ?? '', addressKey(ctx.session.peer.remoteAddress));
    },
  };
}
