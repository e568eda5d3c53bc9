// Liveness, readiness and Prometheus metrics: outside /api, no credential (what an
// orchestrator's probes and a Prometheus scrape can send), except /metrics when METRICS_TOKEN
// or METRICS_AUTH guards it (api.ts). They reveal counts and the deepest queues' names, never
// ids or tokens.

import type { FastifyInstance } from 'fastify';
import type { HttpApiDeps } from '../api';

export async function healthRoutes(app: FastifyInstance, deps: HttpApiDeps): Promise<void> {
  app.get('/healthz', {
    schema: {
      summary: 'The process is alive',
      tags: ['health'],
      response: { 200: { type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ok'] } } } },
    },
    handler: async () => ({ status: 'ok' }),
  });

  const readiness = { type: 'object', required: ['status'], properties: { status: { type: 'string' }, reason: { type: 'string' } } } as const;
  app.get('/readyz', {
    schema: {
      summary: 'Ready for clients: the STOMP listeners are up and, with Redis, Redis is reachable',
      tags: ['health'],
      response: { 200: readiness, 503: readiness },
    },
    handler: async (_request, reply) => {
      const verdict = deps.readiness();
      if (verdict.isReady) return { status: 'ready' };
      return reply.code(503).send({ status: 'not-ready', reason: verdict.reason });
    },
  });

  app.get('/metrics', {
    schema: {
      summary: 'Prometheus metrics (text exposition format)',
      tags: ['health'],
      response: { 200: { description: 'text/plain; version=0.0.4', type: 'string' } },
    },
    handler: async (_request, reply) => {
      const text = await deps.metrics.metrics();
      return reply.type(deps.metrics.contentType).send(text);
    },
  });
}
