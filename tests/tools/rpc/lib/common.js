'use strict';
// Shared helpers for the RPC peer tools: flag parsing, quiet loggers, JSON-lines output, and
// byte-level frame splitting/decoding for Bolt (v1/v2) and Dubbo, used to tap sockets so the
// tools can report exactly what went over the wire (the libraries hide parts of it).
// Formats: /work/shared/design/PROTOCOLS.md §2 (Bolt: sofastack/sofa-bolt RpcProtocol(V2);
// Dubbo: ExchangeCodec).

const crypto = require('crypto');
const fs = require('fs');

// === flags ===

/**
 * Parses `--name value` / `--flag` arguments. `spec` maps a flag name to 'string', 'number',
 * 'bool' or 'list' (repeatable, collected in order). Unknown flags are an error.
 */
function parseArgs(argv, spec, defaults = {}) {
  const out = Object.assign({}, defaults);
  for (const [ k, t ] of Object.entries(spec)) {
    if (t === 'list' && out[k] === undefined) out[k] = [];
    if (t === 'bool' && out[k] === undefined) out[k] = false;
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) die(`unexpected argument ${JSON.stringify(a)}`);
    let name = a.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0 && spec[name.slice(0, eq)] !== undefined) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const t = spec[name];
    if (t === undefined) die(`unknown flag --${name}`);
    if (t === 'bool') {
      out[name] = value === undefined ? true : value !== 'false';
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) die(`--${name} needs a value`);
      value = argv[++i];
    }
    if (t === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n)) die(`--${name} wants a number, got ${JSON.stringify(value)}`);
      out[name] = n;
    } else if (t === 'list') {
      out[name].push(value);
    } else {
      out[name] = value;
    }
  }
  return out;
}

/** `k=v` strings to ordered [k, v] pairs. */
function pairs(list) {
  return list.map(s => {
    const i = s.indexOf('=');
    if (i <= 0) die(`expected k=v, got ${JSON.stringify(s)}`);
    return [ s.slice(0, i), s.slice(i + 1) ];
  });
}

function die(msg) {
  process.stderr.write(`error: ${msg}\n`);
  process.exit(2);
}

/** A logger for the libraries: warnings and errors to stderr, the rest only with `verbose`. */
function makeLogger(tag, verbose) {
  const util = require('util');
  const line = (lvl, args) => process.stderr.write(`[${tag}] ${lvl} ${util.format(...args)}\n`);
  return {
    debug: (...a) => { if (verbose) line('DEBUG', a); },
    info: (...a) => { if (verbose) line('INFO', a); },
    warn: (...a) => line('WARN', a),
    error: (...a) => line('ERROR', a),
  };
}

/** Writes one JSON line to stdout. */
function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Appends one JSON line to `file` synchronously (so it is on disk before the reply leaves). */
function appendRecord(file, obj) {
  if (file) fs.appendFileSync(file, JSON.stringify(obj) + '\n');
}

function sha256(s) {
  return crypto.createHash('sha256').update(s).digest('hex');
}

/** Strings longer than this are shown as {len, sha256} in output and records. */
const BIG = 64 * 1024;

/** A JSON-friendly copy of a decoded value: big strings summarized, Buffers as hex, Longs as strings. */
function jsonable(v, depth = 0) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v.length > BIG ? { len: v.length, sha256: sha256(v) } : v;
  if (typeof v === 'number' || typeof v === 'boolean') return v;
  if (typeof v === 'bigint') return v.toString();
  if (Buffer.isBuffer(v)) return { hex: v.length > BIG ? undefined : v.toString('hex'), len: v.length };
  if (v instanceof Error) return { error: v.message, name: v.name };
  if (depth > 8) return String(v);
  if (Array.isArray(v)) return v.map(x => jsonable(x, depth + 1));
  if (typeof v === 'object') {
    if (typeof v.toNumber === 'function' && typeof v.high === 'number') return v.toString(); // Long
    const o = {};
    for (const [ k, x ] of Object.entries(v)) o[k] = jsonable(x, depth + 1);
    return o;
  }
  return String(v);
}

/** A deterministic string of `n` ASCII characters (for large-payload calls). */
function payloadString(n) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const chunk = [];
  for (let i = 0; i < 997; i++) chunk.push(alphabet[(i * 7 + 3) % alphabet.length]);
  const unit = chunk.join('');
  return unit.repeat(Math.ceil(n / unit.length)).slice(0, n);
}

// === Bolt ===

/** Whole-frame length of the Bolt frame at the start of `buf`, or 0 when more bytes are needed. */
function boltFrameLen(buf) {
  if (buf.length < 1) return 0;
  const proto = buf[0];
  if (proto === 0x01) {
    if (buf.length < 2) return 0;
    const resp = buf[1] === 0x00;
    const hl = resp ? 20 : 22;
    if (buf.length < hl) return 0;
    return resp ?
      hl + buf.readUInt16BE(12) + buf.readUInt16BE(14) + buf.readUInt32BE(16) :
      hl + buf.readUInt16BE(14) + buf.readUInt16BE(16) + buf.readUInt32BE(18);
  }
  if (proto === 0x02) {
    if (buf.length < 3) return 0;
    const resp = buf[2] === 0x00;
    const hl = resp ? 22 : 24;
    if (buf.length < hl) return 0;
    let n = resp ?
      hl + buf.readUInt16BE(14) + buf.readUInt16BE(16) + buf.readUInt32BE(18) :
      hl + buf.readUInt16BE(16) + buf.readUInt16BE(18) + buf.readUInt32BE(20);
    if (boltHasCrc(buf[1], buf[11])) n += 4;
    return n;
  }
  throw new Error(`not a bolt frame: first byte 0x${proto.toString(16)}`);
}

/**
 * Whether a v2 frame carries a CRC32 trailer. Java (RpcCommandDecoderV2) reads it when ver1 == 2
 * and switch bit 0 is set; sofa-bolt-node's decoder only looks at `switch == 1`. We follow the
 * writer: sofa-bolt-node writes the CRC whenever switch == 1.
 */
function boltHasCrc(ver1, sw) {
  return (sw & 0x01) === 0x01;
}

/** Decodes the Bolt header map: ordered [key, value] pairs (value null for length -1). */
function decodeBoltHeaderMap(buf) {
  const out = [];
  let off = 0;
  while (off < buf.length) {
    const kl = buf.readInt32BE(off); off += 4;
    const key = kl > 0 ? buf.toString('utf8', off, off + kl) : (kl === 0 ? '' : null);
    if (kl > 0) off += kl;
    const vl = buf.readInt32BE(off); off += 4;
    const val = vl > 0 ? buf.toString('utf8', off, off + vl) : (vl === 0 ? '' : null);
    if (vl > 0) off += vl;
    out.push([ key, val ]);
  }
  return out;
}

/** Decodes one whole Bolt frame's fixed header, class name, header map and sizes. */
function decodeBoltFrame(frame) {
  const crc32 = require('sofa-bolt-node/lib/utils').crc32;
  const proto = frame[0];
  const v2 = proto === 0x02;
  let o = 1;
  const f = { proto };
  if (v2) f.ver1 = frame[o++];
  f.type = frame[o++];
  f.cmdcode = frame.readUInt16BE(o); o += 2;
  f.ver2 = frame[o++];
  f.req_id = frame.readUInt32BE(o); o += 4;
  f.codec = frame[o++];
  if (v2) f.switch = frame[o++];
  const resp = f.type === 0x00;
  if (resp) {
    f.status = frame.readUInt16BE(o); o += 2;
  } else {
    f.timeout = frame.readInt32BE(o); o += 4;
  }
  const classLen = frame.readUInt16BE(o); o += 2;
  const headerLen = frame.readUInt16BE(o); o += 2;
  const contentLen = frame.readUInt32BE(o); o += 4;
  f.fixed_len = o;
  f.class_len = classLen;
  f.headers_len = headerLen;
  f.content_len = contentLen;
  f.class = frame.toString('utf8', o, o + classLen); o += classLen;
  f.headers = decodeBoltHeaderMap(frame.slice(o, o + headerLen)); o += headerLen;
  f.content = frame.slice(o, o + contentLen); o += contentLen;
  f.frame_len = frame.length;
  if (v2) {
    f.crc = boltHasCrc(f.ver1, f.switch);
    if (f.crc) {
      const want = frame.readInt32BE(o);
      f.crc_ok = crc32(frame.slice(0, o)) === want;
    }
  }
  f.kind = f.cmdcode === 0 ? (resp ? 'heartbeat_ack' : 'heartbeat') :
    resp ? 'response' : (f.type === 0x02 ? 'oneway' : 'request');
  return f;
}

// === Dubbo ===

function dubboFrameLen(buf) {
  if (buf.length < 16) return 0;
  if (buf[0] !== 0xda || buf[1] !== 0xbb) {
    throw new Error(`not a dubbo frame: magic 0x${buf.slice(0, 2).toString('hex')}`);
  }
  return 16 + buf.readUInt32BE(12);
}

/** Decodes a Dubbo frame header and (hessian2) body: request fields, attachments in order. */
function decodeDubboFrame(frame) {
  const flag = frame[2];
  const f = {
    flag,
    request: (flag & 0x80) !== 0,
    two_way: (flag & 0x40) !== 0,
    event: (flag & 0x20) !== 0,
    serialization: flag & 0x1f,
    status: frame[3],
    req_id: frame.readBigUInt64BE(4).toString(),
    body_len: frame.readUInt32BE(12),
    frame_len: frame.length,
  };
  f.kind = f.event ? (f.request ? 'heartbeat' : 'heartbeat_ack') : (f.request ? 'request' : 'response');
  if (f.serialization !== 2) return f;
  const hessian = require('hessian.js');
  const body = frame.slice(16);
  try {
    const d = new hessian.DecoderV2(body);
    if (f.event) {
      f.event_data = jsonable(d.read());
    } else if (f.request) {
      f.dubbo_version = d.read();
      f.path = d.read();
      f.version = d.read();
      f.method = d.read();
      f.desc = d.read();
      const types = require('dubbo-remoting/lib/utils').desc2classArray(f.desc);
      const args = [];
      for (let i = 0; i < types.length; i++) args.push(d.read());
      f.arg_types = types;
      f.args = jsonable(args);
      const att = d.read() || {};
      f.attachments = Object.entries(att).map(([ k, v ]) => [ k, jsonable(v) ]);
    } else if (f.status === 20) {
      f.result_flag = d.read();
      if (f.result_flag === 0 || f.result_flag === 1 || f.result_flag === 3 || f.result_flag === 4) {
        f.result = jsonable(d.read());
      }
    } else {
      f.error = d.read();
    }
  } catch (err) {
    f.body_error = err.message;
  }
  return f;
}

// === socket taps ===

/**
 * Splits a byte stream into whole frames. `lenFn(buf)` gives the first frame's length (0 = need
 * more). Calls `onFrame(buffer)` per frame. Returns a `push(chunk)` function.
 */
function frameSplitter(lenFn, onFrame) {
  let acc = Buffer.alloc(0);
  let broken = false;
  return chunk => {
    if (broken) return;
    acc = acc.length ? Buffer.concat([ acc, chunk ]) : chunk;
    for (;;) {
      let n;
      try {
        n = lenFn(acc);
      } catch (err) {
        broken = true;
        process.stderr.write(`[tap] ${err.message}\n`);
        return;
      }
      if (n === 0 || acc.length < n) return;
      onFrame(acc.slice(0, n));
      acc = acc.slice(n);
    }
  };
}

/** Listens to `socket` 'data' (before the library's pipe, when added first) and splits frames. */
function tapSocket(socket, lenFn, onFrame) {
  const push = frameSplitter(lenFn, onFrame);
  socket.on('data', push);
}

module.exports = {
  parseArgs,
  pairs,
  die,
  makeLogger,
  emit,
  appendRecord,
  sha256,
  jsonable,
  payloadString,
  BIG,
  boltFrameLen,
  boltHasCrc,
  decodeBoltHeaderMap,
  decodeBoltFrame,
  dubboFrameLen,
  decodeDubboFrame,
  frameSplitter,
  tapSocket,
};
