// App destinations (APP_PREFIXES, `/app/…`): a SEND goes to the backend's /send and its
// answer is routed like Spring's @MessageMapping return values; a SUBSCRIBE goes to
// /subscribe and is answered once (@SubscribeMapping).
//
// Invariants: a session's SENDs reach the backend one at a time and in order (the session
// reads nothing more until the answer is routed: backpressure); the RECEIPT follows only a
// 2xx answer whose messages were all routed; whatever the backend answers, it cannot set the
// headers the broker owns (user-id, x-presence, x-dropped, redelivered: Router.createMessage
// strips them). A backend that gives no usable answer costs the sender a MESSAGE on
// /user/queue/errors (BACKEND_UNAVAILABLE), never its connection.

import { isUtf8 } from 'node:buffer';
import type { Logger } from 'pino';
import { headerValue } from '../codec';
import type { Frame, Header } from '../codec';
import { forwardableHeaders } from '../broker/message';
import type { Message } from '../broker/message';
import type { PublishRefusal, Router } from '../broker/router';
import { Subscription } from '../broker/subscription';
import type { DestinationHandler } from '../session/destination-handler';
import { StompError } from '../session/errors';
import type { StompErrorCode } from '../session/errors';
import type { Session } from '../session/session';
import type { BackendSessions } from './backend-sessions';
import { BackendUnavailable } from './client';
import type { HookCaller } from './client';
import { ContractError, parseSendAnswer, parseSubscribeAnswer } from './contract';
import type { HookBody, OutgoingMessage, SendAnswer, SendCall, SubscribeCall } from './contract';

export interface AppDestinationsDeps {
  caller: HookCaller;
  sessions: BackendSessions;
  router: Router;
  appPrefixes: readonly string[];
  topicPrefix: string;
  logger: Logger;
  /** Counted failures, by code (BACKEND_UNAVAILABLE, the backend's own codes). */
  errorCounts: Record<string, number>;
}

/** Where a non-fatal error goes, as Spring's @MessageExceptionHandler + @SendToUser does. */
const ERRORS_DESTINATION = '/queue/errors';

const TEXT_TYPES = /^(text\/|application\/(json|xml|javascript|x-www-form-urlencoded)|application\/[\w.+-]+\+(json|xml))/i;

/** Text when the content-type says so (or there is none) and the bytes are UTF-8; base64 otherwise. */
export function bodyForJson(body: Buffer, contentType: string | undefined): HookBody {
  if (body.length === 0) return { body: '' };
  const isText = contentType === undefined || TEXT_TYPES.test(contentType);
  return isText && isUtf8(body) ? { body: body.toString('utf8') } : { bodyBase64: body.toString('base64') };
}

function bodyFromJson(message: HookBody): Buffer {
  if (message.bodyBase64 !== undefined) return Buffer.from(message.bodyBase64, 'base64');
  return Buffer.from(message.body ?? '', 'utf8');
}

/** A frame's user headers as a JSON object (the first of a repeated name counts, STOMP 1.2). */
export function userHeaders(headers: readonly Header[], omit: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of forwardableHeaders(headers)) {
    if (omit.includes(name) || Object.prototype.hasOwnProperty.call(out, name)) continue;
    out[name] = value;
  }
  return out;
}

function headerList(headers: Record<string, string> | undefined): Header[] {
  return headers === undefined ? [] : Object.entries(headers);
}

/** A backend's error code as an ERROR or x-error-code: upper-case letters, digits and underscores, else `fallback`. */
export function errorCode(code: string | undefined, fallback: StompErrorCode): StompErrorCode {
  return code !== undefined && /^[A-Z][A-Z0-9_]{0,63}$/.test(code) ? (code as StompErrorCode) : fallback;
}

export function appDestinations(deps: AppDestinationsDeps): DestinationHandler {
  const { caller, sessions, router, logger } = deps;
  const destinations = router.destinations;
  const prefixOf = (destination: string): string | undefined => deps.appPrefixes.find((prefix) => destination.startsWith(prefix) && destination.length > prefix.length);
  const lookupOf = (destination: string): string => destination.slice(prefixOf(destination)!.length - 1);
  let lastWarnAt = 0;
  let unwarned = 0;

  /** A message to this one session's `/user/queue/…` subscriptions (reply, errors). */
  const toSession = (session: Session, inner: string, headers: readonly Header[], body: Buffer): void => {
    const message = router.createMessage(destinations.userRouteKey(session.userId, inner), headers, body, session.userId);
    for (const subscription of session.subscriptions.values()) {
      if (subscription.routeKey === message.routeKey) subscription.deliver(message);
    }
  };

  const reportError = (session: Session, frame: Frame, code: string, text: string): void => {
    deps.errorCounts[code] = (deps.errorCounts[code] ?? 0) + 1;
    const headers: Header[] = [
      ['x-error-code', code],
      ['message', text],
      ['content-type', 'text/plain'],
    ];
    const receipt = headerValue(frame.headers, 'receipt');
    if (receipt !== undefined) headers.push(['receipt-id', receipt]);
    toSession(session, ERRORS_DESTINATION, headers, Buffer.from(text));
  };

  /** No usable answer: the sender hears of it on /user/queue/errors, the frame gets no RECEIPT. */
  const unavailable = (session: Session, frame: Frame, error: unknown): void => {
    if (!(error instanceof BackendUnavailable) && !(error instanceof ContractError)) throw error;
    if (!session.isOpen) return;
    const text = error.message;
    const now = Date.now();
    if (now - lastWarnAt >= 1000) {
      logger.warn({ detail: text, sessionId: session.id, failuresSinceLastLine: unwarned }, 'backend hook failed: BACKEND_UNAVAILABLE to the sender');
      lastWarnAt = now;
      unwarned = 0;
    } else {
      unwarned++;
    }
    session.withholdReceipt(frame);
    reportError(session, frame, 'BACKEND_UNAVAILABLE', text);
  };

  /** Every message checked before any is routed: an answer is routed whole or not at all. */
  const messagesOf = (session: Session, lookup: string, answer: SendAnswer): { routed: Message[]; replies: OutgoingMessage[] } => {
    const routed: Message[] = [];
    const build = (destination: string, m: HookBody & { headers?: Record<string, string> }, where: string): void => {
      const kind = router.kindOf(destination);
      if (kind === undefined) throw new ContractError(`${where}: ${JSON.stringify(destination)} is not a topic, queue or user destination`);
      if (kind === 'user' && destinations.parseUser(destination)?.userId === undefined) {
        throw new ContractError(`${where}: ${JSON.stringify(destination)} must name the user (/user/<userId>/…), or use toUser or reply`);
      }
      routed.push(router.createMessage(destination, headerList(m.headers), bodyFromJson(m), session.userId));
    };
    answer.publish?.forEach((m, i) => build(m.destination, m, `publish[${i}]`));
    answer.toUser?.forEach((m, i) => {
      if (!destinations.isAddressableUserId(m.userId)) throw new ContractError(`toUser[${i}].userId ${JSON.stringify(m.userId)} cannot be addressed`);
      build(destinations.userRouteKey(m.userId, m.destination), m, `toUser[${i}]`);
    });
    const replies = answer.reply ?? [];
    replies.forEach((m, i) => {
      if (destinations.parseUser(destinations.userRouteKey(session.userId, m.destination)) === undefined) {
        throw new ContractError(`reply[${i}].destination ${JSON.stringify(m.destination)} must be a queue or topic name such as /queue/reply`);
      }
    });
    // A return value alone: Spring sends it to the same path under the topic prefix.
    const hasReturnValue = answer.body !== undefined || answer.bodyBase64 !== undefined;
    if (hasReturnValue) build(`${deps.topicPrefix.slice(0, -1)}${lookup}`, answer, 'body');
    return { routed, replies };
  };

  /**
   * Admit and publish in order; a queue refusal (or Redis away) is the first refusal met.
   * `firstAdmission`: the first message's admission, already asked for.
   */
  const publishAll = async (messages: Message[], firstAdmission?: Promise<PublishRefusal | undefined>): Promise<PublishRefusal | undefined> => {
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i]!;
      const refusal = (await (i === 0 && firstAdmission !== undefined ? firstAdmission : router.admit([message]))) ?? (await router.publish(message));
      if (refusal !== undefined) return refusal;
    }
    return undefined;
  };

  const route = (session: Session, frame: Frame, lookup: string, raw: unknown): void | Promise<void> => {
    if (raw === undefined || !session.isOpen) return undefined; // 204: nothing to send
    const answer = parseSendAnswer(raw);
    if (answer.error?.fatal === true) {
      const code = errorCode(answer.error.code, 'BACKEND_ERROR');
      deps.errorCounts[code] = (deps.errorCounts[code] ?? 0) + 1;
      throw new StompError(code, answer.error.message || 'refused by the application');
    }
    const { routed, replies } = messagesOf(session, lookup, answer);
    for (const m of replies) toSession(session, m.destination, headerList(m.headers), bodyFromJson(m));
    const finish = (refusal: PublishRefusal | undefined): void => {
      if (refusal !== undefined && session.isOpen) {
        session.withholdReceipt(frame);
        reportError(session, frame, refusal.code, refusal.message);
      }
      if (answer.error !== undefined && session.isOpen) reportError(session, frame, errorCode(answer.error.code, 'BACKEND_ERROR'), answer.error.message);
    };
    if (routed.length === 0) return finish(undefined);
    // Routed at once while the answers are immediate; queues in Redis make the rest wait.
    for (let i = 0; i < routed.length; i++) {
      const message = routed[i]!;
      const refusal = router.admit([message]);
      if (refusal instanceof Promise) return publishAll(routed.slice(i), refusal).then(finish);
      if (refusal !== undefined) return finish(refusal);
      const stored = router.publish(message);
      if (stored instanceof Promise) return stored.then((r) => r ?? publishAll(routed.slice(i + 1))).then(finish);
    }
    return finish(undefined);
  };

  return {
    name: 'app-destinations',
    handles: (destination) => prefixOf(destination) !== undefined,

    send(session, frame, destination) {
      const lookup = lookupOf(destination);
      const receipt = headerValue(frame.headers, 'receipt');
      const call: SendCall = {
        ...sessions.callBase(session),
        destination,
        lookup,
        headers: userHeaders(frame.headers),
        ...bodyForJson(frame.body, headerValue(frame.headers, 'content-type')),
        ...(receipt !== undefined ? { receipt } : {}),
      };
      return caller.call('send', call).then(
        (answer) => {
          try {
            return route(session, frame, lookup, answer);
          } catch (error) {
            return unavailable(session, frame, error);
          }
        },
        (error: unknown) => unavailable(session, frame, error),
      );
    },

    subscribe(session, frame, destination, subscriptionId) {
      const call: SubscribeCall = {
        ...sessions.callBase(session),
        destination,
        lookup: lookupOf(destination),
        headers: userHeaders(frame.headers, ['id', 'ack', 'prefetch-count']),
        subscriptionId,
      };
      return caller.call('subscribe', call).then(
        (raw) => {
          if (raw === undefined || !session.isOpen) return;
          let answer;
          try {
            answer = parseSubscribeAnswer(raw);
          } catch (error) {
            unavailable(session, frame, error);
            return;
          }
          if (answer.error !== undefined) throw new StompError(errorCode(answer.error.code, 'FORBIDDEN'), answer.error.message || `subscribing to ${destination} is not allowed`);
          // One MESSAGE on this subscription id; nothing stays subscribed.
          const once = new Subscription(session, subscriptionId, destination, 'auto');
          once.deliver(router.createMessage(destination, headerList(answer.headers), bodyFromJson(answer), session.userId));
        },
        (error: unknown) => unavailable(session, frame, error),
      );
    },
  };
}
