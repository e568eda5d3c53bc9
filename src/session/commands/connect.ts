// CONNECT / STOMP (STOMP 1.2 "Connecting"): version negotiation, heart-beat offer, the
// interceptor chain (authentication), then CONNECTED.

import { headerValue } from '../../codec';
import type { Frame, StompVersion } from '../../codec';
import { StompError } from '../errors';
import { parseHeartbeat } from '../heartbeat';
import type { HeartbeatSetting } from '../heartbeat';
import { afterChain, runChain } from '../interceptor';
import type { ConnectContext } from '../interceptor';
import type { Session } from '../session';

export const SUPPORTED_VERSIONS: readonly StompVersion[] = ['1.2', '1.1', '1.0'];

/** The newest version both sides speak; a missing accept-version means 1.0. */
export function negotiateVersion(acceptVersion: string | undefined): StompVersion | undefined {
  if (acceptVersion === undefined) return '1.0';
  const offered = acceptVersion.split(',').map((v) => v.trim());
  return SUPPORTED_VERSIONS.find((version) => offered.includes(version));
}

const NO_HEARTBEAT: HeartbeatSetting = { sendMs: 0, receiveMs: 0 };

export function handleConnect(session: Session, frame: Frame): void | Promise<void> {
  const version = negotiateVersion(headerValue(frame.headers, 'accept-version'));
  if (version === undefined) {
    const supported = [...SUPPORTED_VERSIONS].reverse().join(',');
    throw new StompError('UNSUPPORTED_VERSION', `no common STOMP version; this server speaks ${supported}`, [['version', supported]]);
  }
  const heartbeatHeader = headerValue(frame.headers, 'heart-beat');
  const clientHeartbeat = heartbeatHeader === undefined ? NO_HEARTBEAT : parseHeartbeat(heartbeatHeader);
  if (clientHeartbeat === undefined) {
    throw new StompError('BAD_HEARTBEAT', `heart-beat must be two integers "cx,cy", got ${JSON.stringify(heartbeatHeader)}`);
  }
  const ctx: ConnectContext = { session, frame, principal: undefined };
  let chain: void | Promise<void>;
  try {
    chain = runChain(session.deps.interceptors, 'onConnect', ctx);
  } catch (error) {
    throw attributed(error, ctx);
  }
  if (chain !== undefined) {
    chain = chain.catch((error: unknown) => {
      throw attributed(error, ctx);
    });
  }
  return afterChain(session, chain, () => {
    if (!session.isOpen) return;
    if (ctx.principal === undefined) throw new StompError('UNAUTHENTICATED', 'no credentials accepted');
    session.establish(version, ctx.principal, clientHeartbeat);
  });
}

/** A refusal after authentication (a session policy, an access rule) names the user it refused, for the log. */
function attributed(error: unknown, ctx: ConnectContext): unknown {
  if (!(error instanceof StompError) || error.userId !== undefined || ctx.principal === undefined) return error;
  return new StompError(error.code, error.message, error.headers, { userId: ctx.principal.userId });
}
