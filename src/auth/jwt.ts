// JWT authentication with `jose`: the link that turns a CONNECT's token into a Principal.
//
// - HS256/384/512 verify against JWT_SECRET; RS*/PS*/ES*/EdDSA against JWT_PUBLIC_KEY or
//   the JWKS at JWT_JWKS_URL (cached by jose, refetched when a token names an unknown kid).
// - The key is picked by the token's alg family and the accepted algorithms are only those
//   a configured key can verify: `alg: none` never passes, and an HS token can never be
//   checked against a public key (algorithm confusion).
// - exp (plus the clock tolerance) becomes the session's end: TOKEN_EXPIRED then.

import { createPublicKey, createSecretKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { createRemoteJWKSet, errors, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import { ConfigError } from '../config';
import type { JwtConfig } from '../config';
import { StompError } from '../session/errors';
import type { ConnectContext, Interceptor, Principal } from '../session/interceptor';
import { findToken } from './token-sources';

const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'];
const RSA_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
const ASYMMETRIC_ALGORITHMS = [...RSA_ALGORITHMS, 'ES256', 'ES384', 'ES512', 'EdDSA'];

export interface JwtVerifier {
  /** The principal a token stands for; StompError UNAUTHENTICATED / TOKEN_EXPIRED otherwise. */
  verify(token: string): Promise<Principal>;
}

/** Algorithms a PEM public key can verify, from its type (and curve). */
function algorithmsFor(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return RSA_ALGORITHMS;
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return curve === 'prime256v1' ? ['ES256'] : curve === 'secp384r1' ? ['ES384'] : curve === 'secp521r1' ? ['ES512'] : [];
    }
    case 'ed25519':
    case 'ed448':
      return ['EdDSA'];
    default:
      return [];
  }
}

export function createJwtVerifier(config: JwtConfig): JwtVerifier {
  const secret = config.secret === undefined ? undefined : createSecretKey(Buffer.from(config.secret));
  let publicKey: KeyObject | undefined;
  let publicAlgorithms: string[] = [];
  if (config.publicKeyPem !== undefined) {
    try {
      publicKey = createPublicKey(config.publicKeyPem);
    } catch (error) {
      throw new ConfigError('JWT_PUBLIC_KEY', '(PEM)', `expected a PEM public key: ${(error as Error).message}`);
    }
    publicAlgorithms = algorithmsFor(publicKey);
    if (publicAlgorithms.length === 0) throw new ConfigError('JWT_PUBLIC_KEY', '(PEM)', `expected an RSA, EC (P-256/384/521) or Ed25519 key, got ${publicKey.asymmetricKeyType}`);
  }
  const jwks = config.jwksUrl === undefined ? undefined : createRemoteJWKSet(new URL(config.jwksUrl), { cooldownDuration: 5000 });

  const algorithms = [...(secret ? HMAC_ALGORITHMS : []), ...publicAlgorithms, ...(jwks ? ASYMMETRIC_ALGORITHMS : [])];
  const getKey: JWTVerifyGetKey = (header, token) => {
    if (header.alg?.startsWith('HS')) {
      if (secret === undefined) throw new errors.JOSEAlgNotAllowed('HMAC tokens are not accepted');
      return secret;
    }
    if (publicKey !== undefined && publicAlgorithms.includes(header.alg ?? '')) return publicKey;
    if (jwks !== undefined) return jwks(header, token);
    throw new errors.JOSEAlgNotAllowed(`"${header.alg}" is not accepted`);
  };

  return {
    async verify(token: string): Promise<Principal> {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, getKey, {
          algorithms: [...new Set(algorithms)],
          clockTolerance: config.clockToleranceS,
          ...(config.requireExp ? { requiredClaims: ['exp'] } : {}),
          ...(config.issuer !== undefined ? { issuer: config.issuer } : {}),
          ...(config.audience !== undefined ? { audience: config.audience } : {}),
        }));
      } catch (error) {
        throw refusal(error);
      }
      const userId = payload[config.userClaim];
      if (typeof userId !== 'string' || userId === '') {
        throw new StompError('UNAUTHENTICATED', `the token has no ${config.userClaim} claim to take as the user id`);
      }
      return {
        userId,
        roles: rolesOf(payload, config.roleClaims),
        isAnonymous: false,
        ...(typeof payload.exp === 'number' ? { expiresAtMs: (payload.exp + config.clockToleranceS) * 1000 } : {}),
        tokenIssuedAtMs: typeof payload.iat === 'number' ? payload.iat * 1000 : 0,
      };
    },
  };
}

function rolesOf(payload: JWTPayload, claims: readonly string[]): string[] {
  for (const claim of claims) {
    const value = payload[claim];
    if (typeof value === 'string') return [value];
    if (Array.isArray(value)) return value.filter((role): role is string => typeof role === 'string');
  }
  return [];
}

/** jose's verdict as a STOMP refusal; the token itself never goes into the message. */
function refusal(error: unknown): StompError {
  if (error instanceof errors.JWTExpired) return new StompError('TOKEN_EXPIRED', 'the token expired');
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === 'missing') return new StompError('UNAUTHENTICATED', `the token has no ${error.claim} claim`);
    const what = error.claim === 'nbf' ? 'the token is not valid yet' : error.claim === 'iss' ? 'wrong token issuer' : error.claim === 'aud' ? 'wrong token audience' : `token claim ${error.claim} is invalid`;
    return new StompError('UNAUTHENTICATED', what);
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return new StompError('UNAUTHENTICATED', 'token algorithm not accepted');
  if (error instanceof errors.JWSSignatureVerificationFailed) return new StompError('UNAUTHENTICATED', 'token signature does not verify');
  if (error instanceof errors.JWKSNoMatchingKey) return new StompError('UNAUTHENTICATED', 'token signed by an unknown key');
  if (error instanceof errors.JWKSMultipleMatchingKeys) return new StompError('UNAUTHENTICATED', 'several JWKS keys match the token (the key set needs a kid per key)');
  if (error instanceof errors.JWKSTimeout) return new StompError('UNAUTHENTICATED', 'the key set (JWT_JWKS_URL) did not answer in time');
  if (error instanceof errors.JWKSInvalid) return new StompError('UNAUTHENTICATED', 'the key set (JWT_JWKS_URL) is not a valid JWKS');
  // jose's own texts name what is wrong (a part, a header) and never quote the token.
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return new StompError('UNAUTHENTICATED', `malformed token: ${error.message}`);
  if (error instanceof errors.JOSENotSupported) return new StompError('UNAUTHENTICATED', `token not supported: ${error.message}`);
  if (error instanceof StompError) return error;
  // Left: the key set could not be fetched (network, HTTP status) or a key not be used.
  return new StompError('UNAUTHENTICATED', `the token could not be verified: ${error instanceof Error ? error.message : String(error)}`);
}

/** The authenticating link: no valid token, no session. */
export function jwtAuthenticator(verifier: JwtVerifier): Interceptor {
  return {
    name: 'jwt',
    async onConnect(ctx: ConnectContext): Promise<void> {
      const found = findToken(ctx.frame, ctx.session.peer);
      if (found === undefined) {
        throw new StompError('UNAUTHENTICATED', 'no token: send "Authorization: Bearer <jwt>" or passcode on CONNECT, or access_token in the WebSocket URL or cookie');
      }
      ctx.principal = await verifier.verify(found.token);
    },
  };
}
