// This instance's open sessions by id, from the moment a connection is accepted to its close:
// what the admin actions, the cluster layer's kicks and the shutdown reach. Its link at the
// end of the interceptor chain takes a session out when it closes.

import type { StompErrorCode } from './errors';
import type { DisconnectReason } from './events';
import type { Interceptor } from './interceptor';
import type { Session } from './session';
import { closeSessions } from './admin';
import type { RemoteSessions } from './admin';

export class SessionTable {
  private readonly open = new Map<string, Session>();

  /** The last link of the chain: a closed session leaves the table. */
  readonly link: Interceptor = { name: 'session-table', onClose: (session) => void this.open.delete(session.id) };

  add(session: Session): void {
    this.open.set(session.id, session);
  }

  get(sessionId: string): Session | undefined {
    return this.open.get(sessionId);
  }

  /** Open now, connected or not yet. */
  get size(): number {
    return this.open.size;
  }

  values(): IterableIterator<Session> {
    return this.open.values();
  }

  /** Close a session of this instance; false if it is not here. */
  kick(sessionId: string, code: StompErrorCode, message: string, reason?: DisconnectReason): boolean {
    const session = this.open.get(sessionId);
    session?.kick(code, message, reason);
    return session !== undefined;
  }

  /** Close every connected session of `userId` (every one: undefined); how many. */
  kickUser(userId: string | undefined, code: StompErrorCode, message: string, reason: DisconnectReason): number {
    return closeSessions(this.open.values(), userId, code, message, reason);
  }

  /** Close a session wherever it lives: here, or through `remote` on the instance holding it. */
  kickAnywhere(remote: RemoteSessions): (sessionId: string, code: StompErrorCode, message: string) => void {
    return (sessionId, code, message) => {
      if (!this.kick(sessionId, code, message)) void remote.kickSession(sessionId, code, message);
    };
  }
}
