// Certificates a TLS test makes for itself with the `openssl` command line: a CA, server
// certificates it signed (for 127.0.0.1 and localhost), an expired one, one nobody trusts,
// and a client certificate. EC P-256 keys: quick to make.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface Certificates {
  dir: string;
  /** The CA that signed server, reloaded, expired and client. */
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** Another server certificate from the same CA (CN=stompd-reloaded), for SIGHUP. */
  reloadedCert: string;
  reloadedKey: string;
  /** Valid from 2020-01-01 to 2020-01-02. */
  expiredCert: string;
  expiredKey: string;
  /** Self-signed: no client's CA. */
  untrustedCert: string;
  untrustedKey: string;
  /** A client certificate from the CA (mutual TLS). */
  clientCert: string;
  clientKey: string;
  remove(): void;
}

const SERVER_NAMES = 'subjectAltName=DNS:localhost,IP:127.0.0.1';

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function newKeyAndRequest(dir: string, name: string, subject: string): void {
  openssl(dir, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
}

function signByCa(dir: string, name: string, extensions: string): void {
  fs.writeFileSync(path.join(dir, `${name}.ext`), `${extensions}\n`);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`]);
}

export function makeCertificates(): Certificates {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-tls-'));
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=stompd test CA', '-days', '2']);
  newKeyAndRequest(dir, 'server', '/CN=stompd-server');
  signByCa(dir, 'server', SERVER_NAMES);
  newKeyAndRequest(dir, 'reloaded', '/CN=stompd-reloaded');
  signByCa(dir, 'reloaded', SERVER_NAMES);
  newKeyAndRequest(dir, 'client', '/CN=client-alice');
  signByCa(dir, 'client', 'extendedKeyUsage=clientAuth');
  // x509 -req cannot date a certificate in the past (OpenSSL 3.0): `openssl ca` can.
  newKeyAndRequest(dir, 'expired', '/CN=stompd-expired');
  fs.writeFileSync(path.join(dir, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'serial'), '1000\n');
  fs.writeFileSync(
    path.join(dir, 'ca.cnf'),
    [
      '[ca]',
      'default_ca = test',
      '[test]',
      `dir = ${dir}`,
      'database = $dir/index.txt',
      'serial = $dir/serial',
      'new_certs_dir = $dir',
      'default_md = sha256',
      'policy = anything',
      'copy_extensions = none',
      'x509_extensions = server',
      '[anything]',
      'commonName = supplied',
      '[server]',
      SERVER_NAMES,
      '',
    ].join('\n'),
  );
  openssl(dir, ['ca', '-batch', '-notext', '-config', 'ca.cnf', '-cert', 'ca.pem', '-keyfile', 'ca.key', '-in', 'expired.csr', '-out', 'expired.pem', '-startdate', '20200101000000Z', '-enddate', '20200102000000Z']);
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    'untrusted.key',
    '-out',
    'untrusted.pem',
    '-subj',
    '/CN=stompd-untrusted',
    '-days',
    '2',
    '-addext',
    SERVER_NAMES,
  ]);
  const file = (name: string): string => path.join(dir, name);
  return {
    dir,
    caCert: file('ca.pem'),
    serverCert: file('server.pem'),
    serverKey: file('server.key'),
    reloadedCert: file('reloaded.pem'),
    reloadedKey: file('reloaded.key'),
    expiredCert: file('expired.pem'),
    expiredKey: file('expired.key'),
    untrustedCert: file('untrusted.pem'),
    untrustedKey: file('untrusted.key'),
    clientCert: file('client.pem'),
    clientKey: file('client.key'),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
