// A minimal RESP client, enough to read everything handoff keeps in redis (to check
// that no token is stored in the clear, SPEC §2.5, §5). No dependency, no redis-cli.

import net from 'node:net';

/** Parses one RESP reply from buf at i; returns [value, next] or undefined if incomplete. */
function parse(buf, i) {
  if (i >= buf.length) return undefined;
  const eol = buf.indexOf('\r\n', i);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[i]);
  const line = buf.toString('utf8', i + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+': return [line, next];
    case '-': return [new Error(line), next];
    case ':': return [Number(line), next];
    case '$': {
      const n = Number(line);
      if (n < 0) return [null, next];
      if (buf.length < next + n + 2) return undefined;
      return [buf.toString('latin1', next, next + n), next + n + 2];
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return [null, next];
      const out = [];
      let at = next;
      for (let k = 0; k < n; k += 1) {
        const r = parse(buf, at);
        if (!r) return undefined;
        out.push(r[0]);
        [, at] = r;
      }
      return [out, at];
    }
    default: throw new Error(`RESP: unexpected type byte ${type}`);
  }
}

function encode(args) {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`;
}

/** Sends the commands as one pipeline; resolves with their replies in order. */
export function pipeline(port, commands) {
  return new Promise((resolve, reject) => {
    if (commands.length === 0) { resolve([]); return; }
    const s = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const replies = [];
    s.setTimeout(3000, () => { s.destroy(); reject(new Error('redis: timeout')); });
    s.on('error', reject);
    s.on('connect', () => s.write(commands.map(encode).join('')));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let at = 0;
      for (;;) {
        const r = parse(buf, at);
        if (!r) break;
        replies.push(r[0]);
        [, at] = r;
      }
      buf = buf.subarray(at);
      if (replies.length === commands.length) { s.end(); resolve(replies); }
    });
  });
}

/** Every key in the database and everything stored under it, as one list of strings. */
export async function dumpAll(port) {
  const keys = [];
  let cursor = '0';
  do {
    const [[c, batch]] = await pipeline(port, [['SCAN', cursor, 'COUNT', '1000']]);
    cursor = c;
    keys.push(...batch);
  } while (cursor !== '0');
  const types = await pipeline(port, keys.map((k) => ['TYPE', k]));
  const reads = keys.map((k, i) => ({
    string: ['GET', k],
    hash: ['HGETALL', k],
    set: ['SMEMBERS', k],
    zset: ['ZRANGE', k, '0', '-1'],
    list: ['LRANGE', k, '0', '-1'],
  }[types[i]] ?? ['TYPE', k]));
  const values = await pipeline(port, reads);
  return keys.map((k, i) => ({ key: k, type: types[i], text: [k, ...[values[i]].flat(2)].join('\n') }));
}
