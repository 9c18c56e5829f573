// A runnable example IdP: node `oidc-provider` 9.x with handoff's session-transfer
// login (handoff-interaction.js), a password login page for development accounts,
// a native public client (PKCE, offline_access, rotating refresh tokens) and a web
// client. Run it behind handoff — see README.md.
//
//   ISSUER=http://127.0.0.1:8080 HANDOFF_JWKS_URL=http://127.0.0.1:9090/.well-known/handoff/jwks.json \
//   HANDOFF_ISSUER=handoff HANDOFF_AUDIENCE=http://127.0.0.1:8080 node server.js
//
// As a module, `createIdp(options)` returns the provider and its request listener
// (the end-to-end tests wrap it to record every request the IdP receives).
//
// This is an example, not a production IdP: accounts are a fixed list with
// plain-text passwords, storage is oidc-provider's in-memory adapter, the signing
// and cookie keys are generated at start-up (every restart logs everyone out).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';
import { format as formatUrl } from 'node:util';

import Provider, { errors } from 'oidc-provider';

import {
  createHandoffVerifier, grantRequested, handoffInteraction, SESSION_TRANSFER_AMR,
} from './handoff-interaction.js';

/** Development accounts: sub -> { password, email, name }. */
export const DEV_ACCOUNTS = {
  alice: { password: 'alice-password', email: 'alice@example.com', name: 'Alice Example' },
  bob: { password: 'bob-password', email: 'bob@example.com', name: 'Bob Example' },
};

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

/** The login page. Tests (and people) recognise it by `<form id="login"`. */
function loginPage({ uid, clientId, error }) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<h1>Sign in</h1>
<p>to continue to <b>${escapeHtml(clientId)}</b></p>
${error ? `<p role="alert">${escapeHtml(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
  <label>User <input name="login" autofocus required></label>
  <label>Password <input name="password" type="password" required></label>
  <button type="submit">Sign in</button>
</form>
<p><a href="/interaction/${escapeHtml(uid)}/abort">Cancel</a></p>
</body></html>
`;
}

/** The RP-initiated logout confirmation page (`GET /session/end`). */
function logoutPage(ctx, form) {
  ctx.type = 'html';
  ctx.body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign out</title></head>
<body>
<h1>Sign out of ${escapeHtml(ctx.host)}?</h1>
${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Sign out</button>
<button type="submit" form="op.logoutForm">Stay signed in</button>
</body></html>
`;
}

/** The page after a logout with no post_logout_redirect_uri. */
function loggedOutPage(ctx) {
  ctx.type = 'html';
  ctx.body = '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head><body><p id="signed-out">You are signed out.</p></body></html>\n';
}

/** Reads an application/x-www-form-urlencoded body (at most 8 KiB). */
async function readForm(ctx) {
  let raw;
  if (ctx.req.readable) {
    const chunks = [];
    let n = 0;
    for await (const chunk of ctx.req) {
      n += chunk.length;
      if (n > 8192) ctx.throw(413);
      chunks.push(chunk);
    }
    raw = Buffer.concat(chunks).toString('utf8');
  } else {
    // Something upstream (e.g. a recording wrapper) already read the body.
    raw = ctx.req.body === undefined ? '' : String(ctx.req.body);
  }
  return new URLSearchParams(raw);
}

/**
 * Creates the example IdP.
 *
 * @param {object} o
 * @param {string} o.issuer            the public URL (handoff's), e.g. http://127.0.0.1:8080
 * @param {object} o.handoff           { jwksUrl | jwks | secret, issuer, audience, header?, trustedPeer? }
 * @param {string[]} o.webRedirectUris  the web client's redirect URIs
 * @param {string} [o.webClientId='web-app']
 * @param {string} [o.webClientSecret='web-secret']
 * @param {string} [o.webBackchannelLogoutUri]  the web client's OpenID Connect
 *   Back-Channel Logout URI (handoff's: `{public URL}/handoff/backchannel-logout`)
 * @param {Array<{clientId:string, clientSecret:string, redirectUris?:string[], backchannelLogoutUri?:string}>} [o.moreWebClients]
 *   further confidential web clients (redirect URIs default to `webRedirectUris`)
 * @param {string} [o.nativeClientId='native-app']
 * @param {string[]} [o.nativeRedirectUris=['com.example.native:/callback']]
 * @param {object} [o.accounts=DEV_ACCOUNTS]
 * @param {(line:string) => void} [o.log=console.log]  one line per request and per event
 * @param {string[]} [o.cookieKeys]    keys that sign oidc-provider's cookies
 * @param {(config: object) => object|void} [o.configure]  last word on the
 *   oidc-provider configuration: receives it, may change it in place or return
 *   another (the end-to-end tests switch on request shapes, e.g. PAR, request
 *   objects, POST /auth, JARM, to prove handoff mediates them)
 */
export function createIdp(o) {
  const {
    issuer,
    handoff: handoffOptions,
    webClientId = 'web-app',
    webClientSecret = 'web-secret',
    webRedirectUris,
    webBackchannelLogoutUri,
    moreWebClients = [],
    nativeClientId = 'native-app',
    nativeRedirectUris = ['com.example.native:/callback'],
    accounts = DEV_ACCOUNTS,
    log = (line) => console.log(line),
    cookieKeys = [randomBytes(32).toString('base64url')],
    configure = (config) => config,
  } = o;
  if (!webRedirectUris?.length) throw new TypeError('createIdp: webRedirectUris is required');
  const webClients = [
    {
      clientId: webClientId, clientSecret: webClientSecret, redirectUris: webRedirectUris, backchannelLogoutUri: webBackchannelLogoutUri,
    },
    ...moreWebClients.map((c) => ({ redirectUris: webRedirectUris, ...c })),
  ];
  // Back-Channel Logout goes to handoff, which usually sits on a loopback or
  // private address: oidc-provider's SSRF guard (no special-use addresses) is
  // lifted for exactly the logout URIs registered here, and for nothing else.
  const backchannelUris = new Set(webClients.map((c) => c.backchannelLogoutUri).filter(Boolean)
    .map((u) => new URL(u).href));
  const fetchFn = (url, options) => {
    if (backchannelUris.has(new URL(url).href)) {
      const { dispatcher: _ssrfGuard, ...rest } = options;
      return globalThis.fetch(url, rest);
    }
    return globalThis.fetch(url, options);
  };

  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `rs-${randomBytes(6).toString('hex')}`, use: 'sig', alg: 'RS256' };

  async function findAccount(_ctx, id) {
    const a = Object.hasOwn(accounts, id) ? accounts[id] : undefined;
    if (!a) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id, email: a.email, email_verified: true, name: a.name,
        };
      },
    };
  }

  const config = {
    clients: [
      {
        // The native app: a public client (PKCE) with rotating refresh tokens.
        client_id: nativeClientId,
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: nativeRedirectUris,
        scope: 'openid offline_access email profile',
      },
      // The web apps that receive the session transfer: confidential clients that
      // may ask for offline_access (handoff's rules decide whether a refresh token
      // reaches them, SPEC §2.5).
      ...webClients.map((c) => ({
        client_id: c.clientId,
        client_secret: c.clientSecret,
        application_type: 'web',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: c.redirectUris,
        scope: 'openid offline_access email profile',
        // With a logout URI, the id_token carries `sid` and so does the logout
        // token: handoff maps it to the web session it bound (SPEC §2.6).
        ...(c.backchannelLogoutUri ? { backchannel_logout_uri: c.backchannelLogoutUri, backchannel_logout_session_required: true } : {}),
      })),
    ],
    findAccount,
    claims: {
      // amr in the id_token tells the web app how the user got in
      // ("session_transfer" for a handoff login, "pwd" for the password form).
      openid: ['sub', 'amr'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    jwks: { keys: [signingKey] },
    cookies: { keys: cookieKeys },
    features: {
      devInteractions: { enabled: false },
      // RFC 7009, fronted by handoff: a native app's revocation cascades to the web
      // sessions of its lineage; handoff revokes the web refresh tokens it
      // withholds. A client may revoke only its own tokens (oidc-provider's own
      // rule, spelled out; a public client's foreign token is silently ignored).
      revocation: {
        enabled: true,
        allowedPolicy: (_ctx, client, token) => {
          if (token.clientId === client.clientId) return true;
          if (client.clientAuthMethod === 'none') return false;
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        },
      },
      userinfo: { enabled: true },
      backchannelLogout: { enabled: backchannelUris.size > 0 },
      rpInitiatedLogout: { enabled: true, logoutSource: logoutPage, postLogoutSuccessSource: loggedOutPage },
    },
    fetch: fetchFn,
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 14 * 24 * 3600,
      Interaction: 600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
    },
    // Every refresh token rotates on every use: for the public native client that
    // is oidc-provider's default, spelled out because handoff's mint passes the
    // rotated token back to the app; for the web clients it is this example's
    // choice (handoff carries a web token's session binding across rotations).
    rotateRefreshToken: () => true,
  };
  const provider = new Provider(issuer, configure(config) ?? config);
  // handoff terminates the browser's connection and sets X-Forwarded-Proto/-Host/-For.
  provider.proxy = true;

  // One log line per request. It includes the full URL — a real IdP logs URLs, and
  // the tests check that no line ever holds a session transfer token.
  provider.use(async (ctx, next) => {
    const started = Date.now();
    try {
      await next();
    } finally {
      log(`idp ${ctx.method} ${ctx.originalUrl} -> ${ctx.status} (${Date.now() - started} ms)`);
    }
  });
  for (const ev of ['server_error', 'authorization.error', 'grant.error', 'end_session.error', 'userinfo.error', 'revocation.error']) {
    provider.on(ev, (_ctx, err) => log(`idp event ${ev}: ${err?.name ?? ''} ${err?.message ?? ''} ${err?.error_description ?? ''}`.trimEnd()));
  }
  provider.on('backchannel.success', (_ctx, client, accountId, sid) => log(`idp back-channel logout sent client=${client.clientId} sub=${accountId} sid=${sid}`));
  provider.on('backchannel.error', (_ctx, err, client, accountId, sid) => log(`idp back-channel logout failed client=${client.clientId} sub=${accountId} sid=${sid}: ${err?.message ?? err}`));

  // 1. handoff's session-transfer login (GET /interaction/:uid with a valid assertion).
  const verifier = createHandoffVerifier(handoffOptions);
  provider.use(handoffInteraction(provider, verifier, {
    findAccount,
    onResult: (r) => log(r.ok
      ? `idp handoff login uid=${r.uid} sub=${r.sub} client=${r.clientId} sid=${r.sid}`
      : `idp handoff assertion rejected uid=${r.uid} client=${r.clientId} reason=${r.reason}`),
  }));

  // 2. The ordinary interaction routes: login page, password check, consent, abort.
  const route = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?\/?$/;
  provider.use(async (ctx, next) => {
    const m = route.exec(ctx.path);
    if (!m) return next();
    const [, uid, action] = m;
    ctx.set('cache-control', 'no-store');
    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch (err) {
      ctx.status = 400;
      ctx.type = 'text/plain';
      ctx.body = 'This sign-in attempt has expired. Start again from the application.\n';
      log(`idp interaction ${uid}: ${err.message}`);
      return undefined;
    }
    if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
    const { prompt, params } = details;

    if (action === 'abort' && ctx.method === 'GET') {
      const to = await provider.interactionResult(ctx.req, ctx.res, {
        error: 'access_denied', error_description: 'End-User aborted interaction',
      }, { mergeWithLastSubmission: false });
      ctx.status = 303;
      return ctx.redirect(to);
    }

    if (prompt.name === 'login') {
      if (action === 'login' && ctx.method === 'POST') {
        const form = await readForm(ctx);
        const user = form.get('login') ?? '';
        const account = Object.hasOwn(accounts, user) ? accounts[user] : undefined;
        if (!account || account.password !== form.get('password')) {
          log(`idp password login failed uid=${uid} client=${params.client_id}`);
          ctx.status = 200;
          ctx.type = 'html';
          ctx.body = loginPage({ uid, clientId: params.client_id, error: 'Invalid user or password.' });
          return undefined;
        }
        log(`idp password login uid=${uid} sub=${user} client=${params.client_id}`);
        const grantId = await grantRequested(provider, details, user);
        const to = await provider.interactionResult(ctx.req, ctx.res, {
          login: { accountId: user, amr: ['pwd'], remember: true },
          consent: { grantId },
        }, { mergeWithLastSubmission: false });
        ctx.status = 303;
        return ctx.redirect(to);
      }
      if (ctx.method !== 'GET' || action) ctx.throw(405);
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = loginPage({ uid, clientId: params.client_id });
      return undefined;
    }

    if (prompt.name === 'consent' && ctx.method === 'GET' && !action) {
      // Both clients are first-party: consent is implied. A third-party client
      // would get a consent screen here.
      const grantId = await grantRequested(provider, details, details.session.accountId);
      const to = await provider.interactionResult(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      ctx.status = 303;
      return ctx.redirect(to);
    }
    return ctx.throw(400, `unsupported prompt ${prompt.name}`);
  });

  return { provider, callback: provider.callback(), verifier, SESSION_TRANSFER_AMR };
}

// `node server.js`: configuration from the environment.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const env = (k, d) => process.env[k] ?? d;
  const host = env('HOST', '127.0.0.1');
  const port = Number(env('PORT', '3000'));
  const publicUrl = env('ISSUER', 'http://127.0.0.1:8080');
  const handoff = {
    issuer: env('HANDOFF_ISSUER', 'handoff'),
    audience: env('HANDOFF_AUDIENCE', publicUrl),
    header: env('HANDOFF_HEADER', 'X-Handoff-Assertion'),
  };
  if (process.env.HANDOFF_HS256_SECRET) handoff.secret = process.env.HANDOFF_HS256_SECRET;
  else handoff.jwksUrl = env('HANDOFF_JWKS_URL', 'http://127.0.0.1:9090/.well-known/handoff/jwks.json');
  const { callback } = createIdp({
    issuer: publicUrl,
    handoff,
    webRedirectUris: env('WEB_REDIRECT_URIS', 'http://127.0.0.1:4000/callback').split(','),
    webClientSecret: env('WEB_CLIENT_SECRET', 'web-secret'),
    webBackchannelLogoutUri: process.env.WEB_BACKCHANNEL_LOGOUT_URI || undefined,
    nativeRedirectUris: env('NATIVE_REDIRECT_URIS', 'com.example.native:/callback').split(','),
  });
  createServer(callback).listen(port, host, () => {
    console.log(formatUrl('example IdP listening on http://%s:%d, issuer %s (reach it through handoff only)', host, port, publicUrl));
  });
}
