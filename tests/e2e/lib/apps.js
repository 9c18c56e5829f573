// The two applications: a native app (public client, PKCE, refresh tokens, mints
// in Auth0's format over plain HTTP) and a web app (confidential client that
// starts an authorization-code flow in a browser and redeems the code).

import { createHash, randomBytes } from 'node:crypto';

import { Browser, isLoginPage } from './browser.js';
import { form, request } from './http.js';
import { NATIVE_CALLBACK, WEB_CALLBACK } from './stack.js';

export const STT_TYPE = 'urn:auth0:params:oauth:token-type:session_transfer_token';

export function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

/** The authorize URL (path + query) for a client. */
export function authorizeUrl({ clientId, redirectUri, scope, challenge, state = randomBytes(8).toString('hex'), extra = {} }) {
  const q = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...extra,
  });
  return `/auth?${q}`;
}

export class NativeApp {
  constructor(stack, { clientId = 'native-app', localAddress = '127.0.0.1' } = {}) {
    this.stack = stack;
    this.clientId = clientId;
    this.localAddress = localAddress;
    this.refreshToken = undefined;
  }

  /**
   * The app's first login: password + PKCE in its own auth session (a browser
   * the app drives), through handoff, asking for offline_access.
   */
  async login(user, password) {
    const b = new Browser({ origin: this.stack.origin, localAddress: this.localAddress, name: 'native-login' });
    const { verifier, challenge } = pkce();
    const start = await b.navigate(authorizeUrl({
      clientId: this.clientId, redirectUri: NATIVE_CALLBACK, scope: 'openid offline_access email', challenge, extra: { prompt: 'consent' },
    }));
    if (!isLoginPage(start.final)) throw new Error(`native login: expected the login page, got ${start.final.status}: ${start.final.text.slice(0, 300)}`);
    const action = /<form id="login" method="post" action="([^"]+)"/.exec(start.final.text)[1];
    const f = form({ login: user, password });
    const done = await b.navigate(action, { method: 'POST', body: f.body, headers: f.headers });
    if (!done.exit) throw new Error(`native login: no redirect to the app: ${done.final.status} ${done.final.text.slice(0, 300)}`);
    const code = done.exit.searchParams.get('code');
    if (!code) throw new Error(`native login: ${done.exit.href}`);
    const t = form({
      grant_type: 'authorization_code', code, redirect_uri: NATIVE_CALLBACK, client_id: this.clientId, code_verifier: verifier,
    });
    const res = await request({
      url: `${this.stack.origin}/token`, method: 'POST', body: t.body, headers: t.headers, localAddress: this.localAddress,
    });
    if (res.status !== 200) throw new Error(`native token: ${res.status} ${res.text}`);
    const tokens = res.json();
    if (!tokens.refresh_token) throw new Error('native token: no refresh_token (offline_access not granted?)');
    this.refreshToken = tokens.refresh_token;
    this.user = user;
    this.loginHops = [...start.hops, ...done.hops];
    return tokens;
  }

  /**
   * Mints a session transfer token (Auth0's ssoExchange wire format). Calls are
   * serialised, as an SDK's credentials manager does: the refresh token rotates on
   * every use, and oidc-provider treats a rotated-out token as stolen.
   */
  mint(opts = {}) {
    const run = this.#queue.then(() => this.#mint(opts));
    this.#queue = run.catch(() => {});
    return run;
  }

  #queue = Promise.resolve();

  /** A plain refresh (no mint), serialised with the mints; keeps the rotated token. */
  refresh() {
    const run = this.#queue.then(async () => {
      const t = form({ grant_type: 'refresh_token', client_id: this.clientId, refresh_token: this.refreshToken });
      const res = await request({
        url: `${this.stack.origin}/token`, method: 'POST', body: t.body, headers: t.headers, localAddress: this.localAddress,
      });
      const out = { status: res.status, body: res.text ? res.json() : undefined, previous: this.refreshToken };
      if (out.body?.refresh_token) this.refreshToken = out.body.refresh_token;
      return out;
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** RFC 7009 revocation of the app's current refresh token (a logout in the app), through handoff. */
  async revoke(token = this.refreshToken) {
    const t = form({ token, token_type_hint: 'refresh_token', client_id: this.clientId });
    return request({
      url: `${this.stack.origin}/token/revocation`, method: 'POST', body: t.body, headers: t.headers, localAddress: this.localAddress,
    });
  }

  async #mint({ json = false, audience = `urn:${this.stack.publicHost}:session_transfer` } = {}) {
    const fields = {
      grant_type: 'refresh_token', client_id: this.clientId, refresh_token: this.refreshToken, audience,
    };
    const body = json ? JSON.stringify(fields) : new URLSearchParams(fields).toString();
    const res = await request({
      url: `${this.stack.origin}/token`,
      method: 'POST',
      body,
      headers: { 'content-type': json ? 'application/json' : 'application/x-www-form-urlencoded' },
      localAddress: this.localAddress,
    });
    const out = { status: res.status, body: res.text ? res.json() : undefined, previous: this.refreshToken };
    if (out.body?.refresh_token) this.refreshToken = out.body.refresh_token;
    return out;
  }
}

export class WebApp {
  constructor(stack, { clientId = 'web-app', secret = 'web-secret' } = {}) {
    this.stack = stack;
    this.clientId = clientId;
    this.secret = secret;
  }

  /**
   * Starts a login: the authorize URL the web app sends the browser to. With
   * `offline`, it asks for a refresh token too (scope offline_access, which
   * oidc-provider honours only with prompt=consent).
   */
  begin({ extra = {}, offline = false } = {}) {
    const { verifier, challenge } = pkce();
    const state = randomBytes(8).toString('hex');
    return {
      verifier,
      state,
      url: authorizeUrl({
        clientId: this.clientId,
        redirectUri: WEB_CALLBACK,
        scope: offline ? 'openid offline_access email' : 'openid email',
        challenge,
        state,
        extra: offline ? { prompt: 'consent', ...extra } : extra,
      }),
    };
  }

  get #basic() {
    return `Basic ${Buffer.from(`${this.clientId}:${this.secret}`).toString('base64')}`;
  }

  /** A refresh-token grant (through handoff); the raw response. */
  async refresh(refreshToken) {
    const t = form({ grant_type: 'refresh_token', refresh_token: refreshToken });
    return request({
      url: `${this.stack.origin}/token`, method: 'POST', body: t.body, headers: { ...t.headers, authorization: this.#basic },
    });
  }

  /** The callback: checks state, redeems the code at the token endpoint (through handoff). */
  async finish(login, callbackUrl) {
    if (callbackUrl.searchParams.get('state') !== login.state) throw new Error('state mismatch');
    const code = callbackUrl.searchParams.get('code');
    if (!code) throw new Error(`no code: ${callbackUrl.href}`);
    const t = form({
      grant_type: 'authorization_code', code, redirect_uri: WEB_CALLBACK, code_verifier: login.verifier,
    });
    const res = await request({
      url: `${this.stack.origin}/token`,
      method: 'POST',
      body: t.body,
      headers: { ...t.headers, authorization: this.#basic },
    });
    if (res.status !== 200) throw new Error(`web token: ${res.status} ${res.text}`);
    this.lastTokenResponse = res;
    return res.json();
  }
}
