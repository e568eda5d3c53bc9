// Destination access rules: who may subscribe or send where.
//
// Rules file (ACL_FILE, JSON):
//   { "default": "deny",
//     "rules": [ { "effect": "allow", "actions": ["subscribe"], "roles": ["AGENT"],
//                  "destinations": ["/topic/support.**", "/user/{userId}/**"] }, ... ] }
// Rules are tried in order; the first whose action, role and destination match decides.
// No match: `default` ("deny" when omitted). Without a file everything is allowed.
// Patterns: `{userId}` is the session's own user id, `*` any run of characters but "/",
// `**` any run at all (line breaks included). User destinations are matched in their addressed form
// (`/user/queue/x` subscribed by alice is `/user/alice/queue/x`). Whatever the rules say, nobody subscribes to another user's
// `/user/<id>/...` destinations.

import fs from 'node:fs';
import type { Destinations } from '../broker/destinations';
import { ConfigError } from '../config';
import { StompError } from '../session/errors';
import type { DestinationContext, Interceptor, Principal } from '../session/interceptor';

export type AclAction = 'subscribe' | 'send';
type Effect = 'allow' | 'deny';

interface CompiledRule {
  effect: Effect;
  actions: ReadonlySet<AclAction>;
  /** undefined: any role, or none. */
  roles: ReadonlySet<string> | undefined;
  /** Each capture group is a {userId} place. */
  patterns: RegExp[];
}

export interface AccessRules {
  isAllowed(action: AclAction, destination: string, principal: Principal): boolean;
}

const ALLOW_ALL: AccessRules = { isAllowed: () => true };

/** Turn a destination pattern into a regex whose groups are its {userId} places. */
export function compilePattern(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length;) {
    if (pattern.startsWith('{userId}', i)) {
      source += '([^/]+)';
      i += '{userId}'.length;
    } else if (pattern.startsWith('**', i)) {
      source += '[\\s\\S]*'; // any character at all, line breaks included ("." would stop at them)
      i += 2;
    } else if (pattern[i] === '*') {
      source += '[^/]*';
      i += 1;
    } else {
      source += pattern[i]!.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
      i += 1;
    }
  }
  return new RegExp(`^${source}$`);
}

/** Whether `destination` matches `pattern` (compilePattern), every {userId} place being `userId`. */
export function matches(pattern: RegExp, destination: string, userId: string): boolean {
  const match = pattern.exec(destination);
  if (match === null) return false;
  for (let i = 1; i < match.length; i++) if (match[i] !== userId) return false;
  return true;
}

export function parseRules(text: string, source: string): AccessRules {
  const fail = (why: string): never => {
    throw new ConfigError('ACL_FILE', source, why);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return fail(`expected JSON: ${(error as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || !Array.isArray((raw as { rules?: unknown }).rules)) return fail('expected an object with a "rules" array');
  const file = raw as { default?: unknown; rules: unknown[] };
  if (file.default !== undefined && file.default !== 'allow' && file.default !== 'deny') return fail('expected "default" to be "allow" or "deny"');
  const fallback: Effect = file.default ?? 'deny';
  const rules = file.rules.map((entry, index): CompiledRule => {
    const rule = entry as { effect?: unknown; actions?: unknown; roles?: unknown; destinations?: unknown };
    const where = `rule ${index + 1}`;
    if (rule.effect !== 'allow' && rule.effect !== 'deny') return fail(`expected ${where} "effect" to be "allow" or "deny"`);
    const actions = rule.actions ?? ['subscribe', 'send'];
    if (!Array.isArray(actions) || actions.length === 0 || !actions.every((a) => a === 'subscribe' || a === 'send')) return fail(`expected ${where} "actions" to list "subscribe" and/or "send"`);
    if (rule.roles !== undefined && (!Array.isArray(rule.roles) || !rule.roles.every((r) => typeof r === 'string'))) return fail(`expected ${where} "roles" to be an array of role names`);
    if (!Array.isArray(rule.destinations) || rule.destinations.length === 0 || !rule.destinations.every((d) => typeof d === 'string' && d.startsWith('/'))) {
      return fail(`expected ${where} "destinations" to be a non-empty array of patterns starting with "/"`);
    }
    const roles = rule.roles;
    return {
      effect: rule.effect,
      actions: new Set(actions as AclAction[]),
      roles: roles === undefined || roles.includes('*') ? undefined : new Set(roles),
      patterns: (rule.destinations as string[]).map(compilePattern),
    };
  });
  return {
    isAllowed(action, destination, principal) {
      for (const rule of rules) {
        if (!rule.actions.has(action)) continue;
        if (rule.roles !== undefined && !principal.roles.some((role) => rule.roles!.has(role))) continue;
        if (rule.patterns.some((pattern) => matches(pattern, destination, principal.userId))) return rule.effect === 'allow';
      }
      return fallback === 'allow';
    },
  };
}

export function loadRules(path: string | undefined): AccessRules {
  if (path === undefined) return ALLOW_ALL;
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError('ACL_FILE', path, `expected a readable file: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return parseRules(text, path);
}

/** The access link: rules for SUBSCRIBE and SEND, and the fixed user-destination guard. */
export function accessControl(rules: AccessRules, destinations: Destinations): Interceptor {
  const check = (action: AclAction, ctx: DestinationContext): void => {
    const principal = ctx.session.principal!;
    const user = destinations.parseUser(ctx.destination);
    if (action === 'subscribe' && user?.userId !== undefined && user.userId !== principal.userId) {
      throw new StompError('FORBIDDEN', `cannot subscribe to another user's destination ${ctx.destination}`);
    }
    // Rules see user destinations in their addressed form: /user/queue/x is /user/<me>/queue/x.
    const canonical = user !== undefined && user.userId === undefined ? destinations.userRouteKey(principal.userId, user.inner) : ctx.destination;
    if (!rules.isAllowed(action, canonical, principal)) {
      throw new StompError('FORBIDDEN', `${action} to ${ctx.destination} is not allowed`);
    }
  };
  return {
    name: 'access-control',
    onSubscribe: (ctx) => check('subscribe', ctx),
    onSend: (ctx) => check('send', ctx),
  };
}
