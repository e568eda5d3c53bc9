// The browser pages the sidecar serves: the dashboard (/dashboard), and the chat demo (/demo)
// when DEMO=1. They ship in the package (web/, and the @stomp/stompjs browser bundle that the
// build copies to dist/vendor/), so nothing is fetched from a CDN and the user builds nothing.
// The pages hold no data: the dashboard reads /api with the credential its user types, so
// they need no credential themselves. Only the files listed here are served.

import fs from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { HttpApiDeps } from '../api';

/** dist/src/http/routes → the package root (web/ and dist/vendor/ sit there). */
const PACKAGE_ROOT = path.resolve(__dirname, '../../../..');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/** url → file under the package root. */
const DASHBOARD_FILES: Record<string, string> = {
  '/dashboard': 'web/dashboard/index.html',
  '/dashboard/dashboard.js': 'web/dashboard/dashboard.js',
  '/dashboard/chart.js': 'web/dashboard/chart.js',
  '/dashboard/style.css': 'web/style.css',
};

const DEMO_FILES: Record<string, string> = {
  '/demo': 'web/demo/index.html',
  '/demo/demo.js': 'web/demo/demo.js',
  '/demo/style.css': 'web/style.css',
  '/demo/stomp.umd.min.js': 'dist/vendor/stomp.umd.min.js',
};

/** The routes these pages register: the API guard lets them through without a credential. */
export const PAGE_ROUTES: readonly string[] = ['/', ...Object.keys(DASHBOARD_FILES), '/dashboard/', ...Object.keys(DEMO_FILES), '/demo/', '/demo/config.json'];

// Scripts and styles only from here; the demo's WebSocket goes to the STOMP port.
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

export interface PagesOptions {
  /** DEMO=1: where the demo's browser client connects. */
  demo: { wsPort: number | undefined; wsPath: string; isOpenLogin: boolean } | undefined;
}

export async function pageRoutes(app: FastifyInstance, deps: HttpApiDeps): Promise<void> {
  const cache = new Map<string, Buffer>();
  const serve = async (reply: FastifyReply, file: string): Promise<FastifyReply> => {
    let content = cache.get(file);
    if (content === undefined) {
      try {
        content = await fs.readFile(path.join(PACKAGE_ROOT, file));
      } catch {
        return reply.code(500).send({ statusCode: 500, error: 'Internal Server Error', message: `${file} is missing from the package: run npm run build` });
      }
      cache.set(file, content);
    }
    return reply
      .headers(SECURITY_HEADERS)
      .type(TYPES[path.extname(file)] ?? 'application/octet-stream')
      .send(content);
  };
  const hide = { schema: { hide: true } };
  const { demo } = deps.pages;

  app.get('/', hide, async (_request, reply) => reply.redirect(demo !== undefined ? '/demo' : '/dashboard'));
  app.get('/dashboard/', hide, async (_request, reply) => reply.redirect('/dashboard'));
  for (const [url, file] of Object.entries(DASHBOARD_FILES)) app.get(url, hide, async (_request, reply) => serve(reply, file));
  if (demo === undefined) return;
  app.get('/demo/', hide, async (_request, reply) => reply.redirect('/demo'));
  for (const [url, file] of Object.entries(DEMO_FILES)) app.get(url, hide, async (_request, reply) => serve(reply, file));
  app.get('/demo/config.json', hide, async (_request, reply) => reply.headers(SECURITY_HEADERS).send({ wsPort: demo.wsPort ?? null, wsPath: demo.wsPath, isOpenLogin: demo.isOpenLogin }));
}
