// The request shapes of the adversarial review (issue 9), against the real IdP
// (node oidc-provider 9 with deploy/oidc-provider's integration) behind handoff.
// Every test asserts the SAFE outcome (SPEC §7, invariants 4, 8, 11 and 12):
//
//   a. a dead (cascade-revoked or idle-expired) transfer session's `_session`
//      cookie, re-sent in another spelling (quotes, percent-encoding, whitespace,
//      duplicates), must not log anyone in;
//   b. a transfer redemption, or a live transfer session's SSO, with a response
//      mode handoff cannot see in the Location (form_post, fragment, web_message,
//      JARM, hybrid) or with parameters it cannot see in the query (PAR
//      request_uri, a request object, POST /auth): no authorization code issued
//      inside the transfer session escapes mediation — either no transfer login
//      (the login page) or the code's exchange gives the web app no refresh_token;
//   c. an attacker's STT planted in a browser that already has Bob's password
//      session must not bind Bob's session to the attacker's lineage;
//   d. a forged Host header must not make the IdP publish URLs on that host;
//   e. an STT outside the redemption entry point (query of another path, Referer,
//      POST body, path segment) must never reach the IdP;
//   f. `//auth?...&session_transfer_token=` must not be answered with a
//      protocol-relative Location.
//
// The provider runs with PAR (on by default), request objects (HS256 with the
// client's secret), POST /auth (enableHttpPostMethods; oidc-provider then wants
// its long-lived cookies SameSite=None, handoff rewrites them to Lax), JARM,
// web_message and the hybrid `code id_token` response type switched on for the
// web client, so each shape is one the IdP really serves.
//
// These tests were written against handoff's main before the issue-9 fixes and
// most of them fail there; each failure message says what was expected.

import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import {
  after, afterEach, before, describe, test,
} from 'node:test';

import { NativeApp, WebApp } from '../lib/apps.js';
import { Browser, hopSummary, isLoginPage } from '../lib/browser.js';
import {
  assertSttNotInHandoffLogs, setCookiesNamed, sttNeedles,
} from '../lib/checks.js';
import {
  form, jwtPayload, parseSetCookie, request,
} from '../lib/http.js';
import { sleep, startStack, WEB_CALLBACK } from '../lib/stack.js';

const IDLE = 3; // the stack's rules: session_idle = "3s", session_absolute = "6s"
const WEB_SECRET = 'web-secret';

/** oidc-provider configuration: every request shape of the review, served for real. */
function idpConfigure(config) {
  config.enableHttpPostMethods = true; // POST /auth (and POST /session/end)
  config.cookies = { ...config.cookies, long: { ...config.cookies?.long, sameSite: 'none' } };
  config.features = {
    ...config.features,
    pushedAuthorizationRequests: { enabled: true }, // the default in 9.x, spelled out
    requestObjects: { enabled: true, requireSignedRequestObject: false },
    jwtResponseModes: { enabled: true },
    webMessageResponseMode: { enabled: true },
  };
  config.responseTypes = ['code', 'code id_token'];
  for (const c of config.clients) {
    if (c.application_type !== 'web') continue;
    c.response_types = ['code', 'code id_token'];
    c.grant_types = ['authorization_code', 'refresh_token', 'implicit'];
    c.request_object_signing_alg = 'HS256';
  }
  return config;
}

/** A compact HS256 JWS (the request object, signed with the client's secret). */
function hs256(payload, secret) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc({ alg: 'HS256', typ: 'oauth-authz-req+jwt' })}.${enc(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

const htmlDecode = (s) => s.replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n)))
  .replace(/&#x([0-9a-f]+);/gi, (_, n) => String.fromCharCode(parseInt(n, 16)))
  .replace(/&quot;/g, '"').replace(/&amp;/g, '&');

/**
 * The authorization code in whatever shape the IdP delivered it: the Location's
 * query or fragment, a form_post page, a web_message page, or a JARM `response`
 * JWT in any of those. Returns { code, via } or undefined.
 */
function findCode(final, exit) {
  const fromParams = (p, via) => {
    if (p.get('code')) return { code: p.get('code'), via };
    if (p.get('response')) {
      const jarm = jwtPayload(p.get('response'));
      if (jarm.code) return { code: jarm.code, via: `${via} (JARM)` };
    }
    return undefined;
  };
  if (exit) {
    const q = fromParams(exit.searchParams, 'Location query');
    if (q) return q;
    const f = fromParams(new URLSearchParams(exit.hash.slice(1)), 'Location fragment');
    if (f) return f;
  }
  const text = final?.text ?? '';
  const input = (name) => {
    const m = new RegExp(`<input[^>]*name="${name}"[^>]*value="([^"]*)"`).exec(text)
      ?? new RegExp(`<input[^>]*value="([^"]*)"[^>]*name="${name}"`).exec(text);
    return m ? htmlDecode(m[1]) : undefined;
  };
  if (input('code')) return { code: input('code'), via: 'form_post page' };
  if (input('response')) {
    const jarm = jwtPayload(input('response'));
    if (jarm.code) return { code: jarm.code, via: 'form_post page (JARM)' };
  }
  // web_message: the response is a JSON object inside the page's script.
  const wm = /"code"\s*:\s*"([^"]+)"/.exec(text);
  if (wm) return { code: wm[1], via: 'web_message page' };
  const wmJarm = /"response"\s*:\s*"([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)"/.exec(text);
  if (wmJarm) {
    const jarm = jwtPayload(wmJarm[1]);
    if (jarm.code) return { code: jarm.code, via: 'web_message page (JARM)' };
  }
  return undefined;
}

describe('issue 9: request shapes handoff must not be fooled by (real oidc-provider)', { timeout: 120_000 }, () => {
  let stack;
  let web;
  const stts = [];

  before(async () => {
    stack = await startStack({ name: 'attacks', idpConfigure });
    web = new WebApp(stack);
  });

  afterEach(() => {
    if (stack) assertSttNotInHandoffLogs(stack, stts);
  });

  after(async () => {
    if (process.env.E2E_VERBOSE && stack) {
      console.log(stack.idpLog.join('\n'));
      console.log(stack.handoffStderr);
    }
    await stack?.stop();
  });

  // ---- helpers ------------------------------------------------------------------

  /** A native app of its own (its own lineage), logged in with a password. */
  async function nativeApp(user = 'alice') {
    const app = new NativeApp(stack);
    await app.login(user, `${user}-password`);
    return app;
  }

  async function mint(app) {
    const m = await app.mint();
    assert.equal(m.status, 200, `mint: ${JSON.stringify(m.body)}`);
    stts.push(m.body.access_token);
    return m.body.access_token;
  }

  const plantStt = (b, stt) => b.setCookie(`auth0_session_transfer_token=${stt}; Secure; HttpOnly; Path=/`);

  /** A browser with a live transfer session (cookie delivery, plain code flow). */
  async function transferSession(app, name) {
    const b = new Browser({ origin: stack.origin, name });
    await plantStt(b, await mint(app));
    const login = web.begin();
    const nav = await b.navigate(login.url);
    assert.ok(nav.exit && !nav.hops.some((h) => isLoginPage(h.res)), `${name}: the transfer login completes (${hopSummary(nav.hops).join(' | ')})`);
    const id = jwtPayload((await web.finish(login, nav.exit)).id_token);
    assert.equal(id.sub, app.user);
    assert.deepEqual(id.amr, ['session_transfer']);
    assert.ok(await b.cookie('_session'), `${name}: holds the IdP session cookie`);
    return b;
  }

  /** A browser logged in to the web app by the password form (an unbound IdP session). */
  async function passwordSession(user, name) {
    const b = new Browser({ origin: stack.origin, name });
    const login = web.begin();
    const start = await b.navigate(login.url);
    assert.ok(isLoginPage(start.final), `${name}: the login page`);
    const action = /<form id="login" method="post" action="([^"]+)"/.exec(start.final.text)[1];
    const f = form({ login: user, password: `${user}-password` });
    const done = await b.navigate(action, { method: 'POST', body: f.body, headers: f.headers });
    assert.ok(done.exit, `${name}: the password login completes`);
    assert.equal(jwtPayload((await web.finish(login, done.exit)).id_token).sub, user);
    return b;
  }

  /** The authorize parameters of a web login asking for a refresh token (offline_access, prompt=consent). */
  function offlineLogin(extra = {}) {
    const login = web.begin({ offline: true, extra });
    login.params = Object.fromEntries(new URL(login.url, stack.origin).searchParams);
    return login;
  }

  /** The code exchange, as the web app does it (through handoff), and what the IdP answered. */
  async function exchange(code, login) {
    const t = form({
      grant_type: 'authorization_code', code, redirect_uri: WEB_CALLBACK, code_verifier: login.verifier,
    });
    const res = await request({
      url: `${stack.origin}/token`,
      method: 'POST',
      body: t.body,
      headers: { ...t.headers, authorization: `Basic ${Buffer.from(`web-app:${WEB_SECRET}`).toString('base64')}` },
    });
    const rec = stack.idpRequests.find((r) => r.method === 'POST' && r.url === '/token' && new URLSearchParams(r.body).get('code') === code);
    let idp;
    try { idp = rec?.response ? JSON.parse(rec.response.body) : undefined; } catch { idp = undefined; }
    let body;
    try { body = JSON.parse(res.text); } catch { body = undefined; }
    return { status: res.status, body, idp };
  }

  /**
   * Invariant 11 for one navigation of a transfer (redemption or SSO): the safe
   * outcomes are the login page (no transfer login / no SSO), a 4xx handoff gave
   * itself (the IdP never saw the request), or a code whose exchange hands the
   * web app no refresh token (mediated). Anything else is reported as what it was.
   */
  async function assertNoCodeEscapes(nav, login, why, from) {
    const where = hopSummary(nav.hops, nav.exit).join(' | ');
    if (nav.hops.some((h) => isLoginPage(h.res))) return 'login page';
    const last = nav.hops.at(-1);
    if (last.status >= 400 && last.status < 500) {
      const reached = stack.idpRequests.slice(from).some((r) => r.url.split('?')[0] === new URL(last.url).pathname && r.method === last.method);
      assert.ok(!reached, `${why}: the IdP itself answered ${last.status} (${nav.final.text.slice(0, 200)}): the shape is not configured right, the test proves nothing (${where})`);
      return `handoff ${last.status}`;
    }
    const found = findCode(nav.final, nav.exit);
    assert.ok(found, `${why}: expected the login page, a 4xx from handoff, or a code to exchange; got ${nav.final.status}: ${nav.final.text.slice(0, 300)} (${where})`);
    const ex = await exchange(found.code, login);
    assert.equal(ex.status, 200, `${why}: the code exchange: ${ex.status} ${JSON.stringify(ex.body)}`);
    assert.equal(
      ex.body.refresh_token,
      undefined,
      `${why}: expected no transfer login or a mediated code exchange; the code (delivered in the ${found.via}) escaped mediation and `
      + `the web app got a refresh_token (allow_refresh_token = false; the IdP's answer held ${ex.idp?.refresh_token ? 'one' : 'none'}; sub=${jwtPayload(ex.body.id_token).sub}) [${where}]`,
    );
    return `code via ${found.via}, mediated`;
  }

  // The shapes. Each returns { url, method?, body?, headers? } for the browser's
  // navigation, from the authorize parameters of `login` (PKCE, state, scope
  // offline_access, prompt=consent).
  const SHAPES = {
    'response_mode=form_post': async (login) => ({ url: `/auth?${new URLSearchParams({ ...login.params, response_mode: 'form_post' })}` }),
    'PAR (/request, response_mode=form_post pushed; /auth sees only request_uri)': async (login) => {
      const f = form({ ...login.params, response_mode: 'form_post' });
      const res = await request({
        url: `${stack.origin}/request`,
        method: 'POST',
        body: f.body,
        headers: { ...f.headers, authorization: `Basic ${Buffer.from(`web-app:${WEB_SECRET}`).toString('base64')}` },
      });
      assert.equal(res.status, 201, `PAR: ${res.status} ${res.text}`);
      return { url: `/auth?${new URLSearchParams({ client_id: 'web-app', request_uri: res.json().request_uri })}` };
    },
    'PAR (/request, plain query response mode)': async (login) => {
      const f = form(login.params);
      const res = await request({
        url: `${stack.origin}/request`,
        method: 'POST',
        body: f.body,
        headers: { ...f.headers, authorization: `Basic ${Buffer.from(`web-app:${WEB_SECRET}`).toString('base64')}` },
      });
      assert.equal(res.status, 201, `PAR: ${res.status} ${res.text}`);
      return { url: `/auth?${new URLSearchParams({ client_id: 'web-app', request_uri: res.json().request_uri })}` };
    },
    'request object (HS256 with the client secret, response_mode=form_post inside)': async (login) => {
      const now = Math.floor(Date.now() / 1000);
      const jwt = hs256({
        ...login.params, response_mode: 'form_post', iss: 'web-app', aud: stack.origin, iat: now, exp: now + 60, jti: randomBytes(8).toString('hex'),
      }, WEB_SECRET);
      return { url: `/auth?${new URLSearchParams({ client_id: 'web-app', response_type: 'code', scope: login.params.scope, request: jwt })}` };
    },
    'POST /auth, parameters in the body (response_mode=form_post), client_id in the query': async (login) => {
      const f = form({ ...login.params, response_mode: 'form_post' });
      return {
        url: '/auth?client_id=web-app', method: 'POST', body: f.body, headers: f.headers,
      };
    },
    'POST /auth, parameters in the body only (plain query response mode)': async (login) => {
      const f = form(login.params);
      return {
        url: '/auth', method: 'POST', body: f.body, headers: f.headers,
      };
    },
    'response_mode=fragment': async (login) => ({ url: `/auth?${new URLSearchParams({ ...login.params, response_mode: 'fragment' })}` }),
    'response_mode=web_message': async (login) => ({ url: `/auth?${new URLSearchParams({ ...login.params, response_mode: 'web_message' })}` }),
    'response_mode=query.jwt (JARM)': async (login) => ({ url: `/auth?${new URLSearchParams({ ...login.params, response_mode: 'query.jwt' })}` }),
    'response_mode=jwt (JARM)': async (login) => ({ url: `/auth?${new URLSearchParams({ ...login.params, response_mode: 'jwt' })}` }),
    'response_type=code id_token (hybrid, fragment)': async (login) => ({ url: `/auth?${new URLSearchParams({ ...login.params, response_type: 'code id_token', nonce: randomBytes(8).toString('hex') })}` }),
  };

  // ---- 0. the recorder -------------------------------------------------------------

  test('recorder: a POST /auth body reaches the IdP intact and is recorded as sent', async () => {
    const login = offlineLogin();
    const f = form({ ...login.params, response_mode: 'form_post' });
    const from = stack.idpRequests.length;
    const res = await request({
      url: `${stack.origin}/auth`, method: 'POST', body: f.body, headers: f.headers,
    });
    const rec = stack.idpRequests.slice(from).find((r) => r.method === 'POST' && r.url === '/auth');
    assert.ok(rec, 'the IdP received POST /auth');
    assert.equal(rec.body, f.body, 'the recorder saw the body exactly as sent');
    assert.ok(rec.bodyComplete, 'the recorder saw the end of the body');
    // The IdP read the parameters out of that body itself (no pre-parsed body):
    // a valid authorization request without a session goes to the login interaction.
    assert.equal(res.status, 303, `POST /auth: ${res.status} ${res.text.slice(0, 200)}`);
    assert.match(res.headers.location ?? '', /^\/interaction\//, 'oidc-provider parsed client_id, redirect_uri, ... from the body');
  });

  // ---- a. revived session by cookie spelling ------------------------------------

  test('a: a dead transfer session\'s _session, re-sent quoted / encoded / padded / duplicated, logs nobody in', async () => {
    // Two dead sessions: one cascade-revoked (the native app logs out), one past its idle limit.
    const cascadeApp = await nativeApp();
    const cascaded = await transferSession(cascadeApp, 'cascaded');
    const idleApp = await nativeApp();
    const idled = await transferSession(idleApp, 'idled');
    const dead = [
      ['cascade-revoked', await cascaded.jar.getCookieString(`${stack.origin}/auth`)],
      ['idle-expired', await idled.jar.getCookieString(`${stack.origin}/auth`)],
    ];
    const rev = await cascadeApp.revoke();
    assert.equal(rev.status, 200, `native revocation: ${rev.status} ${rev.text}`);
    await sleep((IDLE + 0.8) * 1000);

    const variants = {
      'as it was (control)': (v) => `_session=${v}`,
      'leading quote plus one junk char ("V~)': (v) => `_session="${v}~`,
      'leading quote only ("V)': (v) => `_session="${v}`,
      'trailing quote only (V")': (v) => `_session=${v}"`,
      'both quotes ("V")': (v) => `_session="${v}"`,
      'percent-encoded': (v) => `_session=${[...v].map((c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`).join('')}`,
      'surrounding whitespace': (v) => `_session= ${v} `,
      'surrounding tab': (v) => `_session=\t${v}\t`,
      'duplicate, junk first': (v) => `_session=junk; _session=${v}`,
      'duplicate, quoted junk first': (v) => `_session="junk~; _session=${v}`,
      'duplicate, real value quoted second': (v) => `_session=junk; _session="${v}~`,
    };
    const failures = [];
    for (const [why, kept] of dead) {
      const m = /(?:^|; )_session=([^;]*)/.exec(kept);
      assert.ok(m, `${why}: the kept Cookie header holds _session`);
      const value = m[1];
      const others = kept.split('; ').filter((c) => !c.startsWith('_session='));
      for (const [name, spell] of Object.entries(variants)) {
        for (const prompt of [undefined, 'none']) {
          const login = web.begin({ extra: prompt ? { prompt } : {} });
          const cookie = [...others, spell(value)].join('; ');
          const res = await request({ url: `${stack.origin}${login.url}`, headers: { cookie } });
          const loc = res.headers.location ?? '';
          const loggedIn = res.status === 303 && loc.startsWith(WEB_CALLBACK) && new URL(loc).searchParams.get('code');
          const safe = res.status === 303 && (loc.startsWith('/interaction/') || (loc.startsWith(WEB_CALLBACK) && new URL(loc).searchParams.get('error') === 'login_required'));
          if (!safe) {
            failures.push(`${why} session, ${name}${prompt ? ', prompt=none' : ''}: ${loggedIn ? 'the IdP LOGGED IN (a code)' : `${res.status} ${loc.split('?')[0]}`}`);
          }
        }
      }
    }
    assert.deepEqual(failures, [], 'expected the login interaction (or login_required with prompt=none) for every spelling of a dead _session; got:\n  '
      + `${failures.join('\n  ')}`);
  });

  // ---- b. response modes and request shapes handoff cannot see -------------------

  describe('b: no code issued inside a transfer session escapes mediation', () => {
    let app;
    before(async () => { app = await nativeApp(); });

    for (const [shape, build] of Object.entries(SHAPES)) {
      test(`b: redemption (STT cookie) with ${shape}`, async (t) => {
        const login = offlineLogin();
        const b = new Browser({ origin: stack.origin, name: `redeem ${shape}` });
        await plantStt(b, await mint(app));
        const from = stack.idpRequests.length;
        const req = await build(login);
        const nav = await b.navigate(req.url, req);
        t.diagnostic(`${shape}: ${await assertNoCodeEscapes(nav, login, `redemption with ${shape}`, from)}`);
      });
    }

    for (const [shape, build] of Object.entries(SHAPES)) {
      test(`b: SSO of a live (bound) transfer session with ${shape}`, async (t) => {
        const b = await transferSession(app, `sso ${shape}`);
        const login = offlineLogin();
        const from = stack.idpRequests.length;
        const req = await build(login);
        const nav = await b.navigate(req.url, req);
        t.diagnostic(`${shape}: ${await assertNoCodeEscapes(nav, login, `SSO with ${shape}`, from)}`);
      });
    }
  });

  // ---- c. an STT planted next to another user's session ---------------------------

  test('c: an attacker\'s STT planted in Bob\'s browser does not bind Bob\'s session to the attacker\'s lineage', async (t) => {
    const alice = await nativeApp('alice'); // the attacker's own native app
    const stt = await mint(alice);
    const bob = await passwordSession('bob', 'bob');
    const bobSession = (await bob.cookie('_session')).value;
    await plantStt(bob, stt);
    const login = web.begin();
    const nav = await bob.navigate(login.url);
    let who = 'no code';
    if (nav.exit?.searchParams.get('code')) {
      const id = jwtPayload((await web.finish(login, nav.exit)).id_token);
      who = `sub=${id.sub} amr=${JSON.stringify(id.amr)}`;
      if (id.sub === 'bob') {
        assert.ok(!id.amr?.includes('session_transfer'), `Bob's code must not be a session-transfer login: ${who}`);
      }
    }
    t.diagnostic(`the planted redemption: ${hopSummary(nav.hops, nav.exit).join(' | ')} -> ${who}`);
    // Alice logs out in her native app: the cascade revokes her lineage's web sessions.
    const rev = await alice.revoke();
    assert.equal(rev.status, 200, `native revocation: ${rev.status} ${rev.text}`);
    // Bob's session, if the browser still holds it, is Bob's own: it lives on.
    const still = await bob.cookie('_session');
    if (still?.value === bobSession) {
      const again = web.begin({ extra: { prompt: 'none' } });
      const nav2 = await bob.navigate(again.url);
      const expired = setCookiesNamed(nav2.hops, '_session').filter((c) => Number(c.attrs['max-age']) === 0);
      assert.ok(
        nav2.exit?.searchParams.get('code'),
        `expected Bob's own password session to survive the revocation of Alice's lineage; got ${nav2.exit ? nav2.exit.search.replace(/state=[^&]*/, '') : nav2.final.status}`
        + `${expired.length ? ' (handoff expired _session: it had bound Bob\'s session to Alice\'s lineage, invariant 12)' : ''}`,
      );
      assert.equal(jwtPayload((await web.finish(again, nav2.exit)).id_token).sub, 'bob');
    } else {
      // The IdP replaced Bob's session: the new one must be Alice's transfer
      // login and the Bob session cookie value must not have been bound.
      assert.match(who, /sub=alice/, `Bob's session cookie changed but no transfer login of Alice happened: ${who}`);
    }
  });

  // ---- d. Host header ------------------------------------------------------------

  test('d: a forged Host (or X-Forwarded-Host) does not make the IdP publish URLs on that host', async () => {
    const failures = [];
    for (const headers of [{ host: 'evil.example' }, { 'x-forwarded-host': 'evil.example' }, { host: 'evil.example', 'x-forwarded-host': 'evil.example' }]) {
      const res = await request({ url: `${stack.origin}/.well-known/openid-configuration`, headers });
      const what = JSON.stringify(headers);
      if (res.status === 421 || res.status === 400) continue;
      if (res.status !== 200) { failures.push(`${what}: ${res.status}`); continue; }
      if (res.text.includes('evil.example')) {
        failures.push(`${what}: the discovery document publishes evil.example (authorization_endpoint ${res.json().authorization_endpoint})`);
      } else if (!res.json().authorization_endpoint?.startsWith(stack.origin)) {
        failures.push(`${what}: authorization_endpoint ${res.json().authorization_endpoint} is not on ${stack.origin}`);
      }
    }
    assert.deepEqual(failures, [], `expected 421 (or the configured public host ${stack.publicHost} in every URL); got:\n  ${failures.join('\n  ')}`);
  });

  // ---- e. STT outside the redemption entry point ----------------------------------

  test('e: an STT in another path\'s query, a Referer, a POST /auth body or a path segment never reaches the IdP', async () => {
    const app = await nativeApp();
    const stt = await mint(app);
    const enc = encodeURIComponent(stt);
    const login = web.begin();
    const f = form({ ...Object.fromEntries(new URL(login.url, stack.origin).searchParams), session_transfer_token: stt });
    const shapes = {
      'query of /me': { url: `/me?session_transfer_token=${enc}` },
      'query of /interaction/x': { url: `/interaction/x?session_transfer_token=${enc}` },
      'query of /.well-known/openid-configuration': { url: `/.well-known/openid-configuration?session_transfer_token=${enc}` },
      'Referer of /auth': { url: login.url, headers: { referer: `https://web.example/page?session_transfer_token=${enc}` } },
      'Referer of /interaction/x': { url: '/interaction/x', headers: { referer: `${stack.origin}/auth?session_transfer_token=${enc}` } },
      'POST /auth body': { url: '/auth', method: 'POST', body: f.body, headers: f.headers },
      'path segment /auth/STT': { url: `/auth/${enc}` },
      'path segment /session_transfer_token/STT': { url: `/session_transfer_token/${enc}` },
      'path segment /interaction/STT': { url: `/interaction/${enc}` },
    };
    const failures = [];
    const needles = sttNeedles(stt);
    for (const [name, s] of Object.entries(shapes)) {
      const from = stack.idpRequests.length;
      const logFrom = stack.idpLog.length;
      const res = await request({
        url: `${stack.origin}${s.url}`, method: s.method ?? 'GET', headers: s.headers ?? {}, body: s.body,
      });
      await sleep(20); // the IdP's log line is written as its answer goes out
      const seen = [];
      for (const r of stack.idpRequests.slice(from)) {
        const hay = [['URL', r.url], ['body', r.body], ...Array.from({ length: r.rawHeaders.length / 2 }, (_, i) => [`header ${r.rawHeaders[2 * i]}`, r.rawHeaders[2 * i + 1]])];
        for (const [where, text] of hay) if (needles.some((n) => text.includes(n))) seen.push(`request ${where}`);
      }
      for (const l of stack.idpLog.slice(logFrom)) if (needles.some((n) => l.includes(n))) seen.push('log line');
      if (seen.length) failures.push(`${name} (handoff answered ${res.status}): the IdP got the STT in ${[...new Set(seen)].join(', ')}`);
    }
    assert.deepEqual(failures, [], `expected the STT never to reach the IdP (invariant 4); got:\n  ${failures.join('\n  ')}`);
  });

  // ---- g. a login transaction finishing an interaction it did not start ----------------

  const basicAuth = (scheme) => `${scheme} ${Buffer.from(`web-app:${WEB_SECRET}`).toString('base64')}`;

  /** The code exchange with client_secret_basic, its scheme spelled `scheme`. */
  async function exchangeBasic(code, login, scheme) {
    const t = form({ grant_type: 'authorization_code', code, redirect_uri: WEB_CALLBACK, code_verifier: login.verifier });
    const res = await request({ url: `${stack.origin}/token`, method: 'POST', body: t.body, headers: { ...t.headers, authorization: basicAuth(scheme) } });
    let body;
    try { body = JSON.parse(res.text); } catch { body = res.text; }
    return { status: res.status, body };
  }

  // Found by a pentest of the fix: an interaction started by a form_post authorize
  // outside any transfer, then visited with a running transaction's cookie, must
  // not be finished by the assertion (the transaction follows the IdP's own
  // redirect chain only); and an unrecorded code exchanged with a lower-case
  // `basic` scheme is still mediated.
  for (const scheme of ['Basic', 'basic']) {
    test(`g: a login transaction does not finish an interaction it did not start (exchange with "${scheme}")`, async () => {
      const app = await nativeApp();
      const b = new Browser({ origin: stack.origin, name: `hijack-${scheme}` });
      const login = offlineLogin();
      const r1 = await b.fetch(`/auth?${new URLSearchParams({ ...login.params, response_mode: 'form_post' })}`);
      assert.equal(r1.status, 303, r1.text);
      const foreign = r1.headers.location;
      await plantStt(b, await mint(app));
      const r2 = await b.fetch(offlineLogin().url);
      assert.ok(r2.setCookies.some((c) => c.startsWith('__Host-handoff_tx=')), 'the redemption started a transaction');
      const nav = await b.navigate(foreign);
      const found = findCode(nav.final, nav.exit);
      if (found) {
        const ex = await exchangeBasic(found.code, login, scheme);
        assert.equal(ex.body.refresh_token, undefined, `a refresh token escaped via ${found.via}: ${JSON.stringify(ex.body).slice(0, 120)}`);
      }
      assert.equal(found, undefined, `the foreign interaction was finished by the transaction's assertion (${hopSummary(nav.hops, nav.exit).join(' | ')})`);
    });
  }

  // ---- f. protocol-relative redirect ------------------------------------------------

  test('f: //auth?...&session_transfer_token=... is not answered with a protocol-relative Location', async () => {
    const app = await nativeApp();
    const failures = [];
    for (const prefix of ['//auth', '///auth', '//evil.example/auth']) {
      const stt = await mint(app);
      const q = new URL(web.begin().url, stack.origin).search;
      const res = await rawGet(`${prefix}${q}&session_transfer_token=${encodeURIComponent(stt)}`);
      const loc = res.headers.location ?? '';
      if (/^[/\\]{2}/.test(loc) || /^[a-z][a-z0-9+.-]*:/i.test(loc) && !loc.startsWith(stack.origin)) {
        failures.push(`GET ${prefix}?...: ${res.status} Location: ${loc.split('?')[0]}?...`);
      }
    }
    assert.deepEqual(failures, [], `expected no Location that leaves the origin (a 4xx, or a same-origin path); got:\n  ${failures.join('\n  ')}`);
  });

  /** GET with a raw request target (node's URL parser would fold the leading slashes). */
  function rawGet(target) {
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1', port: stack.publicPort, path: target, method: 'GET', agent: false, timeout: 10_000,
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({
          status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'), setCookies: (res.headers['set-cookie'] ?? []).map(parseSetCookie),
        }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  }
});
