// The dashboard: reads the HTTP API only (/api/feed for the live overview, /api/sessions for
// the sessions table) with the credential typed into the sign-in form, kept in sessionStorage
// (this tab only). The page holds no data of its own, so it is the same from any instance and
// in embedded or Redis mode. Every value is put in the page as text, never as HTML.

import { drawChart, formatNumber } from './chart.js';

const TOKEN_KEY = 'stompd.dashboard.token';
/** The chart's window. */
const WINDOW_MS = 5 * 60_000;
/**
 * Rates compare readings about this far apart: other instances' totals arrive with their
 * liveness refresh (every INSTANCE_HEARTBEAT_MS), so readings a second apart would jitter.
 */
const RATE_SPAN_MS = 4_000;
const RETRY_MS = 2_000;
const SERIES = ['published', 'delivered', 'dropped'];
const COLORS = ['#2f6fed', '#16a34a', '#dc2626'];

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
let feed;
/** Totals as read: { t, published, delivered, dropped, errors }. */
const readings = [];
/** Rates per second: { t, values: [published, delivered, dropped] }. */
const rates = [];
let userFilter = '';
let isLoadingSessions = false;
const rendered = new Map();
/** The last overview's instances and per-instance counts, for the rows shown while Redis is away. */
let lastInstances = [];
let lastPerInstance = {};
let unavailableSince;

class AuthError extends Error {}

async function api(path, init = {}) {
  const headers = { ...init.headers };
  if (token !== '') headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...init, headers, cache: 'no-store' });
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    throw new AuthError(body.message ?? response.statusText);
  }
  return response;
}

async function apiJson(path, init) {
  const response = await api(path, init);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message ?? `HTTP ${response.status}`);
  return body;
}

// ---- sign in ----------------------------------------------------------------------------

async function start() {
  try {
    await apiJson('/api/session/stats');
  } catch (error) {
    if (error instanceof AuthError) return showLogin(token === '' ? undefined : error.message);
    setLive(`cannot reach the API: ${error.message}`);
    setTimeout(start, RETRY_MS);
    return;
  }
  $('login').hidden = true;
  $('board').hidden = false;
  $('sign-out').hidden = token === '';
  $('mode').textContent = token === '' ? 'open on loopback: no admin credential configured' : '';
  openFeed();
}

function showLogin(message) {
  feed?.abort();
  $('board').hidden = true;
  $('login').hidden = false;
  $('sign-out').hidden = true;
  $('login-error').hidden = message === undefined;
  $('login-error').textContent = message ?? '';
  setLive('signed out');
  $('token').focus();
}

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  token = $('token').value.trim();
  $('token').value = '';
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});

$('sign-out').addEventListener('click', () => {
  token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin();
});

// ---- the live feed (server-sent events, read with fetch so the credential goes in a header) ---

function setLive(text) {
  $('live').textContent = text;
}

async function openFeed() {
  feed?.abort();
  const abort = new AbortController();
  feed = abort;
  while (!abort.signal.aborted) {
    try {
      const response = await api('/api/feed', { signal: abort.signal, headers: { accept: 'text/event-stream' } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          onEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
      setLive('feed ended: reconnecting…');
    } catch (error) {
      if (abort.signal.aborted) return;
      if (error instanceof AuthError) return showLogin(error.message);
      setLive(`disconnected (${error.message}): reconnecting…`);
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

function onEvent(block) {
  let type = 'message';
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) type = line.slice(6).trim();
    else if (line.startsWith('data:')) data += line.slice(5).trim();
  }
  if (type === 'overview') {
    unavailableSince = undefined;
    render(JSON.parse(data));
    setLive(`live · ${new Date().toLocaleTimeString()}`);
  } else if (type === 'unavailable') {
    // Redis away: this instance still tells its own state (degraded, and why); the other rows
    // and the totals keep their last reading.
    const { message, self } = JSON.parse(data);
    unavailableSince ??= Date.now();
    if (self !== undefined) renderInstances(lastInstances.length === 0 ? [self] : lastInstances.map((i) => (i.isSelf ? self : i)), lastPerInstance);
    setLive(`registry unavailable since ${clock(unavailableSince)}: ${self?.degradedReason ?? message}`);
  }
}

// ---- rendering -----------------------------------------------------------------------------

const sum = (record) => Object.values(record ?? {}).reduce((a, b) => a + b, 0);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : String(child ?? ''));
  return node;
}

/** Replaces a table's rows only when what they show changed: a button under the pointer stays put. */
function renderRows(table, data, rowOf, emptyText) {
  const key = JSON.stringify(data);
  if (rendered.get(table) === key) return;
  rendered.set(table, key);
  const body = $(table).tBodies[0];
  const columns = $(table).tHead.rows[0].cells.length;
  body.replaceChildren(...(data.length === 0 ? [el('tr', {}, el('td', { className: 'empty', colSpan: columns }, emptyText))] : data.map(rowOf)));
}

const clock = (ms) => new Date(ms).toLocaleTimeString();
const since = (ms) => `${new Date(ms).toLocaleDateString()} ${clock(ms)}`;
function age(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

function render(overview) {
  const { stats, instances, queues, rooms, timestamp } = overview;
  const totals = { t: timestamp, published: 0, delivered: 0, dropped: 0, errors: {} };
  let connections = 0;
  for (const instance of instances) {
    const c = instance.counters;
    totals.published += sum(c.published);
    totals.delivered += sum(c.delivered);
    totals.dropped += sum(c.dropped);
    for (const [code, count] of Object.entries(c.errors)) totals.errors[code] = (totals.errors[code] ?? 0) + count;
    if (instance.isAlive) connections += c.connections;
  }
  readings.push(totals);
  while (readings.length > 0 && readings[0].t < timestamp - WINDOW_MS - 60_000) readings.shift();
  const base = [...readings].reverse().find((r) => r.t <= timestamp - RATE_SPAN_MS) ?? readings[0];
  const seconds = (timestamp - base.t) / 1000;
  // A restarted or reaped instance takes its totals with it: never a negative rate.
  const rate = (name) => (seconds > 0 ? Math.max(0, totals[name] - base[name]) / seconds : 0);
  const values = SERIES.map(rate);
  rates.push({ t: timestamp, values });
  while (rates.length > 0 && rates[0].t < timestamp - WINDOW_MS) rates.shift();

  $('total-connections').textContent = formatNumber(connections);
  $('total-sessions').textContent = formatNumber(stats.totalActiveSessions);
  $('total-users').textContent = formatNumber(stats.onlineUsers);
  SERIES.forEach((name, i) => ($(`rate-${name}`).textContent = formatNumber(values[i])));
  drawChart($('chart'), rates, { colors: COLORS, windowMs: WINDOW_MS, now: timestamp });
  $('mode').textContent = `${instances.length === 1 ? '1 instance' : `${instances.length} instances`}${token === '' ? ' · open on loopback: no admin credential configured' : ''}`;

  lastInstances = instances;
  lastPerInstance = stats.perInstance;
  renderInstances(instances, stats.perInstance);

  renderRows(
    'rooms',
    rooms,
    (room) =>
      el(
        'tr',
        {},
        el('td', { className: 'mono' }, room.destination),
        el('td', { className: 'num' }, room.members.length),
        el(
          'td',
          {},
          el(
            'ul',
            { className: 'members' },
            room.members.map((m) => el('li', { title: m.roles.join(', ') }, m.userId)),
          ),
        ),
      ),
    'no room has members (rooms: PRESENCE_DESTINATIONS)',
  );

  renderRows(
    'queues',
    queues,
    (q) =>
      el(
        'tr',
        {},
        el('td', { className: 'mono' }, q.name),
        el('td', { className: 'num' }, q.depth),
        el('td', { className: 'num' }, q.unacked),
        el('td', { className: 'num' }, q.consumers),
        el('td', { className: 'num' }, q.depth + q.unacked > 0 ? age(q.oldestAgeMs) : '–'),
      ),
    'no queues',
  );

  const minuteAgo = readings.find((r) => r.t >= timestamp - 60_000) ?? readings[0];
  renderRows(
    'errors',
    Object.entries(totals.errors)
      .sort((a, b) => b[1] - a[1])
      .map(([code, total]) => ({ code, total, lastMinute: Math.max(0, total - (minuteAgo.errors[code] ?? 0)) })),
    (e) => el('tr', { dataset: { code: e.code } }, el('td', { className: 'mono' }, e.code), el('td', { className: 'num' }, e.total), el('td', { className: 'num' }, e.lastMinute)),
    'no ERROR frames sent',
  );

  void loadSessions();
}

function renderInstances(instances, perInstance) {
  renderRows(
    'instances',
    instances.map((i) => ({
      id: i.instanceId,
      self: i.isSelf,
      alive: i.isAlive,
      stale: i.heartbeatAgeMs > 5000,
      degraded: i.isDegraded,
      reason: i.degradedReason,
      startedAt: i.startedAt,
      connections: i.counters.connections,
      ...(perInstance[i.instanceId] ?? { sessions: 0, users: 0 }),
    })),
    (i) =>
      el(
        'tr',
        { dataset: { instanceId: i.id } },
        el('td', { className: 'mono' }, i.id, i.self ? el('span', { className: 'muted' }, ' (answering)') : ''),
        el('td', {}, el('span', { className: `badge ${!i.alive ? 'bad' : i.stale ? 'warn' : 'ok'}` }, !i.alive ? 'gone: being reaped' : i.stale ? 'late' : 'alive')),
        el('td', {}, el('span', { className: `badge ${i.degraded ? 'bad' : 'ok'}` }, i.degraded ? `degraded: ${i.reason ?? ''}` : 'ok')),
        el('td', { className: 'num' }, i.sessions),
        el('td', { className: 'num' }, i.users),
        el('td', { className: 'num' }, i.connections),
        el('td', {}, since(i.startedAt)),
      ),
    'no instances',
  );
}

async function loadSessions() {
  if (isLoadingSessions) return;
  isLoadingSessions = true;
  try {
    const query = userFilter === '' ? '?limit=100' : `?limit=100&userId=${encodeURIComponent(userFilter)}`;
    const page = await apiJson(`/api/sessions${query}`);
    $('session-count').textContent =
      userFilter === '' ? `${page.totalCount} sessions${page.totalCount > page.sessions.length ? ` (first ${page.sessions.length} shown)` : ''}` : `${page.totalCount} sessions of ${userFilter}`;
    renderRows(
      'sessions',
      page.sessions.map(({ lastSeenAt, ...shown }) => shown),
      (s) =>
        el(
          'tr',
          { dataset: { sessionId: s.sessionId, userId: s.userId } },
          el('td', {}, s.userId, s.roles.length > 0 ? el('div', { className: 'muted' }, s.roles.join(', ')) : ''),
          el('td', { className: 'mono', title: s.sessionId }, s.sessionId.slice(0, 8)),
          el('td', {}, s.transport),
          el('td', { className: 'mono' }, s.remoteAddress),
          el('td', {}, since(s.connectedAt)),
          el(
            'td',
            {},
            s.subscriptions.length === 0
              ? el('span', { className: 'muted' }, 'none')
              : el(
                  'ul',
                  { className: 'subs mono' },
                  s.subscriptions.map((sub) => el('li', {}, sub.destination, sub.ack === 'auto' ? '' : el('span', { className: 'muted' }, ` (${sub.ack})`))),
                ),
          ),
          el('td', { className: 'mono' }, s.instanceId),
          el(
            'td',
            {},
            el('button', { className: 'danger kick', type: 'button', title: 'Close this session with ERROR KICKED', onclick: () => kick(s) }, 'Kick'),
            ' ',
            el('button', { className: 'danger logout', type: 'button', title: 'Close every session of this user (ERROR LOGGED_OUT) and refuse its earlier tokens', onclick: () => logout(s.userId) }, 'Log out'),
          ),
        ),
      userFilter === '' ? 'no sessions' : `no sessions of ${userFilter}`,
    );
  } catch (error) {
    if (error instanceof AuthError) showLogin(error.message);
    else $('session-count').textContent = `sessions unavailable: ${error.message}`;
  } finally {
    isLoadingSessions = false;
  }
}

async function kick(session) {
  try {
    const result = await apiJson(`/api/session/${encodeURIComponent(session.sessionId)}`, { method: 'DELETE' });
    $('action-result').textContent = `kicked ${session.userId}'s session ${session.sessionId.slice(0, 8)} (${result.sessionsClosed} closed)`;
  } catch (error) {
    $('action-result').textContent = `kick failed: ${error.message}`;
  }
}

async function logout(userId) {
  if (!window.confirm(`Log ${userId} out everywhere? Every session of ${userId} is closed (ERROR LOGGED_OUT) and tokens issued before now are refused.`)) return;
  try {
    const result = await apiJson(`/api/session/user/${encodeURIComponent(userId)}`, { method: 'DELETE' });
    $('action-result').textContent = `logged ${userId} out: ${result.sessionsClosed} sessions closed`;
  } catch (error) {
    $('action-result').textContent = `logout failed: ${error.message}`;
  }
}

$('session-search').addEventListener('submit', (event) => {
  event.preventDefault();
  userFilter = $('search-user').value.trim();
  void loadSessions();
});
$('search-clear').addEventListener('click', () => {
  $('search-user').value = '';
  userFilter = '';
  void loadSessions();
});

$('publish').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.target;
  const result = $('publish-result');
  try {
    const answer = await apiJson('/api/publish', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ destination: form.destination.value.trim(), body: form.body.value }),
    });
    result.textContent = `published ${answer.messageId} to ${answer.destination} (${answer.bodyBytes} bytes)`;
  } catch (error) {
    result.textContent = `refused: ${error.message}`;
  }
});

start();
