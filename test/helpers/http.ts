// The HTTP API as a test drives it: real requests with global fetch, JSON in and out, and a
// strict reader of the Prometheus text format (every line must parse).

import assert from 'node:assert/strict';

/** `body` is the parsed JSON (undefined when the text is not JSON), of the shape the caller names (api-shapes.ts). */
export interface ApiResponse<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export class ApiClient {
  readonly base: string;
  authorization: string | undefined;

  constructor(port: number, token?: string) {
    this.base = `http://127.0.0.1:${port}`;
    this.authorization = token === undefined ? undefined : `Bearer ${token}`;
  }

  async request<T = unknown>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse<T>> {
    const response = await fetch(this.base + path, {
      method,
      headers: {
        ...(this.authorization !== undefined ? { authorization: this.authorization } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await response.text();
    let parsed: unknown = undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: response.status, headers: response.headers, body: parsed as T, text };
  }

  get<T = unknown>(path: string, headers?: Record<string, string>): Promise<ApiResponse<T>> {
    return this.request<T>('GET', path, undefined, headers);
  }

  post<T = unknown>(path: string, body?: unknown): Promise<ApiResponse<T>> {
    return this.request<T>('POST', path, body);
  }

  delete<T = unknown>(path: string): Promise<ApiResponse<T>> {
    return this.request<T>('DELETE', path);
  }

  /** GET that must answer 200; returns the JSON body, of the shape the caller names. */
  async ok<T>(path: string): Promise<T> {
    const response = await this.get<T>(path);
    assert.equal(response.status, 200, `${path}: ${response.text}`);
    return response.body;
  }
}

/** Poll `read` until `isDone` holds (the registry is updated asynchronously on close). */
export async function eventually<T>(read: () => Promise<T>, isDone: (value: T) => boolean, timeoutMs = 5000, what = 'a condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (isDone(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
const SAMPLE = new RegExp(`^(${NAME})(\\{(?:${LABEL}(?:,${LABEL})*)?,?\\})? (-?(?:\\d+(?:\\.\\d+)?(?:e[+-]?\\d+)?|[Nn]a[Nn]|\\+Inf|-Inf))( -?\\d+)?$`);
const HELP = new RegExp(`^# HELP (${NAME}) .*$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);

/**
 * Parse Prometheus text exposition format 0.0.4; throws on any line that is not a valid
 * comment or sample, or a sample of a family without TYPE. Returns `name{labels}` → value.
 */
export function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = TYPE.exec(line);
    if (type !== null) {
      typed.set(type[1]!, type[2]!);
      continue;
    }
    if (HELP.test(line)) continue;
    const sample = SAMPLE.exec(line);
    assert.ok(sample !== null, `not Prometheus text: ${JSON.stringify(line)}`);
    const name = sample[1]!;
    const family = [...typed.keys()].find((f) => name === f || name === `${f}_bucket` || name === `${f}_sum` || name === `${f}_count` || name === `${f}_total`);
    assert.ok(family !== undefined, `sample ${name} has no # TYPE line`);
    samples.set(name + (sample[2] ?? ''), Number(sample[3]));
  }
  return samples;
}
