// Plain node:http client: one request, no redirects, raw Set-Cookie kept, with a
// chosen local address (a "device" on 127.0.0.2 is another IP for handoff).

import http from 'node:http';

/**
 * @param {object} o
 * @param {string} o.url
 * @param {string} [o.method='GET']
 * @param {Record<string,string|string[]>} [o.headers]
 * @param {string|Buffer} [o.body]
 * @param {string} [o.localAddress]
 * @param {number} [o.timeout=10000]
 * @returns {Promise<{status:number, headers:object, setCookies:string[], text:string, json:() => any, url:string}>}
 */
export function request({
  url, method = 'GET', headers = {}, body, localAddress, timeout = 10_000,
}) {
  const u = new URL(url);
  if (u.protocol !== 'http:') throw new Error(`only http: here, got ${url}`);
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path: `${u.pathname}${u.search}`,
      method,
      headers: h,
      localAddress,
      agent: false, // a fresh connection each time: the local address is per request
      timeout,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode,
          headers: res.headers,
          setCookies: res.headers['set-cookie'] ?? [],
          text,
          json: () => JSON.parse(text),
          url,
        });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${u.pathname}`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** application/x-www-form-urlencoded body and header. */
export function form(fields) {
  return {
    body: new URLSearchParams(fields).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  };
}

/** Parses one Set-Cookie header into { name, value, attrs } (attribute names lower-cased). */
export function parseSetCookie(line) {
  const [pair, ...rest] = line.split(';');
  const eq = pair.indexOf('=');
  const name = pair.slice(0, eq).trim();
  const value = pair.slice(eq + 1).trim();
  const attrs = {};
  for (const a of rest) {
    const i = a.indexOf('=');
    const k = (i < 0 ? a : a.slice(0, i)).trim().toLowerCase();
    const v = i < 0 ? true : a.slice(i + 1).trim();
    if (k) attrs[k] = v;
  }
  return { name, value, attrs, raw: line };
}

/** Decodes a JWT's payload (no verification: the test reads what the IdP issued). */
export function jwtPayload(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}
