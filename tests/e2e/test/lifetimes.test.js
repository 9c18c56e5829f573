// Web-session lifetimes (SPEC §2.4, §3, invariant 6) with a real IdP: a session
// that came from a session transfer dies at its idle limit and at its absolute
// limit (short limits in the rules file: 3 s idle, 6 s absolute); idle slides
// with use; a session the IdP created by a password login (no STT) is not bound
// and outlives both limits untouched.
//
// Real sleeps; the three scenarios run side by side (about 8 s in all).

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
import { sleep, startStack } from '../lib/stack.js';

const IDLE = 3;
const ABSOLUTE = 6;

describe('web-session lifetimes', { timeout: 60_000, concurrency: true }, () => {
  let stack;
  let app;
  let web;
  const stts = [];

  before(async () => {
    stack = await startStack({
      name: 'lifetimes',
      webRules: { session_idle: `"${IDLE}s"`, session_absolute: `"${ABSOLUTE}s"` },
    });
    app = new NativeApp(stack);
    await app.login('alice', 'alice-password');
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

  /** A browser logged in to the web app by a session transfer (cookie delivery). */
  async function transferSession(name) {
    const m = await app.mint();
    assert.equal(m.status, 200, JSON.stringify(m.body));
    stts.push(m.body.access_token);
    const b = new Browser({ origin: stack.origin, name });
    await b.setCookie(`auth0_session_transfer_token=${m.body.access_token}; Secure; HttpOnly; Path=/`);
    const login = web.begin();
    const nav = await b.navigate(login.url);
    assert.ok(nav.exit, `${name}: transfer login completes (${hopSummary(nav.hops).join(' | ')})`);
    const id = jwtPayload((await web.finish(login, nav.exit)).id_token);
    assert.equal(id.sub, 'alice');
    assert.ok(await b.cookie('_session'), `${name}: holds the IdP session cookie`);
    return b;
  }

  /**
   * The web app sends the browser to /auth again. With a live IdP session the IdP
   * answers with a code straight away; without one it shows the login page.
   * Returns { alive, nav, expired } where expired is handoff's `_session` Max-Age=0.
   */
  async function reauthorize(b, who) {
    const login = web.begin();
    const sentSession = Boolean(await b.cookie('_session'));
    const from = stack.idpRequests.length;
    const nav = await b.navigate(login.url);
    const alive = Boolean(nav.exit) && !nav.hops.some((h) => isLoginPage(h.res));
    if (alive) {
      assert.equal(jwtPayload((await web.finish(login, nav.exit)).id_token).sub, who);
    } else {
      assert.ok(isLoginPage(nav.final), `expected a code or the login page, got ${nav.final.status}: ${hopSummary(nav.hops).join(' | ')}`);
    }
    const expired = setCookiesNamed(nav.hops, '_session').filter((c) => Number(c.attrs['max-age']) === 0 || (c.attrs.expires && Date.parse(c.attrs.expires) <= Date.now()));
    const idpSawSession = stack.idpRequests.slice(from).some((r) => /(?:^|;\s*)_session=/.test(r.headers.cookie ?? ''));
    return {
      alive, nav, expired, sentSession, idpSawSession,
    };
  }

  /**
   * A client that ignores cookie expiry sends `kept` (the Cookie header it had
   * while the session was alive) once more: handoff must strip the dead _session
   * (the IdP starts a login) and expire it (Max-Age=0).
   */
  async function assertDeadCookie(kept) {
    assert.match(kept, /(?:^|; )_session=/);
    const from = stack.idpRequests.length;
    const res = await request({ url: `${stack.origin}${web.begin().url}`, headers: { cookie: kept } });
    assert.equal(res.status, 303);
    assert.match(
      res.headers.location,
      /^\/interaction\//,
      'a kept _session cookie past its limit must not log anyone in: the IdP should have seen no session and started a login',
    );
    const idpSaw = stack.idpRequests.slice(from);
    assert.ok(idpSaw.length >= 1 && idpSaw.every((q) => !/(?:^|;\s*)_session=/.test(q.headers.cookie ?? '')), 'handoff removed the dead _session before the IdP');
    const gone = res.setCookies.map(parseSetCookie).filter((c) => c.name === '_session');
    assert.ok(gone.some((c) => Number(c.attrs['max-age']) === 0 || Date.parse(c.attrs.expires ?? '') <= Date.now()), `handoff expired _session (got: ${res.setCookies.map(redact).join(' / ')})`);
  }

  test(`idle: a transfer session unused for more than ${IDLE} s is gone (login page, cookie expired)`, async () => {
    const b = await transferSession('idle');
    const kept = await b.jar.getCookieString(`${stack.origin}/auth`);
    await sleep((IDLE + 0.8) * 1000);
    const r = await reauthorize(b, 'alice');
    assert.equal(r.sentSession, true, 'the browser still sent its _session cookie');
    assert.equal(r.alive, false, 'past the idle limit the session must not log the user in');
    assert.equal(r.idpSawSession, false, 'handoff removed the dead session cookie before the IdP saw it');
    assert.ok(r.expired.length >= 1, 'handoff expired _session in the browser (Max-Age=0)');
    assert.ok(r.expired[0].attrs.secure, `expiring Set-Cookie: ${redact(r.expired[0].raw)}`);
    assert.equal(await b.cookie('_session'), undefined, 'the browser dropped it');
    // A client that kept a copy and sends it again gets nothing either.
    await assertDeadCookie(kept);
    assertNoSttLeak(stack, stts);
  });

  test(`absolute: a transfer session in constant use dies at ${ABSOLUTE} s; idle slides with use until then`, async () => {
    const started = Date.now();
    const b = await transferSession('absolute');
    // Use it every 1.5 s (< idle): it stays alive past the idle limit counted from the start.
    const uses = [];
    while (Date.now() - started < (ABSOLUTE - 1.5) * 1000) {
      await sleep(1500);
      const r = await reauthorize(b, 'alice');
      uses.push({ at: ((Date.now() - started) / 1000).toFixed(1), alive: r.alive });
    }
    assert.ok(uses.length >= 3, 'used a few times');
    assert.ok(uses.every((u) => u.alive), `alive while in use before the absolute limit: ${JSON.stringify(uses)}`);
    assert.ok(Number(uses.at(-1).at) > IDLE, 'and past the idle limit counted from the login: idle slides');
    // A client that ignores cookie expiry keeps a copy of the cookies.
    const kept = await b.jar.getCookieString(`${stack.origin}/auth`);
    assert.match(kept, /(?:^|; )_session=/);
    // Past the absolute limit, although it was used 1.5 s ago.
    await sleep(Math.max(0, started + (ABSOLUTE + 0.8) * 1000 - Date.now()));
    const r = await reauthorize(b, 'alice');
    assert.equal(r.alive, false, `past the absolute limit: login page (uses: ${JSON.stringify(uses)})`);
    assert.equal(r.idpSawSession, false, 'the IdP saw no session');
    // The browser itself dropped _session: handoff capped its expiry at the absolute
    // limit. If it had still sent it, handoff must have expired it.
    if (r.sentSession) assert.ok(r.expired.length >= 1, 'handoff expired _session in the browser (Max-Age=0)');
    // The stubborn client replays the kept cookie: handoff strips it and expires it.
    await assertDeadCookie(kept);
    assertNoSttLeak(stack, stts);
  });

  test('unbound: a password session (no STT) passes untouched past both limits', async () => {
    const b = new Browser({ origin: stack.origin, name: 'password' });
    const login = web.begin();
    const start = await b.navigate(login.url);
    assert.ok(isLoginPage(start.final), 'no STT: the login page');
    const action = /<form id="login" method="post" action="([^"]+)"/.exec(start.final.text)[1];
    const f = form({ login: 'bob', password: 'bob-password' });
    const done = await b.navigate(action, { method: 'POST', body: f.body, headers: f.headers });
    assert.ok(done.exit, 'password login completes');
    assert.equal(jwtPayload((await web.finish(login, done.exit)).id_token).sub, 'bob');
    const [sc] = setCookiesNamed(done.hops, '_session');
    assert.ok(sc, 'the IdP set _session');
    assert.ok(sc.attrs.secure && sc.attrs.httponly, `hardened all the same: ${redact(sc.raw)}`);
    await sleep((ABSOLUTE + 1) * 1000);
    const r = await reauthorize(b, 'bob');
    assert.equal(r.alive, true, 'the unbound session still logs bob in');
    assert.equal(r.idpSawSession, true, 'the IdP saw its cookie');
    assert.equal(r.expired.length, 0, 'handoff did not expire it');
    assertNoSttLeak(stack, stts);
  });
});
