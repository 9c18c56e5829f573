// A browser as far as the login is concerned: a cookie jar (tough-cookie, with
// 127.0.0.1 treated as a secure context as browsers treat loopback, so Secure and
// __Host- cookies work over plain HTTP here), manual redirects, and a record of
// every hop. It stops at the first redirect that leaves handoff's origin (the web
// app's callback, or a native app's custom scheme) and does not fetch it.

import { CookieJar } from 'tough-cookie';

import { request, parseSetCookie } from './http.js';

export class Browser {
  /**
   * @param {object} o
   * @param {string} o.origin          handoff's public origin, http://127.0.0.1:PORT
   * @param {string} [o.localAddress]  the device's IP (another loopback address = another device)
   * @param {string} [o.name]
   */
  constructor({ origin, localAddress, name = 'browser' }) {
    this.origin = origin;
    this.localAddress = localAddress;
    this.name = name;
    this.jar = new CookieJar(undefined, { allowSecureOnLocal: true, prefixSecurity: 'strict' });
  }

  /** Puts a cookie in the jar, as a native app does in its web view. */
  async setCookie(cookie, url = this.origin) {
    await this.jar.setCookie(cookie, url);
  }

  async cookies(url = this.origin) {
    return this.jar.getCookies(url);
  }

  async cookie(name, url = this.origin) {
    return (await this.jar.getCookies(url)).find((c) => c.key === name);
  }

  /** One request with the jar's cookies; stores what comes back. */
  async fetch(url, { method = 'GET', headers = {}, body } = {}) {
    const abs = new URL(url, this.origin).href;
    const cookie = await this.jar.getCookieString(abs);
    const h = { ...headers };
    if (cookie) h.cookie = cookie;
    const res = await request({
      url: abs, method, headers: h, body, localAddress: this.localAddress,
    });
    for (const sc of res.setCookies) {
      try {
        await this.jar.setCookie(sc, abs);
      } catch (err) {
        // A browser ignores a cookie it refuses; note it for the test's eyes.
        res.refusedCookies = [...(res.refusedCookies ?? []), `${parseSetCookie(sc).name}: ${err.message}`];
      }
    }
    res.sentCookie = cookie;
    return res;
  }

  /**
   * Navigates to `url`, following redirects inside handoff's origin.
   * Returns { final, hops, exit } where hops is [{ method, path, status, location,
   * setCookies, res }] and exit is the off-origin Location (the callback) if any.
   */
  async navigate(url, { method = 'GET', headers = {}, body, maxHops = 20 } = {}) {
    const hops = [];
    let current = new URL(url, this.origin).href;
    let m = method;
    let b = body;
    let h = headers;
    for (let i = 0; i < maxHops; i += 1) {
      const res = await this.fetch(current, { method: m, headers: h, body: b });
      const u = new URL(current);
      const hop = {
        method: m,
        path: u.pathname,
        url: current,
        status: res.status,
        location: res.headers.location,
        setCookies: res.setCookies.map(parseSetCookie),
        res,
      };
      hops.push(hop);
      if (![301, 302, 303, 307, 308].includes(res.status) || !res.headers.location) {
        return { final: res, hops, exit: undefined };
      }
      const next = new URL(res.headers.location, current);
      if (next.origin !== this.origin) {
        return { final: res, hops, exit: next };
      }
      current = next.href;
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && m === 'POST')) {
        m = 'GET';
        b = undefined;
        h = Object.fromEntries(Object.entries(h).filter(([k]) => !/^content-/i.test(k)));
      }
    }
    throw new Error(`${this.name}: more than ${maxHops} redirects from ${url}`);
  }
}

/** Whether a response is the example IdP's password login page. */
export function isLoginPage(res) {
  return res.status === 200 && /<form id="login"/.test(res.text);
}

/**
 * The hop list as "METHOD /path -> status" (paths only: no query, no token;
 * interaction ids shown as :uid). A 303 that handoff answered itself (query
 * delivery) is marked "[handoff]"; the others reached the IdP.
 */
export function hopSummary(hops, exit) {
  const lines = hops.map((h) => {
    const byHandoff = h.status === 303 && h.setCookies.some((c) => c.name === '__Host-handoff_stt' && c.value);
    return `${h.method} ${h.path.replace(/\/[A-Za-z0-9_-]{20,}/g, '/:uid')} -> ${h.status}${byHandoff ? ' [handoff]' : ''}`;
  });
  if (exit) lines.push(`(redirect out to ${exit.origin}${exit.pathname})`);
  return lines;
}

/** How many of the hops reached the IdP (all but handoff's own 303s). */
export function idpHopCount(hops) {
  return hopSummary(hops).filter((l) => !l.endsWith('[handoff]')).length;
}
