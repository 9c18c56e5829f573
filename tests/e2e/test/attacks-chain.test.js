// Found by a second pentest of the issue-9 fixes, against the real IdP:
//   1. a redemption whose answer pointed nowhere on the public host (an error
//      redirect to the client, a 400 page) must not let the running transaction's
//      assertion finish a later, foreign authorize (here: form_post) — the
//      transaction follows the IdP's own redirect chain, path and query;
//   2. an unrecorded code exchange whose answer has no id_token (scope without
//      openid) must not hand a transfer web client a refresh token, even one with
//      allow_refresh_token = true: an unrecorded token can never be bound.
// Each test asserts the safe outcome; on the code before the fix both fail.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { NativeApp, WebApp } from '../lib/apps.js';
import { Browser, hopSummary } from '../lib/browser.js';
import { form, jwtPayload, request } from '../lib/http.js';
import { startStack, WEB_CALLBACK } from '../lib/stack.js';

function idpConfigure(config) {
  config.enableHttpPostMethods = true;
  config.cookies = { ...config.cookies, long: { ...config.cookies?.long, sameSite: 'none' } };
  config.features = { ...config.features, pushedAuthorizationRequests: { enabled: true }, requestObjects: { enabled: true, requireSignedRequestObject: false }, jwtResponseModes: { enabled: true }, webMessageResponseMode: { enabled: true } };
  return config;
}
const htmlDecode = (s) => s.replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n))).replace(/&quot;/g, '"').replace(/&amp;/g, '&');
function findCode(final, exit) {
  if (exit?.searchParams.get('code')) return exit.searchParams.get('code');
  const m = /<input[^>]*name="code"[^>]*value="([^"]*)"/.exec(final?.text ?? '') ?? /<input[^>]*value="([^"]*)"[^>]*name="code"/.exec(final?.text ?? '');
  return m ? htmlDecode(m[1]) : undefined;
}
const txOf = (res) => { const c = res.setCookies.find((s) => s.startsWith('__Host-handoff_tx=')); if (!c) return undefined; const v = c.split(';')[0].split('=')[1]; if (!v) return 'EXPIRED'; try { return JSON.parse(Buffer.from(v.split('.')[0], 'base64url').toString()); } catch { return v; } };

describe('issue 9, second pentest: the transaction chain and unrecorded exchanges (real oidc-provider)', { timeout: 170_000 }, () => {
  let stack; let web; let webRt;
  before(async () => {
    stack = await startStack({ name: 'attacks-chain', idpConfigure, clientSecrets: true, moreWebClients: { 'web-app-rt': { secret: 'web-rt-secret', rules: { allow_refresh_token: 'true' } } } });
    web = new WebApp(stack); webRt = new WebApp(stack, { clientId: 'web-app-rt', secret: 'web-rt-secret' });
  });
  after(async () => { if (process.env.E2E_VERBOSE) { console.log(stack.idpLog.join('\n')); } await stack?.stop(); });
  const nativeApp = async (u = 'alice') => { const a = new NativeApp(stack); await a.login(u, `${u}-password`); return a; };
  const mint = async (a) => { const m = await a.mint(); assert.equal(m.status, 200); return m.body.access_token; };
  const plant = (b, stt) => b.setCookie(`auth0_session_transfer_token=${stt}; Secure; HttpOnly; Path=/`);
  const basic = (id, s) => `Basic ${Buffer.from(`${id}:${s}`).toString('base64')}`;
  async function exch(code, login, id, secret, extraHeaders = {}, extraBody = {}) {
    const t = form({ grant_type: 'authorization_code', code, redirect_uri: WEB_CALLBACK, code_verifier: login.verifier, ...extraBody });
    const res = await request({ url: `${stack.origin}/token`, method: 'POST', body: t.body, headers: { ...t.headers, authorization: basic(id, secret), ...extraHeaders } });
    let body; try { body = JSON.parse(res.text); } catch { body = res.text; }
    return { status: res.status, body };
  }

  for (const [label, firstExtra] of [['prompt=none', { prompt: 'none' }], ['bad redirect_uri', { redirect_uri: 'https://evil.example/cb' }]]) {
    for (const [client, app2, scope] of [['web-app', 'web', 'openid offline_access email'], ['web-app-rt', 'webRt', 'offline_access']]) {
      test(`a redemption answered off the public host (${label}) does not arm later authorize requests; a foreign form_post authorize for ${client} (scope ${scope}) gets no transfer login and no refresh token`, async (t) => {
        const w = app2 === 'web' ? web : webRt;
        const app = await nativeApp();
        const b = new Browser({ origin: stack.origin, name: `A-${label}-${client}` });
        await plant(b, await mint(app));
        const first = w.begin({ extra: firstExtra });
        const logFrom = stack.idpLog.length;
        const r1 = await b.fetch(first.url);
        t.diagnostic(`redemption hop: ${r1.status} loc=${(r1.headers.location ?? '').split('?')[0]} tx=${JSON.stringify(txOf(r1)?.x ?? txOf(r1))}`);
        // The foreign authorize (started after, same client, form_post)
        const foreign = w.begin({ offline: true, extra: { response_mode: 'form_post' } });
        const u = new URL(foreign.url, stack.origin); u.searchParams.set('scope', scope);
        const nav = await b.navigate(u.pathname + u.search);
        t.diagnostic(`foreign: ${hopSummary(nav.hops, nav.exit).join(' | ')}`);
        t.diagnostic(`idp log: ${stack.idpLog.slice(logFrom).filter((l) => /handoff/.test(l)).join(' ;; ')}`);
        const code = findCode(nav.final, nav.exit);
        t.diagnostic(`code found: ${!!code}`);
        if (code) {
          const ex = await exch(code, foreign, client, app2 === 'web' ? 'web-secret' : 'web-rt-secret');
          const id = ex.body.id_token ? jwtPayload(ex.body.id_token) : undefined;
          t.diagnostic(`exchange ${ex.status} rt=${!!ex.body.refresh_token} sub=${id?.sub} amr=${JSON.stringify(id?.amr)} keys=${Object.keys(ex.body)}`);
          if (ex.body.refresh_token) {
            // cascade: revoke the native app's refresh token; does the web RT still work?
            const rev = await app.revoke();
            t.diagnostic(`native revoke ${rev.status}`);
            await new Promise((r) => setTimeout(r, 500));
            const rr = await w.refresh(ex.body.refresh_token);
            t.diagnostic(`web refresh after cascade: ${rr.status} ${rr.text.slice(0, 120)}`);
            assert.notEqual(rr.status, 200, 'refresh token of a transfer login survived cascade');
          }
          assert.equal(ex.body.refresh_token, undefined, 'refresh token escaped');
        }
        assert.equal(code, undefined, 'transaction assertion finished a foreign form_post interaction');
      });
    }
  }
});
