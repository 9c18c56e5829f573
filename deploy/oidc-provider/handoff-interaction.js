// handoff integration for node `oidc-provider` (panva) — 9.x, ESM.
//
// handoff (a reverse proxy in front of this IdP) redeems a session transfer token
// (STT) that a native app minted, and tells the IdP who the user is with a signed
// identity assertion in a request header (default `X-Handoff-Assertion`): a compact
// JWS, alg EdDSA, verifiable against handoff's JWKS
// (`/.well-known/handoff/jwks.json`). handoff attaches a fresh assertion (new jti,
// same sid/sub) to every request of the browser's login transaction, so it reaches
// the interaction route. This module:
//
//   1. verifies the assertion with `jose`: signature (EdDSA, or HS256 with a shared
//      secret), `iss`, `aud`, `exp`/`iat` (at most 60 s old), `amr` contains
//      `session_transfer`, `client_id` equals the authorization request's
//      `client_id`, and the `jti` is used at most once;
//   2. finishes the interaction as a login of `sub` with `amr: ["session_transfer"]`
//      and, by default, grants the scopes and claims that were requested (a
//      first-party web app; pass `grant: false` to let your consent screen decide).
//
// Anything wrong, or no assertion at all, and the caller renders its ordinary login
// page: never an error page that says why. The reason is given to `onResult` for
// logging; the assertion itself is never logged.
//
// The IdP must be reachable ONLY through handoff (handoff removes any client-sent
// assertion header, so through handoff nobody can forge one; around it, anybody
// could replay a captured one within its minute). See README.md.
//
// Usage (see server.js for a complete IdP):
//
//   import { createHandoffVerifier, handoffInteraction } from './handoff-interaction.js';
//   const handoff = createHandoffVerifier({
//     jwksUrl: 'http://127.0.0.1:9090/.well-known/handoff/jwks.json',
//     issuer: 'handoff', audience: 'https://login.example.com',
//   });
//   provider.use(handoffInteraction(provider, handoff));   // before your interaction routes
//
// or, inside your own interaction route (import finishTransferLogin too):
//
//   const details = await provider.interactionDetails(ctx.req, ctx.res);
//   if (details.prompt.name === 'login') {
//     const r = await handoff.verify(ctx.req.headers, { clientId: details.params.client_id });
//     if (r.ok) return finishTransferLogin(provider, ctx, details, r.claims);
//   }
//   // ...render the login form

import { createRemoteJWKSet, createLocalJWKSet, jwtVerify, errors as joseErrors } from 'jose';

/** The `amr` value handoff puts in every assertion (and this module in the session). */
export const SESSION_TRANSFER_AMR = 'session_transfer';

/** Default header name (Node lower-cases incoming header names). */
export const DEFAULT_HEADER = 'x-handoff-assertion';

/**
 * Single-use `jti` store kept in this process's memory: a Map from jti to its
 * expiry, bounded by `max` entries. Expired entries are dropped as new ones come in.
 *
 * When the map is full of unexpired entries, `consume` refuses (the login falls back
 * to the password page) rather than forgetting a jti that could then be replayed.
 *
 * One IdP process only. With several IdP instances behind a load balancer, a jti
 * seen by one is unknown to the others: use a shared store with the same interface,
 * e.g. Redis `SET handoff:jti:<jti> 1 NX EXAT <exp>` (see README.md).
 */
export class MemoryReplayCache {
  #seen = new Map(); // jti -> expiry (epoch seconds); insertion order = expiry order, roughly
  #max;

  constructor({ max = 100_000 } = {}) {
    this.#max = max;
  }

  /**
   * Records `jti` until `exp` (epoch seconds). Resolves true when it was not seen
   * before (the caller may accept the token), false for a replay or when full.
   */
  async consume(jti, exp) {
    const now = Math.floor(Date.now() / 1000);
    const known = this.#seen.get(jti);
    if (known !== undefined && known >= now) return false;
    if (this.#seen.size >= this.#max) this.#purge(now);
    if (this.#seen.size >= this.#max) return false;
    this.#seen.set(jti, exp);
    return true;
  }

  #purge(now) {
    for (const [jti, exp] of this.#seen) {
      if (exp < now) this.#seen.delete(jti);
    }
  }

  get size() {
    return this.#seen.size;
  }
}

function reasonOf(err) {
  if (!(err instanceof joseErrors.JOSEError)) return 'jwks_unavailable'; // e.g. fetch failed
  switch (err.code) {
    case 'ERR_JWT_EXPIRED':
      return err.claim === 'iat' ? 'too_old' : 'expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      switch (err.claim) {
        case 'iss': return 'wrong_issuer';
        case 'aud': return 'wrong_audience';
        case 'nbf': return 'not_yet_valid';
        default: return `bad_claim_${err.claim}`;
      }
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED': return 'bad_signature';
    case 'ERR_JWKS_NO_MATCHING_KEY': return 'unknown_key';
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS': return 'ambiguous_key';
    case 'ERR_JOSE_ALG_NOT_ALLOWED': return 'alg_not_allowed';
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWKS_INVALID':
    case 'ERR_JOSE_GENERIC': return 'jwks_unavailable';
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID': return 'malformed';
    default: return 'invalid';
  }
}

/**
 * Creates the verifier of handoff's identity assertions.
 *
 * @param {object} opts
 * @param {string|URL} [opts.jwksUrl]   handoff's JWKS (admin or public listener:
 *   `/.well-known/handoff/jwks.json`). Fetched and cached by jose; an unknown `kid`
 *   refetches (at most every 30 s), so handoff key rotation needs no IdP restart.
 * @param {object} [opts.jwks]          a static JWKS (`{keys:[...]}`, e.g. the output of
 *   `handoff --config FILE jwks`) instead of jwksUrl.
 * @param {Uint8Array|string} [opts.secret]  HS256 shared secret instead (handoff
 *   `assertion.alg = "HS256"`, `secret_file`), at least 32 bytes.
 * @param {string} opts.issuer          handoff's `[assertion] issuer`.
 * @param {string} opts.audience        handoff's `[assertion] audience` (this IdP).
 * @param {string} [opts.header]        handoff's `[assertion] header`.
 * @param {string} [opts.maxTokenAge]   default '60s' (handoff's ttl is ≤ 60 s).
 * @param {number} [opts.clockTolerance] seconds, default 5.
 * @param {{consume(jti:string, exp:number):Promise<boolean>}} [opts.replayCache]
 *   single-use jti store; default a MemoryReplayCache (one IdP process).
 * @param {(peerAddress:string)=>boolean} [opts.trustedPeer]  optional defence in
 *   depth: accept assertions only on connections from these peers (handoff's
 *   addresses). The primary control is that the IdP is reachable only via handoff.
 */
export function createHandoffVerifier(opts) {
  const {
    jwksUrl, jwks, secret, issuer, audience,
    header = DEFAULT_HEADER,
    maxTokenAge = '60s',
    clockTolerance = 5,
    replayCache = new MemoryReplayCache(),
    trustedPeer,
  } = opts ?? {};
  if (!issuer) throw new TypeError('createHandoffVerifier: issuer is required');
  if (!audience) throw new TypeError('createHandoffVerifier: audience is required');

  let key;
  let algorithms;
  if (secret !== undefined) {
    key = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
    if (key.length < 32) throw new TypeError('createHandoffVerifier: the HS256 secret must be at least 32 bytes');
    algorithms = ['HS256'];
  } else if (jwks) {
    key = createLocalJWKSet(jwks);
    algorithms = ['EdDSA', 'Ed25519'];
  } else if (jwksUrl) {
    key = createRemoteJWKSet(new URL(jwksUrl), {
      timeoutDuration: 5000,
      cooldownDuration: 30_000,
      cacheMaxAge: 10 * 60_000,
    });
    algorithms = ['EdDSA', 'Ed25519'];
  } else {
    throw new TypeError('createHandoffVerifier: one of jwksUrl, jwks or secret is required');
  }
  const headerName = header.toLowerCase();

  /**
   * Reads the assertion from `headers` (a Node IncomingHttpHeaders object, or a
   * Headers instance) and checks it. Never throws for a bad assertion.
   *
   * @param {object} headers
   * @param {object} expect
   * @param {string} expect.clientId  the authorization request's client_id.
   * @param {string} [expect.peer]    the connection's remote address (for trustedPeer).
   * @param {boolean} [expect.consume=true]  spend the jti (false: only look).
   * @returns {Promise<{ok:true, claims:object} | {ok:false, reason:string}>}
   */
  async function verify(headers, { clientId, peer, consume = true } = {}) {
    let raw = typeof headers?.get === 'function' ? headers.get(headerName) : headers?.[headerName];
    if (raw === undefined || raw === null || raw === '') return { ok: false, reason: 'absent' };
    if (Array.isArray(raw)) {
      if (raw.length !== 1) return { ok: false, reason: 'repeated_header' };
      [raw] = raw;
    }
    if (trustedPeer && !trustedPeer(peer ?? '')) return { ok: false, reason: 'untrusted_peer' };
    if (typeof raw !== 'string' || raw.length > 8192) return { ok: false, reason: 'malformed' };

    let payload;
    try {
      ({ payload } = await jwtVerify(raw.trim(), key, {
        algorithms,
        issuer,
        audience,
        maxTokenAge,
        clockTolerance,
        requiredClaims: ['sub', 'iat', 'exp', 'jti', 'amr', 'client_id'],
      }));
    } catch (err) {
      return { ok: false, reason: reasonOf(err) };
    }
    if (payload.exp - payload.iat > 60) return { ok: false, reason: 'lifetime_too_long' };
    if (typeof payload.sub !== 'string' || !payload.sub) return { ok: false, reason: 'bad_claim_sub' };
    if (typeof payload.jti !== 'string' || !payload.jti) return { ok: false, reason: 'bad_claim_jti' };
    if (!Array.isArray(payload.amr) || !payload.amr.includes(SESSION_TRANSFER_AMR)) {
      return { ok: false, reason: 'wrong_amr' };
    }
    if (!clientId || payload.client_id !== clientId) return { ok: false, reason: 'client_mismatch' };
    if (consume) {
      let fresh;
      try {
        fresh = await replayCache.consume(payload.jti, payload.exp + clockTolerance);
      } catch {
        return { ok: false, reason: 'replay_cache_unavailable' };
      }
      if (!fresh) return { ok: false, reason: 'replayed' };
    }
    return { ok: true, claims: payload };
  }

  return { verify, header: headerName, issuer, audience };
}

/**
 * Grants what the authorization request asked for (OIDC scopes and `claims`),
 * reusing the interaction's grant when there is one; returns the grant id. This is
 * the "first-party web app" policy: the native app's user is already logged in and
 * handoff's rules decided this web client may receive the transfer.
 */
export async function grantRequested(provider, details, accountId) {
  const { params, grantId } = details;
  let grant = grantId ? await provider.Grant.find(grantId) : undefined;
  if (!grant || grant.accountId !== accountId) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  if (params.scope) grant.addOIDCScope(params.scope);
  if (params.claims) {
    try {
      const { userinfo = {}, id_token: idToken = {} } = JSON.parse(params.claims);
      grant.addOIDCClaims([...Object.keys(userinfo), ...Object.keys(idToken)]);
    } catch {
      // oidc-provider validated `claims` already; ignore anything odd.
    }
  }
  const missing = details.prompt?.details ?? {};
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return grant.save();
}

/**
 * Finishes the interaction as a session-transfer login of `claims.sub` (koa ctx).
 * Answers 303 to the provider's resume URL.
 *
 * @param {object} [options]
 * @param {false|((provider, details, accountId) => Promise<string|undefined>)} [options.grant]
 *   how the consent part is settled: default grantRequested; false = leave it to
 *   the consent prompt that follows.
 */
export async function finishTransferLogin(provider, ctx, details, claims, { grant = grantRequested } = {}) {
  const result = {
    login: {
      accountId: claims.sub,
      amr: [SESSION_TRANSFER_AMR],
      // handoff caps the session cookie's life at the transfer session's absolute
      // limit; remember=true lets the cookie carry that expiry.
      remember: true,
    },
  };
  if (grant) {
    const grantId = await grant(provider, details, claims.sub);
    if (grantId) result.consent = { grantId };
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.set('cache-control', 'no-store');
  ctx.redirect(returnTo);
}

/**
 * Koa middleware for `provider.use(...)`: on `GET {interactionsPath}/:uid` with a
 * login prompt and a valid handoff assertion, finishes the login; otherwise passes
 * on to your own interaction routes (the login page).
 *
 * @param {import('oidc-provider').default} provider
 * @param {ReturnType<typeof createHandoffVerifier>} verifier
 * @param {object} [options]
 * @param {string} [options.interactionsPath='/interaction']  as in your
 *   `interactions.url` configuration.
 * @param {(event:{uid:string, ok:boolean, reason?:string, sub?:string, clientId?:string, sid?:string}) => void} [options.onResult]
 *   called once per interaction that carried an assertion (for logs/metrics).
 * @param {false|Function} [options.grant]  see finishTransferLogin.
 * @param {(ctx:object, sub:string) => Promise<object|undefined>} [options.findAccount]
 *   the `findAccount` of your provider configuration: when given, an assertion for
 *   an account it does not find falls back to the login page (reason
 *   `unknown_account`). Without it, oidc-provider's own findAccount call at the
 *   resume step refuses unknown accounts, less gracefully.
 */
export function handoffInteraction(provider, verifier, options = {}) {
  const {
    interactionsPath = '/interaction',
    onResult = () => {},
    grant,
    findAccount,
  } = options;
  const base = interactionsPath.replace(/\/+$/, '');
  const route = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/([A-Za-z0-9_-]+)/?$`);

  return async function handoffInteractionMiddleware(ctx, next) {
    const m = ctx.method === 'GET' ? route.exec(ctx.path) : null;
    if (!m || !ctx.get(verifier.header)) return next();

    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch {
      return next(); // no interaction cookie / expired: let the app's route answer
    }
    if (details.uid !== m[1] || details.prompt?.name !== 'login') return next();

    const r = await verifier.verify(ctx.req.headers, {
      clientId: details.params.client_id,
      peer: ctx.req.socket?.remoteAddress,
    });
    if (r.ok && findAccount && !(await findAccount(ctx, r.claims.sub))) {
      onResult({ uid: details.uid, ok: false, reason: 'unknown_account', clientId: details.params.client_id });
      return next();
    }
    if (!r.ok) {
      onResult({ uid: details.uid, ok: false, reason: r.reason, clientId: details.params.client_id });
      return next();
    }
    onResult({
      uid: details.uid, ok: true, sub: r.claims.sub, clientId: r.claims.client_id, sid: r.claims.sid,
    });
    return finishTransferLogin(provider, ctx, details, r.claims, grant === undefined ? {} : { grant });
  };
}
