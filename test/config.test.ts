import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CONFIG_DEFAULTS, ConfigError, loadConfig } from '../src/config';

/** Starting with `env` stops on a ConfigError naming `variable`. */
function refuses(env: Record<string, string>, variable: string): void {
  assert.throws(
    () => loadConfig(env),
    (e: ConfigError) => e.variable === variable,
  );
}

describe('configuration', () => {
  it('defaults: loopback, 61613 and 15674 on /ws, heart-beats 10000,10000, grace 2, CONNECT within 10 s', () => {
    const config = loadConfig({});
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.stompPort, 61613);
    assert.equal(config.wsPort, 15674);
    assert.equal(config.wsPath, '/ws');
    assert.deepEqual(config.heartbeat, { sendMs: 10000, receiveMs: 10000 });
    assert.equal(config.heartbeatGrace, 2);
    assert.equal(config.connectTimeoutMs, 10000);
    assert.equal(config.limits.maxFrameBytes, 4194304, "RabbitMQ's frame_max");
    assert.ok(Object.isFrozen(config));
  });

  it('reads every variable', () => {
    const config = loadConfig({
      HOST: '0.0.0.0',
      STOMP_PORT: 'off',
      WS_PORT: '8080',
      WS_PATH: '/stomp',
      HEARTBEAT: '5000,0',
      HEARTBEAT_GRACE: '1.5',
      MAX_FRAME_BYTES: '2048',
      MAX_HEADERS: '10',
      MAX_HEADER_LINE_BYTES: '100',
      TOPIC_PREFIX: '/t/',
      QUEUE_PREFIX: '/q/',
      LOG_LEVEL: 'debug',
      ALLOW_INSECURE_AUTH: '1',
      SLOW_CONSUMER_POLICY: 'disconnect',
      WRITE_BUFFER_LIMIT_BYTES: '4096',
      MAX_QUEUE_MESSAGES: '5',
      MAX_UNACKED: '7',
      MAX_SUBSCRIPTIONS_PER_SESSION: '3',
      MAX_TRANSACTION_BYTES: '0',
      CONNECT_TIMEOUT_MS: '3600000',
    });
    assert.equal(config.stompPort, undefined);
    assert.equal(config.wsPort, 8080);
    assert.deepEqual(config.heartbeat, { sendMs: 5000, receiveMs: 0 });
    assert.deepEqual(config.limits, { maxFrameBytes: 2048, maxHeaders: 10, maxHeaderLineBytes: 100 });
    assert.equal(config.slowConsumerPolicy, 'disconnect');
    assert.equal(config.topicPrefix, '/t/');
    assert.equal(config.maxUnacked, 7);
    assert.equal(config.maxSubscriptionsPerSession, 3);
    assert.equal(config.maxTransactionBytes, 0);
    assert.equal(config.connectTimeoutMs, 3600000);
  });

  it('defaults of the per-session bounds', () => {
    const config = loadConfig({});
    assert.equal(config.maxUnacked, 1000);
    assert.equal(config.maxSubscriptionsPerSession, 1000);
    assert.equal(config.maxSubscriptionBytesPerSession, 2097152);
    assert.equal(config.maxTransactionBytes, 8388608);
    assert.throws(() => loadConfig({ MAX_SUBSCRIPTION_BYTES_PER_SESSION: '1023' }), /MAX_SUBSCRIPTION_BYTES_PER_SESSION="1023"/);
  });

  it('defaults and bounds of the heart-beat floor, slow-peer timeouts, connection caps and shutdown', () => {
    const config = loadConfig({});
    assert.equal(config.heartbeatMinMs, 100);
    assert.equal(config.frameTimeoutMs, 30000);
    assert.equal(config.handshakeTimeoutMs, 10000);
    assert.equal(config.maxConnections, 100000);
    assert.equal(config.maxConnectionsPerAddress, 1000);
    assert.equal(config.shutdownTimeoutMs, 5000);
    const off = loadConfig({ MAX_CONNECTIONS: '0', MAX_CONNECTIONS_PER_ADDRESS: '0' });
    assert.equal(off.maxConnections, 0, '0: no cap');
    assert.equal(off.maxConnectionsPerAddress, 0);
    for (const [variable, value] of [
      ['HEARTBEAT_MIN_MS', '0'],
      ['FRAME_TIMEOUT_MS', '0'],
      ['HANDSHAKE_TIMEOUT_MS', '3600001'],
      ['SHUTDOWN_TIMEOUT_MS', 'soon'],
      ['MAX_CONNECTIONS', '-1'],
      ['MAX_CONNECTIONS_PER_ADDRESS', 'lots'],
    ]) {
      assert.throws(
        () => loadConfig({ [variable!]: value! }),
        (e: unknown) => e instanceof ConfigError && e.variable === variable,
        `${variable}=${value}`,
      );
    }
  });

  it('memory limits: defaults, and every one read and checked', () => {
    const defaults = loadConfig({});
    assert.equal(defaults.maxPendingFrameBytes, 512 * 1024 * 1024);
    assert.equal(defaults.maxQueueBytes, 256 * 1024 * 1024);
    assert.equal(defaults.maxTotalQueueBytes, 1024 * 1024 * 1024);
    assert.equal(defaults.maxQueues, 100000);
    const set = loadConfig({ MAX_PENDING_FRAME_BYTES: '65536', MAX_QUEUE_BYTES: '1000', MAX_TOTAL_QUEUE_BYTES: '5000', MAX_QUEUES: '3' });
    assert.deepEqual([set.maxPendingFrameBytes, set.maxQueueBytes, set.maxTotalQueueBytes, set.maxQueues], [65536, 1000, 5000, 3]);
    for (const variable of ['MAX_PENDING_FRAME_BYTES', 'MAX_QUEUE_BYTES', 'MAX_TOTAL_QUEUE_BYTES', 'MAX_QUEUES']) {
      assert.throws(
        () => loadConfig({ [variable]: '0' }),
        (e: unknown) => e instanceof ConfigError && e.variable === variable,
        variable,
      );
    }
  });

  it('publisher flow control: defaults, values, the cross-checks, and the variable named when bad', () => {
    const defaults = loadConfig({});
    assert.deepEqual(defaults.flowControl, { behindShare: 0.5, windowDeliveries: 32, stallMs: 2000, maxHoldMs: 10000 });
    assert.equal(defaults.flowBehindBytes, 262144);
    assert.equal(defaults.relayBacklogBytes, 64 * 1024 * 1024);
    assert.equal(loadConfig({ WRITE_BUFFER_LIMIT_BYTES: '65536' }).flowBehindBytes, 32768, 'default: half a smaller write limit');
    const set = loadConfig({
      FLOW_CONTROL_BEHIND_BYTES: '131072',
      FLOW_CONTROL_BEHIND_SHARE: '0.75',
      FLOW_CONTROL_WINDOW: '100',
      FLOW_CONTROL_STALL_MS: '500',
      FLOW_CONTROL_MAX_HOLD_MS: '500',
      RELAY_BACKLOG_BYTES: '65536',
    });
    assert.deepEqual(set.flowControl, { behindShare: 0.75, windowDeliveries: 100, stallMs: 500, maxHoldMs: 500 });
    assert.deepEqual([set.flowBehindBytes, set.relayBacklogBytes], [131072, 65536]);
    assert.equal(loadConfig({ FLOW_CONTROL: 'off' }).flowControl, undefined);
    for (const [variable, value] of [
      ['FLOW_CONTROL', 'maybe'],
      ['FLOW_CONTROL_BEHIND_BYTES', '1000'],
      ['FLOW_CONTROL_BEHIND_BYTES', '64k'],
      ['FLOW_CONTROL_BEHIND_SHARE', '0'],
      ['FLOW_CONTROL_BEHIND_SHARE', '1'],
      ['FLOW_CONTROL_BEHIND_SHARE', '50%'],
      ['FLOW_CONTROL_WINDOW', '0'],
      ['FLOW_CONTROL_STALL_MS', '5'],
      ['FLOW_CONTROL_MAX_HOLD_MS', 'forever'],
      ['RELAY_BACKLOG_BYTES', '1024'],
    ]) {
      assert.throws(
        () => loadConfig({ [variable!]: value! }),
        (e: unknown) => e instanceof ConfigError && e.variable === variable,
        `${variable}=${value}`,
      );
    }
    // The mark sits below the write limit: a held publisher stops before its subscribers are dropped for.
    assert.throws(
      () => loadConfig({ WRITE_BUFFER_LIMIT_BYTES: '65536', FLOW_CONTROL_BEHIND_BYTES: '131072' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'FLOW_CONTROL_BEHIND_BYTES',
    );
    assert.throws(
      () => loadConfig({ FLOW_CONTROL_STALL_MS: '5000', FLOW_CONTROL_MAX_HOLD_MS: '1000' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'FLOW_CONTROL_MAX_HOLD_MS',
    );
  });

  it('names the variable of a bad value', () => {
    assert.throws(
      () => loadConfig({ WS_PORT: 'eighty' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'WS_PORT',
    );
    assert.throws(
      () => loadConfig({ QUEUE_PREFIX: '/topic/x/' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'QUEUE_PREFIX',
    );
    assert.throws(
      () => loadConfig({ TOPIC_PREFIX: '/topic' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'TOPIC_PREFIX',
      'prefixes end with "/"',
    );
    assert.throws(
      () => loadConfig({ STOMP_PORT: 'off', WS_PORT: 'off' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'STOMP_PORT',
    );
    // Past what a timer can hold (2^31 - 1 ms) it would fire at once; the cap is 3600000.
    assert.throws(
      () => loadConfig({ CONNECT_TIMEOUT_MS: '3000000000' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'CONNECT_TIMEOUT_MS',
    );
    assert.throws(
      () => loadConfig({ CONNECT_TIMEOUT_MS: '3600001' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'CONNECT_TIMEOUT_MS',
    );
    for (const variable of ['MAX_UNACKED', 'MAX_SUBSCRIPTIONS_PER_SESSION', 'MAX_TRANSACTION_BYTES']) {
      assert.throws(
        () => loadConfig({ [variable]: 'many' }),
        (e: unknown) => e instanceof ConfigError && e.variable === variable,
        variable,
      );
    }
    assert.throws(
      () => loadConfig({ MAX_UNACKED: '0' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'MAX_UNACKED',
    );
  });

  it('DEMO: off by default; 1 makes /topic/demo.* rooms, and needs the HTTP and WebSocket ports', () => {
    assert.equal(loadConfig({}).http.isDemo, false);
    const demo = loadConfig({ DEMO: '1', PRESENCE_DESTINATIONS: '/topic/room.*' });
    assert.equal(demo.http.isDemo, true);
    assert.deepEqual(demo.presenceDestinations, ['/topic/room.*', '/topic/demo.*']);
    for (const off of ['HTTP_PORT', 'WS_PORT']) {
      assert.throws(
        () => loadConfig({ DEMO: '1', [off]: 'off' }),
        (e: unknown) => e instanceof ConfigError && e.variable === 'DEMO' && e.message.includes(off),
        off,
      );
    }
    assert.throws(() => loadConfig({ DEMO: 'yes' }), /DEMO="yes"/);
  });

  it('README documents every variable with its default', () => {
    const readme = fs.readFileSync(path.resolve(__dirname, '../../README.md'), 'utf8');
    for (const [name, fallback] of Object.entries(CONFIG_DEFAULTS)) {
      const shown = fallback === '' ? '—' : `\`${fallback.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\``;
      assert.match(readme, new RegExp(`\\| \`${name}\` \\| ${shown} \\|`), `${name} row with default ${fallback || '(none)'}`);
    }
  });
});

describe('configuration: proxies and TLS', () => {
  it('TRUSTED_PROXIES, PROXY_PROTOCOL, FORWARDED_HEADER: defaults, values, and the variable named when bad', () => {
    const defaults = loadConfig({});
    assert.deepEqual([defaults.trustedProxies, defaults.proxyProtocol, defaults.forwardedHeader], [[], false, 'x-forwarded-for']);
    const set = loadConfig({ TRUSTED_PROXIES: '10.0.0.5, 172.16.0.0/12,fd00::/8', PROXY_PROTOCOL: '1', FORWARDED_HEADER: 'forwarded' });
    assert.deepEqual([set.trustedProxies, set.proxyProtocol, set.forwardedHeader], [['10.0.0.5', '172.16.0.0/12', 'fd00::/8'], true, 'forwarded']);
    refuses({ TRUSTED_PROXIES: '10.0.0.0/40' }, 'TRUSTED_PROXIES');
    refuses({ TRUSTED_PROXIES: 'nginx' }, 'TRUSTED_PROXIES');
    refuses({ PROXY_PROTOCOL: 'yes' }, 'PROXY_PROTOCOL');
    refuses({ FORWARDED_HEADER: 'x-real-ip' }, 'FORWARDED_HEADER');
    // A PROXY header believed from nobody would refuse every connection that sends one.
    refuses({ PROXY_PROTOCOL: '1' }, 'TRUSTED_PROXIES');
  });

  it('TLS: off without TLS_CERT_FILE; RabbitMQ ports by default; a certificate needs its key; plain listeners may all be off only with a TLS one', () => {
    assert.equal(loadConfig({}).tls, undefined);
    const tls = loadConfig({ TLS_CERT_FILE: '/c.pem', TLS_KEY_FILE: '/k.pem' }).tls;
    assert.deepEqual(tls, { certFile: '/c.pem', keyFile: '/k.pem', caFile: undefined, stompTlsPort: 61614, wssPort: 15673 });
    refuses({ TLS_CERT_FILE: '/c.pem' }, 'TLS_KEY_FILE');
    refuses({ TLS_KEY_FILE: '/k.pem' }, 'TLS_CERT_FILE');
    refuses({ TLS_CA_FILE: '/ca.pem' }, 'TLS_CERT_FILE');
    refuses({ STOMP_TLS_PORT: '70000' }, 'STOMP_TLS_PORT');
    const tlsOnly = loadConfig({ TLS_CERT_FILE: '/c.pem', TLS_KEY_FILE: '/k.pem', STOMP_PORT: 'off', WS_PORT: 'off', WSS_PORT: 'off' });
    assert.deepEqual([tlsOnly.stompPort, tlsOnly.wsPort, tlsOnly.tls?.stompTlsPort, tlsOnly.tls?.wssPort], [undefined, undefined, 61614, undefined]);
    refuses({ TLS_CERT_FILE: '/c.pem', TLS_KEY_FILE: '/k.pem', STOMP_PORT: 'off', WS_PORT: 'off', STOMP_TLS_PORT: 'off', WSS_PORT: 'off' }, 'STOMP_PORT');
  });
});
