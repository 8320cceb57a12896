'use strict';
// The call loop shared by bolt_client.js and dubbo_client.js: sofa-rpc-node's RpcClient and
// RpcConsumer over a given protocol implementation, with a tap on the client socket so each
// result can carry the response status read off the wire.

const urlparse = require('url').parse;
const { RpcClient } = require('sofa-rpc-node').client;
const RpcConnection = require('sofa-rpc-node/lib/client/connection/rpc');
const DynamicConfig = require('sofa-rpc-node/lib/client/dynamic_config');
const { nextId } = require('sofa-rpc-node/lib/client/utils');
const c = require('./common');

// Calls fail on purpose in tests: keep the client's circuit breaker and fault isolation out.
DynamicConfig.instance.circuitBreaker.forceClosed = true;
DynamicConfig.instance.faultTolerance.regulationEffective = false;

/**
 * Runs the calls described by `opts` and prints JSON lines.
 *   cfg.scheme      'bolt' | 'dubbo' (address URL scheme)
 *   cfg.protocol    the protocol module (encoder()/decoder())
 *   cfg.frameLen    whole-frame length function for the tap
 *   cfg.decode      frame decoder for the tap (gives kind, req_id, status)
 *   cfg.oneway      send without waiting (only where the encoder supports it)
 *   cfg.requestProps  the requestProps to send, or undefined for the library default
 *   cfg.codecType   the library's codecType per call (undefined: its default, hessian2)
 *   cfg.mapArgs / cfg.mapResult  convert arguments / results (protobuf messages)
 *   cfg.logger
 */
async function run(opts, args, cfg) {
  const stats = { ok: 0, failed: 0 };
  const address = urlparse(cfg.scheme + '://' + opts.addr, true);

  class TappedConnection extends RpcConnection {
    _connect() {
      super._connect();
      this.seen = new Map(); // String(req_id) -> response frame info
      c.tapSocket(this._socket, cfg.frameLen, buf => {
        const f = cfg.decode(buf);
        const id = String(f.req_id);
        this.seen.set(id, f);
        if (f.kind === 'heartbeat_ack') this.emit('hb_ack_' + id, f);
      });
    }

    async invoke(req) {
      if (!cfg.oneway) return super.invoke(req);
      // Tool extension: oneway through the library's encoder, no reply awaited.
      req.oneway = true;
      this._lastActiveTime = this._lastInvokeTime = Date.now();
      const id = nextId();
      req.meta.id = id;
      await new Promise((resolve, reject) => {
        this._encoder.writeRequest(id, req, err => (err ? reject(err) : resolve()));
      });
      return { error: null, appResponse: null };
    }

    heartbeatOnce(timeout) {
      const id = nextId();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no heartbeat ack in ${timeout}ms`)), timeout);
        this.once('hb_ack_' + id, f => {
          clearTimeout(timer);
          resolve(f);
        });
        this._encoder.writeHeartbeat(id, { timeout, clientUrl: this._clientUrl }, err => {
          if (err) {
            clearTimeout(timer);
            reject(err);
          }
        });
      }).then(f => ({ id, f }), err => {
        err.req_id = id;
        throw err;
      });
    }
  }

  if (opts.heartbeat) {
    const conn = new TappedConnection({ logger: cfg.logger, address, protocol: cfg.protocol });
    conn.on('error', err => cfg.logger.warn('connection error: %s', err && err.message));
    try {
      await conn.ready();
    } catch (err) {
      for (let i = 0; i < opts.count; i++) {
        c.emit({ ok: false, heartbeat: true, error: err.message, name: err.name, code: null, status: null });
        stats.failed++;
      }
      c.emit({ summary: stats });
      return;
    }
    for (let i = 0; i < opts.count; i++) {
      const start = Date.now();
      try {
        const { id, f } = await conn.heartbeatOnce(opts.timeout);
        c.emit({ ok: true, heartbeat: true, ms: Date.now() - start, req_id: id, status: f.status });
        stats.ok++;
      } catch (err) {
        c.emit({ ok: false, heartbeat: true, error: err.message, name: err.name, code: null,
          status: null, ms: Date.now() - start, req_id: err.req_id });
        stats.failed++;
      }
    }
    c.emit({ summary: stats });
    await conn.forceClose();
    return;
  }

  const sep = opts.service.indexOf(':');
  const interfaceName = sep < 0 ? opts.service : opts.service.slice(0, sep);
  let version = sep < 0 ? '' : opts.service.slice(sep + 1);
  if (opts.version !== undefined) version = opts.version;
  const client = new RpcClient({
    logger: cfg.logger,
    protocol: cfg.protocol,
    connectionClass: TappedConnection,
    responseTimeout: opts.timeout,
  });
  client.on('error', err => cfg.logger.warn('client error: %s', err && err.message));
  const consumerOpts = {
    interfaceName,
    version,
    serverHost: cfg.scheme + '://' + opts.addr,
    targetAppName: opts['target-app'],
    responseTimeout: opts.timeout,
  };
  if (opts.group !== undefined) consumerOpts.group = opts.group;
  const consumer = client.createConsumer(consumerOpts);
  await consumer.ready();
  const invokeOpts = { responseTimeout: opts.timeout };
  if (cfg.requestProps) invokeOpts.requestProps = cfg.requestProps(consumer.id);
  if (cfg.codecType) invokeOpts.codecType = cfg.codecType;
  const sendArgs = cfg.mapArgs ? cfg.mapArgs(args) : args;

  function resultFields(out, result) {
    if (typeof result === 'string') {
      out.result_len = result.length;
      out.result_sha256 = c.sha256(result);
      if (result.length <= c.BIG) out.result = result;
      out.echoed = args.length > 0 && result === args[0];
    } else {
      out.result = c.jsonable(result);
      out.echoed = args.length > 0 && JSON.stringify(result) === JSON.stringify(args[0]);
    }
  }
  function addWire(out, req) {
    const id = req && req.meta && req.meta.id;
    out.req_id = id || null;
    const conn = req && req.meta && req.meta.address && client.connectionManager.get(req.meta.address);
    const f = id && conn && conn.seen && conn.seen.get(String(id));
    out.status = f ? f.status : null;
    if (f) conn.seen.delete(String(id));
  }

  let next = 0;
  async function worker() {
    while (next < opts.count) {
      next++;
      const start = Date.now();
      let req = null;
      // The consumer emits 'request' synchronously inside invoke(): this listener, added just
      // before, is the only one without a request yet when it fires.
      const onReq = r => { if (!req) req = r; };
      consumer.once('request', onReq);
      try {
        let result = await consumer.invoke(opts.method, sendArgs, invokeOpts);
        if (cfg.mapResult) result = cfg.mapResult(result);
        const out = { ok: true };
        if (cfg.oneway) {
          out.oneway = true;
          out.result = null;
        } else {
          resultFields(out, result);
        }
        out.ms = Date.now() - start;
        addWire(out, req);
        c.emit(out);
        stats.ok++;
      } catch (err) {
        const out = { ok: false, error: String(err.message), name: err.name, code: err.resultCode || null,
          ms: Date.now() - start };
        addWire(out, req);
        c.emit(out);
        stats.failed++;
      } finally {
        consumer.removeListener('request', onReq);
      }
    }
  }
  const workers = [];
  for (let i = 0; i < Math.max(1, opts.concurrency); i++) workers.push(worker());
  await Promise.all(workers);
  c.emit({ summary: stats });
  if (cfg.oneway) await new Promise(r => setTimeout(r, 50)); // let the bytes leave
  await client.close();
}

/** Parses --args / --payload-size into the argument list. */
function callArgs(opts) {
  if (opts['payload-size'] !== undefined) return [ c.payloadString(opts['payload-size']) ];
  let args;
  try {
    args = JSON.parse(opts.args);
  } catch (err) {
    c.die(`--args is not JSON: ${err.message}`);
  }
  if (!Array.isArray(args)) c.die('--args must be a JSON array');
  return args;
}

/** Runs main() and exits 0 (failures are reported as JSON lines). */
function main(name, fn) {
  fn().then(() => process.exit(0), err => {
    process.stderr.write(`${name}: ${err.stack}\n`);
    c.emit({ ok: false, error: String(err.message), name: err.name, code: null, status: null });
    c.emit({ summary: { ok: 0, failed: 1 } });
    process.exit(0);
  });
}

module.exports = { run, callArgs, main };
