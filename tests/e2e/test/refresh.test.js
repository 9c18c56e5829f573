// Token endpoint mediation and revocation (SPEC §2.5, §2.6; invariants 7 and 8)
// with a real IdP: node oidc-provider (deploy/oidc-provider) behind the handoff
// binary, with a real redis-server.
//
// Two web clients, both asking for offline_access (so oidc-provider issues them a
// refresh token): `web-app` with the default `allow_refresh_token = false`, and
// `web-app-rt` with `allow_refresh_token = true` (online refresh tokens, the
// default). handoff has both clients' secrets (`[clients."ID"] secret_file`) to
// revoke at the IdP what it withholds or refuses, and accepts the IdP's
// back-channel logout tokens for both (`[backchannel_logout] audiences`).
//
// 1. web-app: the refresh token the IdP issued never reaches the web app; handoff
//    refuses it itself, keeps it (sealed) while the web session lives — so the web
//    app's access token keeps working — and revokes it at the IdP once the session
//    has ended (here: by its idle or absolute limit).
// 2. web-app-rt: the refresh token works (and rotates) while its session lives;
//    past the session's idle limit handoff refuses it (400 invalid_grant, the IdP
//    never asked) and revokes it at the IdP.
// 3. the native app revokes its refresh token at handoff's /token/revocation: every
//    web session of that lineage dies at its next request, its web refresh token
//    is refused, the refresh token withheld from web-app is revoked at the IdP.
// 4. logout at the IdP (RP-initiated, through handoff): oidc-provider sends a
//    back-channel logout to handoff; the web session named by its sid is dead,
//    another session of the same user and lineage lives on; its refresh token,
//    which oidc-provider keeps across a logout (offline_access), is refused by
//    handoff and revoked at the IdP.
// 5, 6. the same two after oidc-provider re-keyed `_session`
//    (a new cookie value for the same session, on any interaction in it): the
//    refresh token must follow the session, not the cookie value it started with.
//
// After every test: no STT in handoff's output; the flow tests also check all the
// IdP received and logged. No token handoff mediated is in its output or stored in
// redis in the clear.

import assert from 'node:assert/strict';
import {
  after, afterEach, before, describe, test,
} from 'node:test';

import { NativeApp, WebApp } from '../lib/apps.js';
import { Browser, hopSummary, isLoginPage } from '../lib/browser.js';
import {
  assertNoSttLeak, assertSttNotInHandoffLogs, redact, setCookiesNamed,
} from '../lib/checks.js';
import {
  form, jwtPayload, parseSetCookie, request,
} from '../lib/http.js';
import { dumpAll } from '../lib/redis.js';
import { sleep, startStack } from '../lib/stack.js';

const IDLE = 3; // rules file: session_idle = "3s" for both web clients
const RT_CLIENT = { clientId: 'web-app-rt', secret: 'web-rt-secret' };

describe('refresh tokens and revocation through handoff', { timeout: 60_000 }, () => {
  let stack;
  let app;
  let web;
  let webRt;
  const stts = [];

  before(async () => {
    stack = await startStack({
      name: 'refresh',
      moreWebClients: { [RT_CLIENT.clientId]: { secret: RT_CLIENT.secret, rules: { allow_refresh_token: 'true' } } },
      clientSecrets: true,
      backchannelLogout: true,
    });
    app = new NativeApp(stack);
    await app.login('alice', 'alice-password');
    web = new WebApp(stack);
    webRt = new WebApp(stack, RT_CLIENT);
  });

  afterEach(() => {
    if (stack) assertSttNotInHandoffLogs(stack, stts);
  });

  after(async () => {
    // handoff's errors, if any (a 503 from it has its reason here).
    const errors = (stack?.handoffStderr ?? '').split('\n').filter((l) => /\bERROR\b|unavailable/.test(l));
    if (errors.length) console.log(`# handoff errors:\n${errors.join('\n')}`);
    if (process.env.E2E_VERBOSE && stack) {
      console.log(stack.idpLog.join('\n'));
      console.log(stack.handoffStderr);
    }
    await stack?.stop();
  });

  // ---- helpers ------------------------------------------------------------------

  /** What the IdP answered to the code exchange of `code` (before handoff mediated it). */
  function idpAnswerForCode(code) {
    const rec = stack.idpRequests.find((r) => r.method === 'POST' && r.url === '/token'
      && new URLSearchParams(r.body).get('code') === code);
    assert.ok(rec, 'the IdP received the code exchange');
    assert.ok(rec.response, 'its answer was recorded');
    assert.equal(rec.response.status, 200, rec.response.body);
    return JSON.parse(rec.response.body);
  }

  /** Requests the IdP received since `from` whose body holds `token`. */
  const idpRequestsWith = (token, from = 0) => stack.idpRequests.slice(from).filter((r) => r.body.includes(token));

  /** The IdP's revocation endpoint got `token` from handoff (it runs in the background: wait a little). */
  async function revokedAtIdp(token, clientId, secret, waitMs = 3000) {
    const until = Date.now() + waitMs;
    let rec;
    while (Date.now() < until) {
      rec = stack.idpRequests.find((r) => r.url === '/token/revocation' && new URLSearchParams(r.body).get('token') === token);
      if (rec?.response) break;
      await sleep(50);
    }
    assert.ok(rec, 'handoff sent the refresh token to the IdP\'s revocation endpoint');
    assert.equal(rec.headers.authorization, `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`, 'as the web client (its configured secret)');
    assert.equal(rec.response?.status, 200, 'the IdP accepted the revocation');
    assert.equal(await stack.provider.RefreshToken.find(token), undefined, 'the IdP no longer knows the refresh token');
  }

  /** A 400 invalid_grant that handoff gave itself: the IdP never saw the token after `from`. */
  function assertRefusedByHandoff(res, token, from, why) {
    assert.equal(res.status, 400, `${why}: ${res.status} ${res.text}`);
    assert.equal(res.json().error, 'invalid_grant', why);
    assert.match(res.headers['cache-control'] ?? '', /no-store/);
    assert.deepEqual(
      idpRequestsWith(token, from).filter((r) => r.url === '/token').map((r) => r.url),
      [],
      `${why}: handoff answered without asking the IdP`,
    );
  }

  /**
   * A browser logged in to `client` by a session transfer from `native` (cookie
   * delivery), asking for offline_access. Returns the browser, the tokens the web
   * app got and what the IdP had answered.
   */
  async function transferLogin(native, client, name) {
    const m = await native.mint();
    assert.equal(m.status, 200, JSON.stringify(m.body));
    stts.push(m.body.access_token);
    const b = new Browser({ origin: stack.origin, name });
    await b.setCookie(`auth0_session_transfer_token=${m.body.access_token}; Secure; HttpOnly; Path=/`);
    const login = client.begin({ offline: true });
    const nav = await b.navigate(login.url);
    assert.ok(nav.exit, `${name}: the transfer login completes (${hopSummary(nav.hops).join(' | ')})`);
    assert.ok(!nav.hops.some((h) => isLoginPage(h.res)), `${name}: no login page`);
    const code = nav.exit.searchParams.get('code');
    const tokens = await client.finish(login, nav.exit);
    const res = client.lastTokenResponse;
    assert.equal(Number(res.headers['content-length']), Buffer.byteLength(res.text), `${name}: Content-Length matches the (mediated) body`);
    const id = jwtPayload(tokens.id_token);
    assert.equal(id.sub, native.user, `${name}: the web user is the native app's user`);
    assert.deepEqual(id.amr, ['session_transfer']);
    assert.ok(await b.cookie('_session'), `${name}: holds the IdP session cookie`);
    const idp = idpAnswerForCode(code);
    return {
      b, tokens, idp, code, stt: m.body.access_token,
    };
  }

  /**
   * The web app sends the browser to /auth again: a code (session alive) or the
   * login page. Reports whether the IdP saw `_session` and whether handoff expired it.
   */
  async function reauthorize(b, client, who) {
    const login = client.begin();
    const sentSession = Boolean(await b.cookie('_session'));
    const from = stack.idpRequests.length;
    const nav = await b.navigate(login.url);
    const alive = Boolean(nav.exit) && !nav.hops.some((h) => isLoginPage(h.res));
    if (alive) {
      assert.equal(jwtPayload((await client.finish(login, nav.exit)).id_token).sub, who);
    } else {
      assert.ok(isLoginPage(nav.final), `expected a code or the login page, got ${nav.final.status}: ${hopSummary(nav.hops).join(' | ')}`);
    }
    const expired = setCookiesNamed(nav.hops, '_session').filter((c) => Number(c.attrs['max-age']) === 0 || (c.attrs.expires && Date.parse(c.attrs.expires) <= Date.now()));
    const idpSawSession = stack.idpRequests.slice(from).some((r) => /(?:^|;\s*)_session=/.test(r.headers.cookie ?? ''));
    return {
      alive, expired, sentSession, idpSawSession, nav,
    };
  }

  /** A dead transfer session: the browser's next request gets the login page, `_session` stripped and expired. */
  async function assertSessionDead(b, client, who, why) {
    const r = await reauthorize(b, client, who);
    assert.equal(r.sentSession, true, `${why}: the browser still sent _session`);
    assert.equal(r.alive, false, `${why}: the session must not log ${who} in`);
    assert.equal(r.idpSawSession, false, `${why}: handoff removed _session before the IdP saw it`);
    assert.ok(r.expired.length >= 1, `${why}: handoff expired _session (Max-Age=0); got ${setCookiesNamed(r.nav.hops, '_session').map((c) => redact(c.raw)).join(' / ') || 'no _session Set-Cookie'}`);
    assert.equal(await b.cookie('_session'), undefined, `${why}: the browser dropped it`);
  }

  /**
   * The subject's web sessions as handoff's admin API lists them, one entry per
   * session id: { lineage, revoked, session, web_client, state, records }. (A
   * session is listed once per IdP cookie value bound to it: oidc-provider gives
   * the session a new `_session` value when it re-keys it, e.g. after a consent
   * interaction, and handoff binds the new value too. All records of one session
   * must agree on its state.)
   */
  async function adminSessions(subject) {
    const r = await stack.adminGet(`/sessions?subject=${encodeURIComponent(subject)}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const bySid = new Map();
    for (const l of r.body.lineages) {
      for (const s of l.sessions) {
        const e = bySid.get(s.session) ?? { lineage: l.lineage, revoked: l.revoked, ...s, records: 0 };
        assert.equal(e.state, s.state, `every record of session ${s.session} has the same state: ${JSON.stringify(r.body)}`);
        e.records += 1;
        bySid.set(s.session, e);
      }
    }
    return [...bySid.values()];
  }

  /**
   * Makes oidc-provider re-key the browser's IdP session (a new `_session` value
   * for the same session): the web app runs another authorization with
   * prompt=consent, so the IdP goes through an interaction, and its resume step
   * gives an existing session a new id.
   */
  async function rekey(b, client) {
    const before = (await b.cookie('_session')).value;
    const login = client.begin({ extra: { prompt: 'consent' } });
    const nav = await b.navigate(login.url);
    assert.ok(nav.exit && !nav.hops.some((h) => isLoginPage(h.res)), `re-authorization with prompt=consent completes: ${hopSummary(nav.hops).join(' | ')}`);
    await client.finish(login, nav.exit);
    assert.notEqual((await b.cookie('_session')).value, before, 'oidc-provider gave the session a new _session value');
  }

  /** The lineage (and handoff's session id) the IdP was told about in the assertions of a login. */
  function assertionClaimsSince(from) {
    return stack.idpRequests.slice(from).filter((r) => r.headers['x-handoff-assertion'])
      .map((r) => jwtPayload(r.headers['x-handoff-assertion']));
  }

  /** Every token the IdP issued (from its recorded token answers). */
  function issuedTokens() {
    const out = new Set();
    for (const r of stack.idpRequests) {
      if (r.url !== '/token' || r.response?.status !== 200) continue;
      const body = JSON.parse(r.response.body);
      for (const k of ['refresh_token', 'access_token']) if (body[k]) out.add(body[k]);
      const code = new URLSearchParams(r.body).get('code');
      if (code) out.add(code);
    }
    return [...out];
  }

  // ---- tests ----------------------------------------------------------------------

  test('allow_refresh_token = false (default): the IdP issues a refresh token, the web app never gets it; its access token lives while the session does', async (t) => {
    const before = {
      withheld: await stack.metric('handoff_web_refresh_tokens_total', 'outcome="withheld"'),
      denied: await stack.metric('handoff_web_refresh_tokens_total', 'outcome="denied"'),
      held: await stack.metric('handoff_web_refresh_tokens_total', 'outcome="held_until_session_end"'),
      revoked: await stack.metric('handoff_web_refresh_tokens_total', 'outcome="revoked_at_session_end"'),
    };
    const { b, tokens, idp } = await transferLogin(app, web, 'web-app');
    // The IdP did issue one (offline_access granted) ...
    assert.equal(typeof idp.refresh_token, 'string', 'oidc-provider issued a refresh token to web-app');
    assert.match(idp.scope, /\boffline_access\b/);
    // ... and the web app got the rest of the answer, without it.
    assert.equal(tokens.refresh_token, undefined, 'no refresh_token reaches web-app (invariant 8)');
    assert.ok(!JSON.stringify(tokens).includes(idp.refresh_token));
    assert.equal(tokens.access_token, idp.access_token);
    assert.equal(tokens.id_token, idp.id_token);
    assert.deepEqual(Object.keys(tokens).sort(), Object.keys(idp).filter((k) => k !== 'refresh_token').sort());
    assert.equal(await stack.metric('handoff_web_refresh_tokens_total', 'outcome="withheld"'), before.withheld + 1);

    // The web app's access token works for as long as its session lives. (Revoking
    // the withheld refresh token at login, oidc-provider revokes the whole grant:
    // the access token would answer 401 a second later.)
    const me = async () => (await request({ url: `${stack.origin}/me`, headers: { authorization: `Bearer ${tokens.access_token}` } })).status;
    assert.equal(await me(), 200, 'access token at once');
    // Idle time is counted in whole seconds, so the browser uses the session well
    // inside its 3 s (every 1.5 s), never at its edge.
    await sleep(1500);
    assert.equal(await me(), 200, 'access token 1.5 s after the login');
    assert.equal((await reauthorize(b, web, 'alice')).alive, true, 'the browser uses the session within its idle limit');
    await sleep(1500);
    assert.equal((await reauthorize(b, web, 'alice')).alive, true, 'the browser uses the session again within its idle limit');
    await sleep(700);
    assert.equal(await me(), 200, `access token over ${IDLE} s after the login (past ${IDLE} s idle from the login; the session slid)`);
    assert.ok(await stack.provider.RefreshToken.find(idp.refresh_token), 'the IdP still holds the withheld refresh token while the session lives');
    assert.deepEqual(idpRequestsWith(idp.refresh_token).map((r) => r.url).filter((u) => u === '/token/revocation'), [], 'not revoked at login');
    assert.equal(await stack.metric('handoff_web_refresh_tokens_total', 'outcome="held_until_session_end"'), before.held + 1, 'kept (sealed) until the session ends');

    // Whoever got hold of it anyway: handoff refuses it itself.
    const from = stack.idpRequests.length;
    assertRefusedByHandoff(await web.refresh(idp.refresh_token), idp.refresh_token, from, 'withheld refresh token');
    assert.equal(await stack.metric('handoff_web_refresh_tokens_total', 'outcome="denied"'), before.denied + 1);

    // The session ends by its limits (3 s idle, 6 s absolute; nobody tells handoff):
    // handoff's sweeper revokes the withheld refresh token at the IdP (RFC 7009,
    // with web-app's configured secret).
    await revokedAtIdp(idp.refresh_token, 'web-app', 'web-secret', (IDLE + 10) * 1000);
    assert.equal(await stack.metric('handoff_web_refresh_tokens_total', 'outcome="revoked_at_session_end"'), before.revoked + 1);
    assert.equal((await web.refresh(idp.refresh_token)).status, 400, 'dead at the IdP and at handoff');
    t.diagnostic(`web-app's access token at /me after its session ended and handoff revoked the withheld refresh token: ${await me()}`);
    assert.equal((await reauthorize(b, web, 'alice')).alive, false, 'the session has ended');
    assertNoSttLeak(stack, stts);
  });

  test('allow_refresh_token = true: the refresh token works while its session lives, and is refused past the idle limit', async () => {
    const before = {
      bound: await stack.metric('handoff_web_refresh_tokens_total', 'outcome="bound"'),
      ended: await stack.metric('handoff_web_refresh_tokens_total', 'outcome="session_ended"'),
    };
    const { b, tokens, idp } = await transferLogin(app, webRt, 'web-app-rt');
    assert.equal(typeof tokens.refresh_token, 'string', 'web-app-rt gets its refresh token');
    assert.equal(tokens.refresh_token, idp.refresh_token, 'the one the IdP issued');
    assert.equal(await stack.metric('handoff_web_refresh_tokens_total', 'outcome="bound"'), before.bound + 1, 'bound to the web session (online)');

    // While the session lives: refresh grants go to the IdP; rotation keeps the binding.
    let rt = tokens.refresh_token;
    for (let i = 1; i <= 2; i += 1) {
      const from = stack.idpRequests.length;
      const r = await webRt.refresh(rt);
      assert.equal(r.status, 200, `refresh #${i} while the session lives: ${r.text}`);
      assert.equal(idpRequestsWith(rt, from).filter((q) => q.url === '/token').length, 1, `refresh #${i} reached the IdP`);
      const next = r.json().refresh_token;
      assert.ok(next && next !== rt, `refresh #${i}: oidc-provider rotated the refresh token`);
      assert.equal(jwtPayload(r.json().id_token).sub, 'alice');
      rt = next;
    }

    // Past the idle limit (the session unused; refresh grants are not browser use).
    await sleep((IDLE + 0.8) * 1000);
    const from = stack.idpRequests.length;
    assertRefusedByHandoff(await webRt.refresh(rt), rt, from, 'online refresh token past its session\'s idle limit');
    assert.equal(await stack.metric('handoff_web_refresh_tokens_total', 'outcome="session_ended"'), before.ended + 1);
    // ... and revoked at the IdP, with web-app-rt's secret.
    await revokedAtIdp(rt, RT_CLIENT.clientId, RT_CLIENT.secret);
    // Still refused on a second try; the session itself is dead too.
    assertRefusedByHandoff(await webRt.refresh(rt), rt, from, 'second try');
    await assertSessionDead(b, webRt, 'alice', 'past the idle limit');
    assertNoSttLeak(stack, stts);
  });

  test('cascade: the native app revokes its refresh token at /token/revocation, its web sessions and web refresh tokens die', async () => {
    const native = new NativeApp(stack);
    await native.login('alice', 'alice-password');
    const before = {
      cascades: await stack.metric('handoff_revocations_total', 'what="lineage"', 'why="native_token_revoked"'),
      refused: await stack.metric('handoff_web_refresh_tokens_total', 'outcome="lineage_revoked"'),
    };
    const from0 = stack.idpRequests.length;
    const withRt = await transferLogin(native, webRt, 'cascade-rt');
    const plain = await transferLogin(native, web, 'cascade-plain');
    const lineages = new Set(assertionClaimsSince(from0).map((c) => c.lineage));
    assert.equal(lineages.size, 1, 'both transfers are of one lineage');
    const [lineage] = lineages;
    // The native app goes on refreshing (rotating) before it logs out: handoff must
    // follow the lineage across rotations.
    const r = await native.refresh();
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.notEqual(native.refreshToken, r.previous);
    // Both sessions are alive right before (the IdP would log alice in).
    assert.equal((await reauthorize(plain.b, web, 'alice')).alive, true, 'alive before the revocation');
    const listed = (await adminSessions('alice')).filter((s) => s.lineage === lineage);
    assert.deepEqual(listed.map((s) => s.state), ['active', 'active'], `admin API: ${JSON.stringify(listed)}`);

    // The app logs out: RFC 7009 revocation of its current refresh token, through handoff.
    const from = stack.idpRequests.length;
    const rev = await native.revoke();
    assert.equal(rev.status, 200, rev.text);
    // (Besides it, handoff itself now revokes what it withheld in the lineage's sessions.)
    const atIdp = stack.idpRequests.slice(from).filter((q) => q.url === '/token/revocation'
      && new URLSearchParams(q.body).get('token') === native.refreshToken);
    assert.equal(atIdp.length, 1, 'handoff forwarded the revocation to the IdP');
    assert.equal(new URLSearchParams(atIdp[0].body).get('token'), native.refreshToken);
    assert.equal(atIdp[0].response.status, 200);
    assert.equal(await stack.metric('handoff_revocations_total', 'what="lineage"', 'why="native_token_revoked"'), before.cascades + 1);

    // Every web session of the lineage is dead at its next request ...
    await assertSessionDead(withRt.b, webRt, 'alice', 'web-app-rt session after the cascade');
    await assertSessionDead(plain.b, web, 'alice', 'web-app session after the cascade');
    // The refresh token handoff withheld from web-app in that session lived until
    // now (kept for its session), and goes with it: revoked at the IdP.
    await revokedAtIdp(plain.idp.refresh_token, 'web-app', 'web-secret');
    // ... and the web refresh token is refused by handoff.
    const from2 = stack.idpRequests.length;
    assertRefusedByHandoff(await webRt.refresh(withRt.tokens.refresh_token), withRt.tokens.refresh_token, from2, 'web refresh token of a revoked lineage');
    assert.equal(await stack.metric('handoff_web_refresh_tokens_total', 'outcome="lineage_revoked"'), before.refused + 1);
    const after = (await adminSessions('alice')).filter((s) => s.lineage === lineage);
    assert.ok(after.length === 2 && after.every((s) => s.revoked && s.state === 'revoked'), `admin API after: ${JSON.stringify(after)}`);
    assertNoSttLeak(stack, stts);
  });

  test('back-channel logout: logging out at the IdP (through handoff) ends that web session in handoff', async () => {
    const native = new NativeApp(stack);
    await native.login('bob', 'bob-password');
    const before = await stack.metric('handoff_revocations_total', 'what="session"', 'why="backchannel_logout"');
    const out = await transferLogin(native, webRt, 'bcl-out');
    const stays = await transferLogin(native, web, 'bcl-stays');
    const kept = await out.b.jar.getCookieString(`${stack.origin}/auth`);
    assert.match(kept, /(?:^|; )_session=/);
    assert.ok(jwtPayload(out.idp.id_token).sid, 'the id_token carries the IdP\'s sid (backchannel_logout_session_required)');

    // Not a logout token: an id_token of the IdP (right key, iss, aud and sid, no
    // back-channel-logout event) posted to handoff's endpoint ends nothing.
    const forged = form({ logout_token: out.idp.id_token });
    const refused = await request({ url: `${stack.origin}/handoff/backchannel-logout`, method: 'POST', body: forged.body, headers: forged.headers });
    assert.equal(refused.status, 400, `an id_token is not a logout token: ${refused.text}`);
    assert.equal(await stack.metric('handoff_revocations_total', 'what="session"', 'why="backchannel_logout"'), before);
    assert.deepEqual((await adminSessions('bob')).map((s) => s.state), ['active', 'active']);

    // RP-initiated logout at the IdP's end_session, in the browser, through handoff.
    const page = await out.b.navigate(`/session/end?client_id=${RT_CLIENT.clientId}`);
    assert.equal(page.final.status, 200, `the logout page: ${hopSummary(page.hops).join(' | ')}`);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(page.final.text)?.[1];
    assert.ok(xsrf, 'the logout form');
    const action = /<form id="op.logoutForm" method="post" action="([^"]+)"/.exec(page.final.text)[1];
    const f = form({ xsrf, logout: 'yes' });
    const done = await out.b.navigate(new URL(action).pathname, { method: 'POST', body: f.body, headers: f.headers });
    assert.match(done.final.text, /id="signed-out"/, `signed out at the IdP: ${hopSummary(done.hops).join(' | ')}`);
    // oidc-provider called handoff's back-channel logout endpoint, and handoff said 200.
    assert.ok(stack.idpLog.some((l) => l.includes(`back-channel logout sent client=${RT_CLIENT.clientId} sub=bob`)), `the IdP's back-channel logout succeeded: ${stack.idpLog.filter((l) => l.includes('back-channel')).join(' / ')}`);
    assert.equal(await stack.metric('handoff_revocations_total', 'what="session"', 'why="backchannel_logout"'), before + 1);

    // The session is dead in handoff: a kept copy of _session is stripped and expired.
    const from = stack.idpRequests.length;
    const res = await request({ url: `${stack.origin}${webRt.begin().url}`, headers: { cookie: kept } });
    assert.equal(res.status, 303);
    assert.ok(stack.idpRequests.slice(from).every((q) => !/(?:^|;\s*)_session=/.test(q.headers.cookie ?? '')), 'handoff removed the dead _session before the IdP');
    const gone = res.setCookies.map(parseSetCookie).filter((c) => c.name === '_session');
    assert.ok(gone.some((c) => Number(c.attrs['max-age']) === 0), `handoff expired _session (got: ${res.setCookies.map(redact).join(' / ')})`);
    // oidc-provider keeps offline_access grants across a logout (persistsLogout):
    // the IdP still holds the refresh token and would honour it ...
    const held = await stack.provider.RefreshToken.find(out.tokens.refresh_token);
    assert.ok(held && !held.consumed, 'after the logout the IdP still holds the web refresh token');
    // ... so handoff refuses it itself, and revokes it at the IdP.
    const from2 = stack.idpRequests.length;
    assertRefusedByHandoff(await webRt.refresh(out.tokens.refresh_token), out.tokens.refresh_token, from2, 'refresh token of a logged-out session');
    await revokedAtIdp(out.tokens.refresh_token, RT_CLIENT.clientId, RT_CLIENT.secret);
    // The other session of bob (another browser, same lineage) is untouched: the logout token named a sid.
    assert.equal((await reauthorize(stays.b, web, 'bob')).alive, true, 'the other session lives on');
    const states = (await adminSessions('bob')).map((s) => `${s.web_client}:${s.state}`).sort();
    assert.deepEqual(states, ['web-app-rt:revoked', 'web-app:active'], 'admin API');
    assertNoSttLeak(stack, stts);
  });

  // oidc-provider re-keys `_session` on every interaction in an existing session:
  // online refresh tokens and back-channel logout must follow the web session
  // across the new cookie values, not stay with the first one.

  test('online refresh token after the IdP re-keyed _session: usable while its session is in use', async () => {
    const { b, tokens } = await transferLogin(app, webRt, 'rekey-live');
    await rekey(b, webRt);
    // Keep using the session (the new cookie) past the idle limit counted from the re-key.
    const started = Date.now();
    while (Date.now() - started < (IDLE + 1) * 1000) {
      await sleep(1500);
      assert.equal((await reauthorize(b, webRt, 'alice')).alive, true, 'the session is alive and in use');
    }
    const r = await webRt.refresh(tokens.refresh_token);
    assert.equal(r.status, 200, `the refresh token of a live, used session: ${r.status} ${r.text}`);
    assertNoSttLeak(stack, stts);
  });

  test('back-channel logout after the IdP re-keyed _session: the refresh token is refused', async () => {
    const native = new NativeApp(stack);
    await native.login('bob', 'bob-password');
    const { b, tokens } = await transferLogin(native, webRt, 'rekey-logout');
    await rekey(b, webRt);
    const page = await b.navigate(`/session/end?client_id=${RT_CLIENT.clientId}`);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(page.final.text)?.[1];
    assert.ok(xsrf, 'the logout form');
    const f = form({ xsrf, logout: 'yes' });
    const done = await b.navigate('/session/end/confirm', { method: 'POST', body: f.body, headers: f.headers });
    assert.match(done.final.text, /id="signed-out"/);
    const from = stack.idpRequests.length;
    assertRefusedByHandoff(await webRt.refresh(tokens.refresh_token), tokens.refresh_token, from, 'refresh token of a logged-out (re-keyed) session');
    const states = new Set((await adminSessions('bob')).filter((s) => s.web_client === RT_CLIENT.clientId).map((s) => s.state));
    assert.deepEqual([...states], ['revoked']);
    assertNoSttLeak(stack, stts);
  });

  test('no token handoff mediated is in its output or stored in redis in the clear', async () => {
    const tokens = issuedTokens();
    assert.ok(tokens.length >= 10, `tokens seen: ${tokens.length}`);
    const out = `${stack.handoffStderr}\n${stack.handoffStdout}`;
    for (const tok of tokens) assert.ok(!out.includes(tok), 'a token, access token or code appears in handoff\'s output');
    const stored = await dumpAll(stack.redisPort);
    assert.ok(stored.length > 0, 'handoff keeps state in redis');
    for (const tok of [...tokens, ...stts]) {
      const hit = stored.find((e) => e.text.includes(tok));
      assert.equal(hit, undefined, `a token is stored in the clear under ${hit?.key}`);
    }
    assertNoSttLeak(stack, stts);
  });
});
