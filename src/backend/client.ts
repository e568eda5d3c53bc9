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
import type { Dispatcher } from 'undici';
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

  /**
   * One POST through the pool's own dispatch (no AbortController, no body stream per call):
   * settles with the parsed answer, or rejects with BackendUnavailable. The deadline covers
   * waiting in the pool, connecting, the answer and its body; a call still waiting for a
   * socket when it passes is aborted the moment the pool hands it one. `done` is told once,
   * when the pool lets go of the request (answered, failed or aborted): until then the call
   * keeps its in-flight slot, so the pool never holds more than BACKEND_MAX_IN_FLIGHT requests
   * (calls that timed out in its queue would otherwise pile up there while connects hang).
   */
  const post = (hook: HookName, body: string, done: () => void): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (options.secret !== undefined) headers['x-stompd-signature'] = signature(options.secret, body);
      let isSettled = false;
      let isDone = false;
      let controller: Dispatcher.DispatchController | undefined;
      let statusCode = 0;
      let chunks: Buffer[] = [];
      let bytes = 0;
      const settle = (error: BackendUnavailable | undefined, answer?: unknown): void => {
        if (isSettled) return;
        isSettled = true;
        clearTimeout(timer);
        chunks = [];
        if (error === undefined) resolve(answer);
        else {
          reject(error);
          // The socket carries nothing more for this call: undici closes it and opens another.
          if (controller !== undefined && !controller.aborted) controller.abort(error);
        }
      };
      const finish = (): void => {
        if (isDone) return;
        isDone = true;
        done();
      };
      const timer = setTimeout(() => settle(new BackendUnavailable('timeout', `the backend did not answer /${hook} within ${options.timeoutMs} ms`)), options.timeoutMs);
      const tooLarge = (): BackendUnavailable => new BackendUnavailable('too-large', `the /${hook} answer is over ${options.maxResponseBytes} bytes (BACKEND_MAX_RESPONSE_BYTES)`);
      const failedStatus = (): BackendUnavailable => new BackendUnavailable('status', `the backend answered /${hook} with HTTP ${statusCode}`);
      pool.dispatch(
        { path: `${basePath}/${hook}`, method: 'POST', headers, body },
        {
          onRequestStart(started) {
            controller = started;
            if (isSettled) started.abort(new BackendUnavailable('timeout', 'deadline passed while waiting for a connection'));
          },
          onResponseStart(_controller, status, responseHeaders) {
            statusCode = status;
            const declared = responseHeaders['content-length'];
            // An answer that says up front it is too large is refused before a byte of it is read.
            if (status >= 200 && status <= 299 && typeof declared === 'string' && Number(declared) > options.maxResponseBytes) settle(tooLarge());
          },
          onResponseData(_controller, chunk) {
            if (isSettled || statusCode === 204) return;
            const isOk = statusCode >= 200 && statusCode <= 299;
            bytes += chunk.length;
            // Past the cap the answer is cut off whatever its status: an error page is not read until the deadline either.
            if (bytes > options.maxResponseBytes) settle(isOk ? tooLarge() : failedStatus());
            else if (isOk) chunks.push(chunk);
          },
          onResponseEnd() {
            if (statusCode === 204) settle(undefined, undefined);
            else if (statusCode < 200 || statusCode > 299) settle(failedStatus());
            else if (bytes === 0) settle(undefined, undefined);
            else {
              const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, bytes).toString('utf8');
              try {
                settle(undefined, JSON.parse(text) as unknown);
              } catch {
                settle(new BackendUnavailable('invalid', `the /${hook} answer is not JSON`));
              }
            }
            finish();
          },
          onResponseError(_controller, error) {
            settle(unavailable(hook, error, options.timeoutMs));
            finish();
          },
        },
      );
    });

  return {
    stats,
    async call(hook, payload) {
      const waited = acquire();
      if (waited !== undefined) await waited;
      const startedAt = process.hrtime.bigint();
      let isPosted = false; // from then on the pool's end of the request gives the slot back
      try {
        const body = JSON.stringify(payload);
        isPosted = true;
        const answer = await post(hook, body, release);
        count(hook, 'ok');
        return answer;
      } catch (error) {
        const failure = unavailable(hook, error, options.timeoutMs);
        count(hook, failure.result);
        throw failure;
      } finally {
        stats.observeLatency?.(hook, Number(process.hrtime.bigint() - startedAt) / 1e9);
        if (!isPosted) release();
      }
    },
    async close() {
      await pool.close().catch(() => pool.destroy());
    },
  };
}

function unavailable(hook: HookName, error: unknown, timeoutMs: number): BackendUnavailable {
  if (error instanceof BackendUnavailable) return error;
  if (error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.BodyTimeoutError || error instanceof undiciErrors.ConnectTimeoutError) {
    return new BackendUnavailable('timeout', `the backend did not answer /${hook} within ${timeoutMs} ms`);
  }
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EHOSTUNREACH' || code === 'ENOTFOUND' || code === 'UND_ERR_SOCKET') {
    return new BackendUnavailable('refused', `the backend is unreachable for /${hook} (${code})`);
  }
  return new BackendUnavailable('error', `the /${hook} call failed: ${error instanceof Error ? error.message : String(error)}`);
}
