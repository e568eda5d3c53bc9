// The HTTP client of the hooks: one keep-alive undici Pool towards BACKEND_URL, every call a
// signed JSON POST with a deadline. Loaded only when BACKEND_URL is set.
//
// Invariants: a call never takes longer than BACKEND_TIMEOUT_MS (connect, wait for the
// answer and read it, together); an answer over BACKEND_MAX_RESPONSE_BYTES is cut off and
// refused; at most BACKEND_MAX_IN_FLIGHT calls are under way, later ones wait in order (their
// sessions are not read meanwhile: backpressure, not a growing queue). Every call is counted
// by hook and result, and timed.

import { createHmac, randomUUID } from 'node:crypto';
import { Pool, errors as undiciErrors } from 'undici';
import type { HookName } from './contract';

export type CallResult = 'ok' | 'timeout' | 'refused' | 'status' | 'invalid' | 'too-large' | 'error';

/** The backend could not give an answer that counts (the call is counted under `result`). */
export class BackendUnavailable extends Error {
  readonly result: CallResult;

  constructor(result: CallResult, message: string) {
    super(message);
    this.name = 'BackendUnavailable';
    this.result = result;
  }
}

export interface BackendClientOptions {
  url: string;
  timeoutMs: number;
  secret: string | undefined;
  maxResponseBytes: number;
  maxInFlight: number;
  connections: number;
}

/** Calls by hook and result, and the latency observer the metrics attach. */
export interface BackendCallStats {
  calls: Record<string, Record<string, number>>;
  /** Set by the metrics: told every call's duration. */
  observeLatency: ((hook: string, seconds: number) => void) | undefined;
}

export interface HookCaller {
  /** POST `payload` to the hook; the parsed JSON answer, or undefined for 204 (nothing to do). */
  call(hook: HookName, payload: object): Promise<unknown>;
  readonly stats: BackendCallStats;
  close(): Promise<void>;
}

/** The id every call carries: unique, so a backend can drop a call it has seen. */
export function callId(): string {
  return randomUUID();
}

export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export function createBackendClient(options: BackendClientOptions): HookCaller {
  const base = new URL(options.url);
  const pool = new Pool(base.origin, {
    connections: options.connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    connectTimeout: options.timeoutMs,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  });
  const basePath = base.pathname.replace(/\/+$/, '');
  const stats: BackendCallStats = { calls: {}, observeLatency: undefined };
  let inFlight = 0;
  const waiting: (() => void)[] = [];

  const count = (hook: HookName, result: CallResult): void => {
    const byResult = (stats.calls[hook] ??= {});
    byResult[result] = (byResult[result] ?? 0) + 1;
  };

  const acquire = (): Promise<void> | undefined => {
    if (inFlight < options.maxInFlight) {
      inFlight++;
      return undefined;
    }
    return new Promise((resolve) => waiting.push(resolve));
  };
  const release = (): void => {
    const next = waiting.shift();
    if (next !== undefined)
      next(); // the slot passes on: inFlight unchanged
    else inFlight--;
  };

  const post = async (hook: HookName, body: string, signal: AbortSignal): Promise<unknown> => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (options.secret !== undefined) headers['x-stompd-signature'] = signature(options.secret, body);
    const response = await pool.request({ path: `${basePath}/${hook}`, method: 'POST', headers, body, signal });
    if (response.statusCode === 204) {
      await response.body.dump();
      return undefined;
    }
    if (response.statusCode < 200 || response.statusCode > 299) {
      await response.body.dump();
      throw new BackendUnavailable('status', `the backend answered /${hook} with HTTP ${response.statusCode}`);
    }
    const tooLarge = (): BackendUnavailable => new BackendUnavailable('too-large', `the /${hook} answer is over ${options.maxResponseBytes} bytes (BACKEND_MAX_RESPONSE_BYTES)`);
    const declaredBytes = Number(response.headers['content-length']);
    if (response.headers['content-length'] !== undefined && Number.isInteger(declaredBytes)) {
      // The usual case: the length is known up front, so the body is read whole (undici caps it at that length).
      if (declaredBytes > options.maxResponseBytes) {
        // Destroyed unread: the abort it emits must not become an uncaught error.
        response.body.on('error', () => undefined).destroy();
        throw tooLarge();
      }
      if (declaredBytes === 0) {
        await response.body.dump();
        return undefined;
      }
      return parseJson(hook, await response.body.text());
    }
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of response.body) {
      bytes += (chunk as Buffer).length;
      if (bytes > options.maxResponseBytes) {
        response.body.destroy();
        throw tooLarge();
      }
      chunks.push(chunk as Buffer);
    }
    if (bytes === 0) return undefined;
    return parseJson(hook, Buffer.concat(chunks, bytes).toString('utf8'));
  };

  return {
    stats,
    async call(hook, payload) {
      const waited = acquire();
      if (waited !== undefined) await waited;
      const startedAt = process.hrtime.bigint();
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), options.timeoutMs);
      try {
        const answer = await post(hook, JSON.stringify(payload), controller.signal);
        count(hook, 'ok');
        return answer;
      } catch (error) {
        const failure = unavailable(hook, error, controller.signal.aborted, options.timeoutMs);
        count(hook, failure.result);
        throw failure;
      } finally {
        clearTimeout(timer);
        stats.observeLatency?.(hook, Number(process.hrtime.bigint() - startedAt) / 1e9);
        release();
      }
    },
    async close() {
      await pool.close().catch(() => pool.destroy());
    },
  };
}

function parseJson(hook: HookName, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BackendUnavailable('invalid', `the /${hook} answer is not JSON`);
  }
}

function unavailable(hook: HookName, error: unknown, isAborted: boolean, timeoutMs: number): BackendUnavailable {
  if (error instanceof BackendUnavailable) return error;
  if (isAborted || error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.BodyTimeoutError || error instanceof undiciErrors.ConnectTimeoutError) {
    return new BackendUnavailable('timeout', `the backend did not answer /${hook} within ${timeoutMs} ms`);
  }
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EHOSTUNREACH' || code === 'ENOTFOUND' || code === 'UND_ERR_SOCKET') {
    return new BackendUnavailable('refused', `the backend is unreachable for /${hook} (${code})`);
  }
  return new BackendUnavailable('error', `the /${hook} call failed: ${error instanceof Error ? error.message : String(error)}`);
}
