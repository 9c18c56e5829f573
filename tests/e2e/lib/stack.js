// The stack under test, all on loopback with free ports:
//   redis-server  <- handoff (public listener + admin listener) -> example IdP
// The IdP (deploy/oidc-provider/server.js) runs in this process, wrapped so that
// every request it receives (method, URL, headers, body), the answer it gives
// (status, body) and every line it logs are recorded. handoff is the real binary (HANDOFF_BIN, default target/debug/handoff),
// its stderr captured.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { createIdp } from '../../../deploy/oidc-provider/server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../..');

/** The handoff binary: $HANDOFF_BIN (relative to the working directory), else target/debug/handoff. */
export const HANDOFF_BIN = process.env.HANDOFF_BIN
  ? path.resolve(process.env.HANDOFF_BIN)
  : path.join(repo, 'target/debug/handoff');
export const WEB_CALLBACK = 'https://web.example/callback';
export const NATIVE_CALLBACK = 'com.example.native:/callback';

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

/** A free TCP port on 127.0.0.1 (bound, read, released). */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(what, fn, { timeout = 15_000, every = 100 } = {}) {
  const until = Date.now() + timeout;
  let last;
  while (Date.now() < until) {
    try {
      if (await fn()) return;
    } catch (err) {
      last = err;
    }
    await sleep(every);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

function httpGet(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

function pingRedis(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.setTimeout(1000, () => { s.destroy(); resolve(false); });
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      buf += d;
      if (buf.includes('\r\n')) { s.end(); resolve(buf.startsWith('+PONG')); }
    });
  });
}

function killChild(child, name, log) {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
    const t = setTimeout(() => { log?.(`${name} did not stop on SIGTERM, SIGKILL`); child.kill('SIGKILL'); }, 3000);
    child.once('exit', () => { clearTimeout(t); resolve(); });
    child.kill('SIGTERM');
  });
}

/**
 * Starts redis-server, the example IdP and handoff.
 *
 * @param {object} [o]
 * @param {string} [o.name]
 * @param {Record<string,string>} [o.webRules]  rules-file settings of `web-app` (TOML values)
 * @param {Record<string,{secret:string, rules?:Record<string,string>}>} [o.moreWebClients]
 *   further web clients: registered at the IdP, allowed for the native app, with
 *   their own rules-file settings (on top of the same defaults as `web-app`)
 * @param {boolean} [o.clientSecrets]  give handoff every web client's secret
 *   (`[clients."ID"] secret_file`), so it revokes withheld refresh tokens at the IdP
 * @param {boolean} [o.backchannelLogout]  every web client registers handoff's
 *   back-channel logout URI at the IdP; handoff accepts logout tokens for them
 * @param {(config: object) => object|void} [o.idpConfigure]  changes the
 *   oidc-provider configuration before the provider is built (createIdp's
 *   `configure`), e.g. to switch on PAR, request objects, POST /auth or JARM
 * @returns {Promise<Stack>}
 */
export async function startStack({
  name = 'e2e', webRules = {}, moreWebClients = {}, clientSecrets = false, backchannelLogout = false, idpConfigure, log = () => {},
} = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), `handoff-${name}-`));
  const [redisPort, idpPort, publicPort, adminPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const publicHost = `127.0.0.1:${publicPort}`;
  const origin = `http://${publicHost}`;
  const admin = `http://127.0.0.1:${adminPort}`;
  const stack = {
    dir, origin, admin, publicHost, redisPort, idpPort, publicPort, adminPort,
    idpRequests: [], idpLog: [], handoffStderr: '', handoffStdout: '', children: [],
  };
  const cleanups = [];
  stack.stop = async () => {
    for (const c of cleanups.reverse()) {
      try { await c(); } catch { /* keep stopping the rest */ }
    }
    cleanups.length = 0;
    if (!process.env.E2E_KEEP) rmSync(dir, { recursive: true, force: true });
  };
  // A crash of the test process must not leave servers behind.
  const onExit = () => { for (const c of stack.children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } };
  process.once('exit', onExit);
  cleanups.push(() => process.off('exit', onExit));

  try {
    // 1. redis-server
    const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    stack.children.push(redis);
    redis.stdout.resume();
    redis.stderr.resume();
    cleanups.push(() => killChild(redis, 'redis-server', log));
    await waitFor('redis-server', () => pingRedis(redisPort));

    // 2. the example IdP, in this process, recorded
    const logoutUri = backchannelLogout ? `${origin}/handoff/backchannel-logout` : undefined;
    const webSecrets = { 'web-app': 'web-secret', ...Object.fromEntries(Object.entries(moreWebClients).map(([id, c]) => [id, c.secret])) };
    const { callback, provider } = createIdp({
      issuer: origin,
      handoff: {
        jwksUrl: `${admin}/.well-known/handoff/jwks.json`,
        issuer: 'handoff',
        audience: origin,
        trustedPeer: (peer) => ['127.0.0.1', '::ffff:127.0.0.1', '::1'].includes(peer),
      },
      webRedirectUris: [WEB_CALLBACK],
      webBackchannelLogoutUri: logoutUri,
      moreWebClients: Object.entries(moreWebClients).map(([clientId, c]) => ({ clientId, clientSecret: c.secret, backchannelLogoutUri: logoutUri })),
      nativeRedirectUris: [NATIVE_CALLBACK],
      log: (line) => stack.idpLog.push(line),
      configure: idpConfigure,
    });
    stack.provider = provider;
    const idp = http.createServer((req, res) => {
      // Record the whole request (URL, headers, body) without touching it: the
      // body is teed off the stream as the HTTP parser pushes it in, and the IdP
      // reads the very same stream itself (content-type, charset, length checks
      // and all). A wrapper that reads the body first and hands it on as
      // req.body makes oidc-provider take its pre-parsed-body fallback, which
      // ignores the charset and skips the length checks: body-level request
      // shapes would then reach a different parser than in production.
      const rec = {
        method: req.method, url: req.url, headers: { ...req.headers }, rawHeaders: [...req.rawHeaders], body: '', bodyComplete: false, at: Date.now(),
      };
      stack.idpRequests.push(rec);
      const chunks = [];
      const { push } = req;
      req.push = function recordPush(chunk, ...rest) {
        if (chunk === null) {
          rec.bodyComplete = true;
        } else if (chunk !== undefined) {
          chunks.push(Buffer.from(chunk));
          rec.body = Buffer.concat(chunks).toString('latin1');
        }
        return push.call(this, chunk, ...rest);
      };
      // The answer too (status, body), e.g. to see what a token response held
      // before handoff mediated it.
      const out = [];
      const { write, end } = res;
      res.write = function recordWrite(chunk, ...rest) {
        if (chunk && typeof chunk !== 'function') out.push(Buffer.from(chunk));
        return write.call(this, chunk, ...rest);
      };
      res.end = function recordEnd(chunk, ...rest) {
        if (chunk && typeof chunk !== 'function') out.push(Buffer.from(chunk));
        rec.response = { status: res.statusCode, headers: res.getHeaders(), body: Buffer.concat(out).toString('utf8') };
        return end.call(this, chunk, ...rest);
      };
      callback(req, res);
    });
    await new Promise((resolve, reject) => { idp.once('error', reject); idp.listen(idpPort, '127.0.0.1', resolve); });
    idp.keepAliveTimeout = 1000;
    cleanups.push(() => new Promise((resolve) => { idp.closeAllConnections?.(); idp.close(() => resolve()); }));

    // 3. handoff
    const keygen = spawnSync(HANDOFF_BIN, ['keygen', '--out', path.join(dir, 'assertion.pem')], { encoding: 'utf8' });
    if (keygen.status !== 0) throw new Error(`handoff keygen failed (${HANDOFF_BIN}): ${keygen.stderr || keygen.error}`);
    const webDefaults = {
      allowed_authentication_methods: '["cookie", "query"]',
      enforce_device_binding: '"ip"',
      session_absolute: '"6s"',
      session_idle: '"3s"',
    };
    const webClients = {
      'web-app': { ...webDefaults, ...webRules },
      ...Object.fromEntries(Object.entries(moreWebClients).map(([id, c]) => [id, { ...webDefaults, ...c.rules }])),
    };
    const webIds = Object.keys(webClients);
    writeFileSync(path.join(dir, 'rules.toml'), [
      '# written by tests/e2e/lib/stack.js',
      '[native."native-app"]',
      'can_create_session_transfer_token = true',
      `allowed_web_clients = ${JSON.stringify(webIds)}`,
      '',
      ...Object.entries(webClients).flatMap(([id, rules]) => [
        `[web."${id}"]`,
        ...Object.entries(rules).map(([k, v]) => `${k} = ${v}`),
        '',
      ]),
    ].join('\n'));
    let extraConfig = '';
    if (clientSecrets) {
      for (const id of webIds) {
        writeFileSync(path.join(dir, `${id}.secret`), `${webSecrets[id]}\n`, { mode: 0o600 });
        extraConfig += `\n[clients."${id}"]\nsecret_file = "${id}.secret"\n`;
      }
    }
    if (backchannelLogout) {
      extraConfig += `\n[backchannel_logout]\naudiences = ${JSON.stringify(webIds)}\n`;
    }
    writeFileSync(path.join(dir, 'handoff.toml'), `# written by tests/e2e/lib/stack.js
[server]
listen = ["${publicHost}"]
public_host = "${publicHost}"
threads = 2

[upstream]
address = "127.0.0.1:${idpPort}"
timeout = "5s"

[store]
kind = "redis"
url = "redis://127.0.0.1:${redisPort}"
# The default 50ms fails closed when two busy cores starve Redis for a moment (a
# transaction hop not counted = no assertion = a login page); the suite tests
# flows, not the box's latency.
timeout = "500ms"

# Every test mints from 127.0.0.1 (one network) and some from one native login
# dozens of times: the limits are tested in tests/hardening.rs, not here.
[mint.rate_limit]
network = { per_minute = 0 }
lineage = { per_minute = 0 }

[assertion]
issuer = "handoff"
audience = "${origin}"
key_file = "assertion.pem"

[paths]
token = "/token"
revocation = "/token/revocation"
redemption = ["/auth"]

[session]
cookie_names = ["_session"]

[rules]
file = "rules.toml"

[admin]
listen = "127.0.0.1:${adminPort}"
${extraConfig}`);
    for (const [what, args] of [['rules', ['rules', 'check', path.join(dir, 'rules.toml')]], ['config', ['config', 'check', path.join(dir, 'handoff.toml')]]]) {
      const r = spawnSync(HANDOFF_BIN, args, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`handoff ${what} check failed: ${r.stdout}${r.stderr}`);
    }
    const handoff = spawn(HANDOFF_BIN, ['--config', path.join(dir, 'handoff.toml')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HANDOFF_LOG: process.env.HANDOFF_LOG ?? 'debug' },
    });
    stack.children.push(handoff);
    stack.handoff = handoff;
    handoff.stdout.setEncoding('utf8');
    handoff.stderr.setEncoding('utf8');
    handoff.stdout.on('data', (d) => { stack.handoffStdout += d; });
    handoff.stderr.on('data', (d) => { stack.handoffStderr += d; });
    cleanups.push(() => killChild(handoff, 'handoff', log));
    await waitFor('handoff /readyz', async () => {
      if (handoff.exitCode !== null) throw new Error(`handoff exited ${handoff.exitCode}: ${stack.handoffStderr.slice(-2000)}`);
      return (await httpGet(`${admin}/readyz`)).status === 200;
    });
    await waitFor('handoff public listener', async () => (await httpGet(`${origin}/.well-known/handoff/jwks.json`)).status === 200);
  } catch (err) {
    await stack.stop();
    throw err;
  }

  /** handoff's Prometheus metrics as text. */
  stack.metrics = async () => (await httpGet(`${admin}/metrics`)).text;
  /** The value of one metric series (0 when absent). `labels` is a substring like 'reason="binding_mismatch"'. */
  stack.metric = async (metricName, ...labels) => {
    const text = await stack.metrics();
    let sum = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${metricName}{`) && !line.startsWith(`${metricName} `)) continue;
      if (labels.every((l) => line.includes(l))) sum += Number(line.split(' ').pop());
    }
    return sum;
  };
  /** GET on the admin listener (JSON). */
  stack.adminGet = async (p) => {
    const r = await httpGet(`${admin}${p}`);
    return { status: r.status, body: r.text ? JSON.parse(r.text) : undefined };
  };
  return stack;
}

export { repo, sleep };
