// Native-to-Web SSO against a real IdP: node oidc-provider with the integration in
// deploy/oidc-provider, behind the handoff binary, with a real redis-server.
//
// A native app logs in with a password (PKCE, offline_access), mints a session
// transfer token in Auth0's format, and a browser redeems it (cookie or query
// delivery) and ends up logged in to the web app as the native app's user,
// without a password. Replays and wrong-IP redemptions end on the login page.
// After every test: no STT in anything the IdP received or logged, or in
// handoff's output.

import assert from 'node:assert/strict';
import {
  after, afterEach, before, describe, test,
} from 'node:test';

import { createHandoffVerifier } from '../../../deploy/oidc-provider/handoff-interaction.js';
import { NativeApp, STT_TYPE, WebApp } from '../lib/apps.js';
import {
  Browser, hopSummary, idpHopCount, isLoginPage,
} from '../lib/browser.js';
import {
  assertHardenedSessionCookie, assertHostCookie, assertNoSttLeak, assertSttNotInHandoffLogs, setCookiesNamed,
} from '../lib/checks.js';
import { jwtPayload } from '../lib/http.js';
import { startStack, WEB_CALLBACK } from '../lib/stack.js';

const ABSOLUTE = 6; // rules file of the stack: session_absolute = "6s"

describe('session transfer into oidc-provider through handoff', { timeout: 60_000 }, () => {
  let stack;
  let app;
  let web;
  const stts = [];
  const transferHops = {};

  before(async () => {
    stack = await startStack({ name: 'transfer' });
    app = new NativeApp(stack);
    await app.login('alice', 'alice-password');
    web = new WebApp(stack);
  });

  afterEach(() => {
    if (stack) assertSttNotInHandoffLogs(stack, stts);
  });

  after(async () => {
    for (const [k, v] of Object.entries(transferHops)) {
      console.log(`# transfer login (${k} delivery): ${v.idp} request(s) reached oidc-provider, ${v.lines.length - 1} hop(s) in all: ${v.lines.join(' | ')}`);
    }
    if (process.env.E2E_VERBOSE && stack) {
      console.log(stack.idpLog.join('\n'));
      console.log(stack.handoffStderr);
    }
    await stack?.stop();
  });

  async function mint() {
    const m = await app.mint();
    assert.equal(m.status, 200, `mint: ${JSON.stringify(m.body)}`);
    stts.push(m.body.access_token);
    return m.body.access_token;
  }

  /** Requests the IdP received since index `from` that carried handoff's assertion. */
  function assertionsSince(from) {
    return stack.idpRequests.slice(from).filter((r) => r.headers['x-handoff-assertion']);
  }

  test('the native app logs in with a password and PKCE through handoff (unbound session)', () => {
    assert.ok(app.refreshToken, 'offline_access refresh token');
    assert.deepEqual(app.loginHops.map((h) => `${h.method} ${h.path.replace(/\/[A-Za-z0-9_-]{20,}/, '/:uid')} ${h.status}`), [
      'GET /auth 303', 'GET /interaction/:uid 200', 'POST /interaction/:uid/login 303', 'GET /auth/:uid 303',
    ]);
  });

  test('mint: Auth0 wire format, form and JSON, with the rotated refresh token passed back', async () => {
    for (const json of [false, true]) {
      const m = await app.mint({ json });
      assert.equal(m.status, 200, JSON.stringify(m.body));
      stts.push(m.body.access_token);
      assert.equal(m.body.issued_token_type, STT_TYPE);
      assert.equal(m.body.token_type, 'N_A');
      assert.ok(m.body.expires_in > 0 && m.body.expires_in <= 60);
      assert.ok(m.body.refresh_token, 'the rotated refresh token reaches the app');
      assert.notEqual(m.body.refresh_token, m.previous, 'oidc-provider rotated it');
      assert.equal(jwtPayload(m.body.id_token).sub, 'alice');
    }
    // The STT itself never went to the IdP: the token requests it saw were plain refresh grants.
    const grants = stack.idpRequests.filter((r) => r.url === '/token' && r.body.includes('grant_type=refresh_token'));
    assert.ok(grants.length >= 2);
    for (const g of grants) assert.ok(!g.body.includes('audience='), 'the mint audience is not forwarded');
  });

  test('a client-sent X-Handoff-Assertion never reaches the IdP', async () => {
    const from = stack.idpRequests.length;
    const b = new Browser({ origin: stack.origin });
    const nav = await b.navigate(web.begin().url, { headers: { 'X-Handoff-Assertion': 'forged.by.client' } });
    assert.ok(isLoginPage(nav.final));
    assert.equal(assertionsSince(from).length, 0);
  });

  test('redemption: the IdP gets a valid, fresh assertion for the native app\'s user and never the STT', async () => {
    const stt = await mint();
    const from = stack.idpRequests.length;
    const b = new Browser({ origin: stack.origin });
    await b.setCookie(`auth0_session_transfer_token=${stt}; Secure; HttpOnly; Path=/`);
    await b.navigate(web.begin().url);
    const carried = assertionsSince(from);
    assert.ok(carried.length >= 1, 'the authorization request carried an assertion');
    assert.equal(carried[0].url.split('?')[0], '/auth');
    // Verified with the integration's own verifier against handoff's JWKS (look, do not spend).
    const v = createHandoffVerifier({ jwksUrl: `${stack.admin}/.well-known/handoff/jwks.json`, issuer: 'handoff', audience: stack.origin });
    const jtis = new Set();
    for (const r of carried) {
      const out = await v.verify(r.headers, { clientId: 'web-app', consume: false });
      assert.equal(out.ok, true, `assertion on ${r.url.split('?')[0]}: ${out.reason}`);
      const c = out.claims;
      assert.equal(c.sub, 'alice');
      assert.equal(c.client_id, 'web-app');
      assert.equal(c.native_client_id, 'native-app');
      assert.deepEqual(c.amr, ['session_transfer']);
      assert.ok(c.sid && c.lineage && c.jti);
      assert.ok(c.exp - c.iat <= 60);
      assert.ok(!jtis.has(c.jti), 'every hop gets a fresh jti');
      jtis.add(c.jti);
    }
    assertNoSttLeak(stack, stts);
  });

  async function transfer(delivery) {
    const stt = await mint();
    const from = stack.idpRequests.length;
    const b = new Browser({ origin: stack.origin, name: `browser-${delivery}` });
    const login = web.begin();
    let url = login.url;
    if (delivery === 'cookie') {
      // The native app puts the token into its web view's cookie jar.
      await b.setCookie(`auth0_session_transfer_token=${stt}; Secure; HttpOnly; Path=/`);
    } else {
      url = `${login.url}&session_transfer_token=${encodeURIComponent(stt)}`;
    }
    const nav = await b.navigate(url);
    transferHops[delivery] = { lines: hopSummary(nav.hops, nav.exit), idp: idpHopCount(nav.hops) };
    return {
      stt, b, login, nav, from,
    };
  }

  for (const delivery of ['cookie', 'query']) {
    test(`${delivery} delivery: the authorization-code flow completes with no password, as the native app's user`, async (t) => {
      const {
        stt, b, login, nav, from,
      } = await transfer(delivery);
      t.diagnostic(`hops: ${hopSummary(nav.hops, nav.exit).join(' | ')}`);

      if (delivery === 'query') {
        const [first] = nav.hops;
        assert.equal(first.status, 303, 'query delivery is answered with a 303 first');
        assert.ok(!first.location.includes('session_transfer_token'), 'the 303 drops the token from the URL');
        assert.equal(first.res.headers['referrer-policy'], 'no-referrer');
        assert.match(first.res.headers['cache-control'] ?? '', /no-store/);
        const [carrier] = first.setCookies.filter((c) => c.name === '__Host-handoff_stt');
        assert.ok(carrier, 'the token rides in __Host-handoff_stt');
        assertHostCookie(carrier, { maxAge: 60 });
      }

      assert.ok(!nav.hops.some((h) => isLoginPage(h.res)), `no login page on the way: ${hopSummary(nav.hops).join(' | ')}`);
      assert.ok(nav.exit, `the browser is sent back to the web app; ended with ${nav.final.status} at ${nav.hops.at(-1).path}`);
      assert.equal(`${nav.exit.origin}${nav.exit.pathname}`, WEB_CALLBACK);
      const tokens = await web.finish(login, nav.exit);
      const id = jwtPayload(tokens.id_token);
      assert.equal(id.sub, 'alice', 'the web user is the native app\'s user');
      assert.deepEqual(id.amr, ['session_transfer']);
      assert.ok(stack.idpLog.some((l) => l.includes('handoff login') && l.includes('sub=alice')), 'the IdP logged a handoff login');

      // Cookies: the IdP session cookie hardened and capped; handoff's own __Host- cookies.
      const sessions = setCookiesNamed(nav.hops, '_session');
      assert.ok(sessions.length >= 1, 'the IdP set its session cookie');
      for (const sc of sessions) assertHardenedSessionCookie(sc, { absoluteSecs: ABSOLUTE });
      const tx = setCookiesNamed(nav.hops, '__Host-handoff_tx').filter((c) => c.value);
      assert.ok(tx.length >= 1, 'handoff started a login transaction (__Host-handoff_tx)');
      for (const sc of tx) assertHostCookie(sc, { maxAge: 120 });
      for (const h of nav.hops) {
        for (const sc of h.setCookies) {
          if (sc.value) assert.ok(sc.attrs.secure, `every cookie gets Secure (secure_all_cookies): ${sc.name} on ${h.path}`);
        }
      }
      // The transfer-token cookies are gone from the browser.
      assert.equal(await b.cookie('auth0_session_transfer_token'), undefined);
      assert.equal(await b.cookie('__Host-handoff_stt'), undefined);
      // The IdP's interaction route got the assertion (that is what logged the user in).
      assert.ok(assertionsSince(from).some((r) => r.url.startsWith('/interaction/')), 'the interaction hop carried an assertion');
      assertNoSttLeak(stack, [stt, ...stts]);
    });
  }

  test('replay: a spent STT ends on the IdP\'s login page, with no assertion', async () => {
    const stt = await mint();
    const first = new Browser({ origin: stack.origin, name: 'first' });
    await first.setCookie(`auth0_session_transfer_token=${stt}; Secure; HttpOnly; Path=/`);
    await first.navigate(web.begin().url);
    const before = await stack.metric('handoff_redemptions_total', 'reason="not_found_or_expired"');
    const from = stack.idpRequests.length;
    const second = new Browser({ origin: stack.origin, name: 'replayer' });
    await second.setCookie(`auth0_session_transfer_token=${stt}; Secure; HttpOnly; Path=/`);
    const nav = await second.navigate(web.begin().url);
    assert.ok(isLoginPage(nav.final), `the replay ends on the login page (got ${nav.final.status} at ${nav.hops.at(-1).path})`);
    assert.equal(assertionsSince(from).length, 0, 'no assertion for a replay');
    assert.equal(await stack.metric('handoff_redemptions_total', 'reason="not_found_or_expired"'), before + 1);
    // Query delivery of the same spent token: the same.
    const third = new Browser({ origin: stack.origin, name: 'replayer-query' });
    const nav3 = await third.navigate(`${web.begin().url}&session_transfer_token=${encodeURIComponent(stt)}`);
    assert.ok(isLoginPage(nav3.final));
    assert.equal(assertionsSince(from).length, 0);
    assertNoSttLeak(stack, stts);
  });

  test('wrong IP: an STT minted on 127.0.0.1 and redeemed from 127.0.0.2 ends on the login page', async () => {
    const stt = await mint();
    const before = await stack.metric('handoff_redemptions_total', 'reason="binding_mismatch"');
    const from = stack.idpRequests.length;
    const other = new Browser({ origin: stack.origin, localAddress: '127.0.0.2', name: 'other-device' });
    await other.setCookie(`auth0_session_transfer_token=${stt}; Secure; HttpOnly; Path=/`);
    const nav = await other.navigate(web.begin().url);
    assert.ok(isLoginPage(nav.final), `wrong IP ends on the login page (got ${nav.final.status})`);
    assert.equal(assertionsSince(from).length, 0, 'no assertion for a binding mismatch');
    assert.equal(await stack.metric('handoff_redemptions_total', 'reason="binding_mismatch"'), before + 1);
    assert.equal(stack.idpRequests.at(-1).headers['x-forwarded-for'], '127.0.0.2', 'handoff told the IdP the real client IP');
    assertNoSttLeak(stack, stts);
  });

  test('no STT anywhere in what the IdP received or logged, nor in handoff\'s output', () => {
    assert.ok(stts.length >= 5);
    assertNoSttLeak(stack, stts);
  });
});
