// A real HTTP backend for the hook tests: Fastify on an ephemeral port, recording every call
// (body, headers, raw bytes) and answering with what the test set per hook. Nothing mocked
// on stompd's side: it talks HTTP to this server as it would to an application.

import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply } from 'fastify';

export interface RecordedCall {
  hook: string;
  body: Record<string, unknown>;
  raw: string;
  headers: Record<string, string | string[] | undefined>;
  /** The TCP port stompd's side of the connection used: calls sharing one shared a connection. */
  remotePort: number | undefined;
}

/** A hook answered by code: it gets the call's JSON and the reply, and returns what to send. */
export type HookHandler = (body: Record<string, unknown>, reply: FastifyReply) => unknown;
/** What a hook answers: JSON (200), or a HookHandler (any function is taken for one). */
export type HookAnswer = unknown;

export interface TestBackend {
  readonly url: string;
  readonly port: number;
  readonly calls: RecordedCall[];
  callsOf(hook: string): RecordedCall[];
  /** Answer `hook` with `answer` from now on (a function gets the body and the reply). */
  on(hook: string, answer: HookAnswer): void;
  close(): Promise<void>;
}

export async function startTestBackend(path = '/stomp', port = 0): Promise<TestBackend> {
  const app: FastifyInstance = Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 });
  const calls: RecordedCall[] = [];
  const answers = new Map<string, HookAnswer>();
  // The raw text, to check the signature over exactly the bytes sent.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, text, done) => {
    try {
      done(null, { raw: text as string, json: JSON.parse(text as string) as unknown });
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  app.post(`${path}/:hook`, async (request, reply) => {
    const { hook } = request.params as { hook: string };
    const parsed = request.body as { raw: string; json: Record<string, unknown> };
    calls.push({ hook, body: parsed.json, raw: parsed.raw, headers: request.headers, remotePort: request.socket.remotePort });
    const answer = answers.get(hook);
    if (typeof answer === 'function') return (answer as HookHandler)(parsed.json, reply);
    if (answer === undefined) return reply.code(204).send();
    return answer;
  });
  await app.listen({ host: '127.0.0.1', port });
  const bound = (app.server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${bound}${path}`,
    port: bound,
    calls,
    callsOf: (hook) => calls.filter((c) => c.hook === hook),
    on: (hook, answer) => answers.set(hook, answer),
    close: () => app.close(),
  };
}
