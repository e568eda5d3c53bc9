// Heart-beat negotiation (STOMP 1.2 "Heart-beating").
// The client says cx,cy (cx: how often it can send; cy: how often it wants to hear from us);
// we say sx,sy. Client→server: 0 if cx or sy is 0, else max(cx, sy). Server→client: 0 if
// sx or cy is 0, else max(sx, cy).

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
