// Assertions shared by the end-to-end tests.

import assert from 'node:assert/strict';

/**
 * The strings that must never leak for an STT: the whole token and its secret
 * part (the last dot-separated segment; the parts before it are a non-secret
 * routing prefix, SPEC §5, which logs may show).
 */
export function sttNeedles(stt) {
  const parts = stt.split('.');
  const needles = [stt, encodeURIComponent(stt)];
  const secret = parts[parts.length - 1];
  if (secret.length >= 20) needles.push(secret);
  return [...new Set(needles)];
}

/** Everything the IdP received and logged, and everything handoff wrote, as one list of [where, text]. */
function haystacks(stack) {
  const out = [];
  stack.idpRequests.forEach((r, i) => {
    out.push([`IdP request #${i} URL ${r.method} ${r.url.split('?')[0]}`, r.url]);
    for (let j = 0; j < r.rawHeaders.length; j += 2) {
      out.push([`IdP request #${i} (${r.url.split('?')[0]}) header ${r.rawHeaders[j]}`, `${r.rawHeaders[j]}: ${r.rawHeaders[j + 1]}`]);
    }
    out.push([`IdP request #${i} (${r.url.split('?')[0]}) body`, r.body]);
  });
  stack.idpLog.forEach((l, i) => out.push([`IdP log line #${i}`, l]));
  out.push(['handoff stderr', stack.handoffStderr]);
  out.push(['handoff stdout', stack.handoffStdout]);
  return out;
}

/** Invariant 4: no STT in any request the IdP received, its log, or handoff's output. */
export function assertNoSttLeak(stack, stts) {
  assert.ok(stack.idpRequests.length > 0, 'the IdP recorded requests');
  const hay = haystacks(stack);
  for (const stt of stts) {
    for (const needle of sttNeedles(stt)) {
      for (const [where, text] of hay) {
        assert.ok(!text.includes(needle), `an STT (or its secret part) appears in ${where}`);
      }
    }
  }
}

/** handoff's stderr alone (every test checks it). */
export function assertSttNotInHandoffLogs(stack, stts) {
  for (const stt of stts) {
    for (const needle of sttNeedles(stt)) {
      assert.ok(!stack.handoffStderr.includes(needle), 'handoff stderr contains an STT');
      assert.ok(!stack.handoffStdout.includes(needle), 'handoff stdout contains an STT');
    }
  }
}

/** The expiry of a parsed Set-Cookie in seconds from `now` (Infinity for a session cookie). */
export function lifetimeSecs(sc, now = Date.now()) {
  const ages = [];
  if (sc.attrs['max-age'] !== undefined) ages.push(Number(sc.attrs['max-age']));
  if (sc.attrs.expires !== undefined) ages.push((Date.parse(sc.attrs.expires) - now) / 1000);
  return ages.length ? Math.min(...ages) : Infinity;
}

/** SPEC §2.4: the IdP session cookie of a transfer session. */
export function assertHardenedSessionCookie(sc, { absoluteSecs }) {
  const where = `Set-Cookie ${sc.name}: ${redact(sc.raw)}`;
  assert.ok(sc.attrs.secure, `${where}: Secure`);
  assert.ok(sc.attrs.httponly, `${where}: HttpOnly`);
  assert.equal(String(sc.attrs.samesite).toLowerCase(), 'lax', `${where}: SameSite=Lax`);
  assert.equal(sc.attrs.domain, undefined, `${where}: no Domain`);
  const life = lifetimeSecs(sc);
  assert.ok(Number.isFinite(life), `${where}: has an expiry`);
  assert.ok(life <= absoluteSecs + 1, `${where}: expiry ${life.toFixed(1)} s is past the absolute limit ${absoluteSecs} s`);
}

/** A __Host- cookie as handoff sets it (the redirect cookie, the transaction cookie). */
export function assertHostCookie(sc, { maxAge }) {
  const where = `Set-Cookie ${sc.name}: ${redact(sc.raw)}`;
  assert.ok(sc.name.startsWith('__Host-'), `${where}: __Host- prefix`);
  assert.ok(sc.attrs.secure, `${where}: Secure`);
  assert.ok(sc.attrs.httponly, `${where}: HttpOnly`);
  assert.equal(String(sc.attrs.samesite).toLowerCase(), 'lax', `${where}: SameSite=Lax`);
  assert.equal(sc.attrs.path, '/', `${where}: Path=/`);
  assert.equal(sc.attrs.domain, undefined, `${where}: no Domain`);
  const age = Number(sc.attrs['max-age']);
  assert.ok(Number.isFinite(age) && age > 0 && age <= maxAge, `${where}: 0 < Max-Age <= ${maxAge}`);
}

/** A Set-Cookie line with its value hidden (for messages). */
export function redact(line) {
  return line.replace(/^([^=]*)=([^;]*)/, (_, n, v) => `${n}=${v ? '<redacted>' : ''}`);
}

/** All parsed Set-Cookies of a hop list with this name. */
export function setCookiesNamed(hops, name) {
  return hops.flatMap((h) => h.setCookies.filter((c) => c.name === name).map((c) => ({ ...c, hop: h })));
}
