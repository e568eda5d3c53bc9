// The TLS listeners' certificate and key (TLS_CERT_FILE, TLS_KEY_FILE) and, for client
// certificates, the CA that signs them (TLS_CA_FILE). Read at start, where a missing or bad
// file stops the start with one line naming the variable, and again on SIGHUP, where a bad
// file keeps the credentials in use (the caller logs why): open connections never notice.

import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import type { Logger } from 'pino';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** Set: clients must present a certificate signed by it (mutual TLS). */
  caFile: string | undefined;
}

/** A TLS file that cannot be used; the message is one line naming the variable. */
export class TlsFileError extends Error {
  readonly variable: string;

  constructor(variable: string, file: string, why: string) {
    super(`${variable}=${JSON.stringify(file)}: ${why}`);
    this.name = 'TlsFileError';
    this.variable = variable;
  }
}

export interface TlsCredentials {
  /** For tls.createServer / https.createServer and setSecureContext. */
  options: tls.TlsOptions;
  /** The server certificate's subject and end of validity, for the log. */
  subject: string;
  validTo: Date;
  isExpired: boolean;
}

function readPem(variable: string, file: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new TlsFileError(variable, file, code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : `cannot read it (${code ?? String(error)})`);
  }
  if (!bytes.includes('-----BEGIN ')) throw new TlsFileError(variable, file, 'not a PEM file (expected "-----BEGIN ...")');
  return bytes;
}

export function loadTlsCredentials(files: TlsFiles): TlsCredentials {
  const cert = readPem('TLS_CERT_FILE', files.certFile);
  const key = readPem('TLS_KEY_FILE', files.keyFile);
  const ca = files.caFile === undefined ? undefined : readPem('TLS_CA_FILE', files.caFile);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (error) {
    throw new TlsFileError('TLS_CERT_FILE', files.certFile, `not a valid certificate (${firstLine(error)})`);
  }
  try {
    tls.createSecureContext({ cert, key });
  } catch (error) {
    const text = firstLine(error);
    const isMismatch = /mismatch/i.test(text);
    throw new TlsFileError('TLS_KEY_FILE', files.keyFile, isMismatch ? 'the key does not belong to the certificate in TLS_CERT_FILE' : `not a usable private key (${text})`);
  }
  if (ca !== undefined) {
    try {
      tls.createSecureContext({ ca });
    } catch (error) {
      throw new TlsFileError('TLS_CA_FILE', files.caFile!, `not a valid CA certificate (${firstLine(error)})`);
    }
  }
  const validTo = new Date(certificate.validTo);
  return {
    options: { cert, key, ...(ca !== undefined ? { ca, requestCert: true, rejectUnauthorized: true } : {}) },
    subject: certificate.subject.replace(/\n/g, ', '),
    validTo,
    isExpired: validTo.getTime() < Date.now(),
  };
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}

/** One line for the operator: which certificate serves, until when; a warning when it has expired. */
export function logTlsCredentials(logger: Logger, credentials: TlsCredentials, message: string): void {
  const fields = { subject: credentials.subject, validTo: credentials.validTo.toISOString(), clientCertificates: credentials.options.requestCert === true };
  if (credentials.isExpired) logger.warn(fields, `${message}: the certificate has EXPIRED, clients will refuse it`);
  else logger.info(fields, message);
}
