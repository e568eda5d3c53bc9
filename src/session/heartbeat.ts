// Heart-beat negotiation (STOMP 1.2 "Heart-beating").
// The client says cx,cy (cx: how often it can send; cy: how often it wants to hear from us);
// we say sx,sy. Client→server: 0 if cx or sy is 0, else max(cx, sy). Server→client: 0 if
// sx or cy is 0, else max(sx, cy).
//
// Our setting (HEARTBEAT) is what we offer a client that asks for slower beats; a client that
// asks for faster ones is met, down to a minimum, by lowering the sx,sy we state in CONNECTED.
// The spec's max() rule then gives the client's own values, so what CONNECTED says and the
// intervals both sides use always agree.

export interface HeartbeatSetting {
  /** sx / cx: the smallest interval at which this side can send. */
  sendMs: number;
  /** sy / cy: the interval at which this side wants to hear from the other. */
  receiveMs: number;
}

export interface HeartbeatIntervals {
  /** How often we must send something (0: never). */
  sendEveryMs: number;
  /** How often we must hear something (0: no check). */
  expectEveryMs: number;
}

const HEARTBEAT_PATTERN = /^\s*(\d{1,9})\s*,\s*(\d{1,9})\s*$/;

/** Parse "x,y"; undefined when malformed. */
export function parseHeartbeat(value: string): HeartbeatSetting | undefined {
  const match = HEARTBEAT_PATTERN.exec(value);
  if (!match) return undefined;
  return { sendMs: Number(match[1]), receiveMs: Number(match[2]) };
}

export function heartbeatIntervals(client: HeartbeatSetting, server: HeartbeatSetting): HeartbeatIntervals {
  return {
    sendEveryMs: server.sendMs === 0 || client.receiveMs === 0 ? 0 : Math.max(server.sendMs, client.receiveMs),
    expectEveryMs: client.sendMs === 0 || server.receiveMs === 0 ? 0 : Math.max(client.sendMs, server.receiveMs),
  };
}

/**
 * The sx,sy we state in CONNECTED: `server` (our HEARTBEAT setting), lowered towards the
 * client's wish but not below `minMs`. 0 in our setting keeps that direction off; a client that
 * wants nothing in a direction (0) leaves our setting as it is (the direction is off anyway).
 */
export function heartbeatOffer(client: HeartbeatSetting, server: HeartbeatSetting, minMs: number): HeartbeatSetting {
  return {
    sendMs: lowerTowards(server.sendMs, client.receiveMs, minMs),
    receiveMs: lowerTowards(server.receiveMs, client.sendMs, minMs),
  };
}

/** Our interval, or the client's faster one (not under minMs); an operator's setting below minMs stands. */
function lowerTowards(ourMs: number, theirMs: number, minMs: number): number {
  if (ourMs === 0 || theirMs === 0) return ourMs;
  return Math.min(ourMs, Math.max(minMs, theirMs));
}
