// Stand-alone tests of the integration: the example IdP (server.js) with a static
// JWKS, and assertions signed here the way handoff signs them (EdDSA, kid). No
// handoff, no redis: these pin down what the IdP accepts and refuses.
//   npm test   (in deploy/oidc-provider)

import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import {
  SignJWT, exportJWK, generateKeyPair,
} from 'jose';

import { MemoryReplayCache, createHandoffVerifier } from '../handoff-interaction.js';
import { createIdp } from '../server.js';

const CALLBACK = 'https://web.example/callback';

function req(base, path, { method = 'GET', headers = {}, body, cookies } = {}) {
  const u = new URL(path, base);
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (cookies?.size) h.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
    const r = http.request(u, { method, headers: h, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        for (const sc of res.headers['set-cookie'] ?? []) {
          const [pair] = sc.split(';');
          const i = pair.indexOf('=');
          const [k, v] = [pair.slice(0, i), pair.slice(i + 1)];
          if (/max-age=0|expires=Thu, 01 Jan 1970/i.test(sc)) cookies?.delete(k); else cookies?.set(k, v);
        }
        resolve({ status: res.statusCode, headers: res.headers, text });
      });
    });
    r.on('error', reject);
    if (body !== undefined) r.write(body);
    r.end();
  });
}

describe('oidc-provider + handoff-interaction (no handoff)', () => {
  let server;
  let base;
  let key;
  let otherKey;
  let jwk;
  const logs = [];

  before(async () => {
    ({ privateKey: key, publicKey: jwk } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true }));
    ({ privateKey: otherKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true }));
    const pub = { ...(await exportJWK(jwk)), kid: 'k1', alg: 'EdDSA', use: 'sig' };
    server = http.createServer();
    await new Promise((r) => { server.listen(0, '127.0.0.1', r); });
    base = `http://127.0.0.1:${server.address().port}`;
    const { callback } = createIdp({
      issuer: base,
      handoff: { jwks: { keys: [pub] }, issuer: 'handoff', audience: base },
      webRedirectUris: [CALLBACK],
      log: (l) => logs.push(l),
    });
    server.on('request', callback);
  });

  after(() => new Promise((r) => { server.closeAllConnections(); server.close(r); }));

  function sign(claims = {}, { signer = key, kid = 'k1', alg = 'EdDSA' } = {}) {
    const now = Math.floor(Date.now() / 1000);
    const c = {
      iss: 'handoff',
      aud: base,
      sub: 'alice',
      iat: now,
      exp: now + 60,
      jti: randomBytes(12).toString('base64url'),
      amr: ['session_transfer'],
      sid: 'sid-1',
      lineage: 'lin-1',
      client_id: 'web-app',
      native_client_id: 'native-app',
      ...claims,
    };
    for (const [k, v] of Object.entries(c)) if (v === undefined) delete c[k];
    return new SignJWT(c).setProtectedHeader({ alg, kid }).sign(signer);
  }

  /** Starts an authorization request; returns { cookies, interactionPath, verifier }. */
  async function start(clientId = 'web-app') {
    const cookies = new Map();
    const verifier = randomBytes(32).toString('base64url');
    const q = new URLSearchParams({
      client_id: clientId,
      response_type: 'code',
      redirect_uri: CALLBACK,
      scope: 'openid email',
      state: 'st',
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    });
    const r = await req(base, `/auth?${q}`, { cookies });
    assert.equal(r.status, 303);
    assert.match(r.headers.location, /^\/interaction\//);
    return { cookies, interactionPath: r.headers.location, verifier };
  }

  /** GET the interaction with `assertion`; follow to the end. */
  async function interact(assertion, { cookies, interactionPath }) {
    const headers = assertion ? { 'x-handoff-assertion': assertion } : {};
    const r = await req(base, interactionPath, { cookies, headers });
    if (r.status !== 303) return { loginPage: r.status === 200 && r.text.includes('<form id="login"'), r };
    assert.match(r.headers.location, /\/auth\//);
    const resume = await req(base, r.headers.location, { cookies });
    assert.equal(resume.status, 303);
    return { loginPage: false, callback: new URL(resume.headers.location), cookies };
  }

  test('a valid assertion logs the user in without a password', async () => {
    const t = await start();
    const out = await interact(await sign(), t);
    assert.equal(out.loginPage, false);
    assert.equal(out.callback.origin + out.callback.pathname, CALLBACK);
    assert.ok(out.callback.searchParams.get('code'));
    assert.ok(out.cookies.has('_session'), 'the IdP session cookie is set');
    assert.ok(logs.some((l) => l.includes('handoff login') && l.includes('sub=alice')));

    // The web app redeems the code: the id_token names alice, logged in by session transfer.
    const body = new URLSearchParams({
      grant_type: 'authorization_code', code: out.callback.searchParams.get('code'), redirect_uri: CALLBACK, code_verifier: t.verifier,
    }).toString();
    const tok = await req(base, '/token', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('web-app:web-secret').toString('base64')}` },
    });
    assert.equal(tok.status, 200, tok.text);
    const idToken = JSON.parse(Buffer.from(JSON.parse(tok.text).id_token.split('.')[1], 'base64url'));
    assert.equal(idToken.sub, 'alice');
    assert.deepEqual(idToken.amr, ['session_transfer']);
  });

  test('no assertion: the login page', async () => {
    const out = await interact(undefined, await start());
    assert.equal(out.loginPage, true);
  });

  const refusals = [
    ['wrong audience', () => sign({ aud: 'https://elsewhere.example' }), 'wrong_audience'],
    ['wrong issuer', () => sign({ iss: 'someone-else' }), 'wrong_issuer'],
    ['expired', () => sign({ iat: Math.floor(Date.now() / 1000) - 100, exp: Math.floor(Date.now() / 1000) - 40 }), 'expired'],
    ['lives longer than 60 s', () => sign({ exp: Math.floor(Date.now() / 1000) + 3600 }), 'lifetime_too_long'],
    ['issued in the future', () => sign({ iat: Math.floor(Date.now() / 1000) + 120, exp: Math.floor(Date.now() / 1000) + 150 }), 'bad_claim_iat'],
    ['amr without session_transfer', () => sign({ amr: ['pwd'] }), 'wrong_amr'],
    ['no amr', () => sign({ amr: undefined }), 'bad_claim_amr'],
    ['another web client', () => sign({ client_id: 'other-web' }), 'client_mismatch'],
    ['no jti', () => sign({ jti: undefined }), 'bad_claim_jti'],
    ['signed by another key', () => sign({}, { signer: otherKey }), 'bad_signature'],
    ['unknown kid', () => sign({}, { kid: 'k2' }), 'unknown_key'],
    ['HS256 (alg confusion)', () => sign({}, { signer: new TextEncoder().encode('x'.repeat(32)), alg: 'HS256' }), 'alg_not_allowed'],
    ['unsigned (alg none)', async () => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'alice' })).toString('base64url')}.`, 'alg_not_allowed'],
    ['garbage', async () => 'not-a-jws', 'malformed'],
    ['an unknown account', () => sign({ sub: 'mallory' }), 'unknown_account'],
  ];
  for (const [name, make, reason] of refusals) {
    test(`refused, login page: ${name}`, async () => {
      const before = logs.length;
      const out = await interact(await make(), await start());
      assert.equal(out.loginPage, true, `${name}: expected the login page`);
      const line = logs.slice(before).find((l) => l.includes('assertion rejected'));
      assert.ok(line, `${name}: the rejection is logged`);
      assert.match(line, new RegExp(`reason=${reason}$`));
    });
  }

  test('a jti is single-use: the same assertion twice, the second time the login page', async () => {
    const a = await sign();
    assert.equal((await interact(a, await start())).loginPage, false);
    const before = logs.length;
    assert.equal((await interact(a, await start())).loginPage, true);
    assert.ok(logs.slice(before).some((l) => l.endsWith('reason=replayed')));
  });

  test('the assertion is never logged', async () => {
    const a = await sign();
    const out = await interact(a, await start());
    assert.equal(out.loginPage, false);
    assert.ok(!logs.some((l) => l.includes(a)), 'no log line holds the assertion');
    assert.ok(!logs.some((l) => l.includes(a.split('.')[2])), 'nor its signature');
  });
});

describe('createHandoffVerifier', () => {
  test('needs an issuer, an audience and a key', () => {
    assert.throws(() => createHandoffVerifier({ audience: 'a', jwksUrl: 'http://x/' }), /issuer/);
    assert.throws(() => createHandoffVerifier({ issuer: 'i', jwksUrl: 'http://x/' }), /audience/);
    assert.throws(() => createHandoffVerifier({ issuer: 'i', audience: 'a' }), /jwksUrl, jwks or secret/);
    assert.throws(() => createHandoffVerifier({ issuer: 'i', audience: 'a', secret: 'short' }), /32 bytes/);
  });

  test('HS256 with a shared secret', async () => {
    const secret = randomBytes(32);
    const v = createHandoffVerifier({ issuer: 'handoff', audience: 'idp', secret });
    const now = Math.floor(Date.now() / 1000);
    const jws = await new SignJWT({
      iss: 'handoff', aud: 'idp', sub: 'bob', iat: now, exp: now + 30, jti: 'j1', amr: ['session_transfer'], client_id: 'w',
    }).setProtectedHeader({ alg: 'HS256' }).sign(secret);
    assert.deepEqual((await v.verify({ 'x-handoff-assertion': jws }, { clientId: 'w' })).ok, true);
    assert.deepEqual(await v.verify({ 'x-handoff-assertion': jws }, { clientId: 'w' }), { ok: false, reason: 'replayed' });
  });

  test('an unreachable JWKS is a refusal, not a crash', async () => {
    const v = createHandoffVerifier({ issuer: 'handoff', audience: 'idp', jwksUrl: 'http://127.0.0.1:9/jwks.json' });
    const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const now = Math.floor(Date.now() / 1000);
    const jws = await new SignJWT({
      iss: 'handoff', aud: 'idp', sub: 'bob', iat: now, exp: now + 30, jti: 'j1', amr: ['session_transfer'], client_id: 'w',
    }).setProtectedHeader({ alg: 'EdDSA', kid: 'k' }).sign(privateKey);
    assert.deepEqual(await v.verify({ 'x-handoff-assertion': jws }, { clientId: 'w' }), { ok: false, reason: 'jwks_unavailable' });
  });

  test('untrusted peers and repeated headers are refused before any crypto', async () => {
    const v = createHandoffVerifier({
      issuer: 'handoff', audience: 'idp', secret: randomBytes(32), trustedPeer: (p) => p === '10.0.0.1',
    });
    assert.deepEqual(await v.verify({ 'x-handoff-assertion': 'x' }, { clientId: 'w', peer: '10.0.0.2' }), { ok: false, reason: 'untrusted_peer' });
    assert.deepEqual(await v.verify({ 'x-handoff-assertion': ['a', 'b'] }, { clientId: 'w', peer: '10.0.0.1' }), { ok: false, reason: 'repeated_header' });
    assert.deepEqual(await v.verify({}, { clientId: 'w' }), { ok: false, reason: 'absent' });
  });
});

describe('MemoryReplayCache', () => {
  test('single use until expiry; full means refuse, not forget', async () => {
    const c = new MemoryReplayCache({ max: 2 });
    const now = Math.floor(Date.now() / 1000);
    assert.equal(await c.consume('a', now + 60), true);
    assert.equal(await c.consume('a', now + 60), false);
    assert.equal(await c.consume('b', now + 60), true);
    assert.equal(await c.consume('c', now + 60), false, 'full of live entries: refuse');
    const d = new MemoryReplayCache({ max: 2 });
    assert.equal(await d.consume('old', now - 1), true);
    assert.equal(await d.consume('x', now + 60), true);
    assert.equal(await d.consume('y', now + 60), true, 'expired entries make room');
    assert.equal(d.size, 2);
  });
});
