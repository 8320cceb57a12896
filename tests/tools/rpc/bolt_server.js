#!/usr/bin/env node
'use strict';
// A real SOFARPC Bolt service: sofa-rpc-node's RpcServer (hessian2, sofa-bolt-node protocol).
//
//   node bolt_server.js --port 0 [--host 127.0.0.1] [--record FILE] [--service NAME]
//                       [--reply-oneway] [--verbose]
//
// Prints `LISTENING <port>` as its first stdout line once bound, then nothing else on stdout.
// Service `com.alipay.test.EchoService:1.0` (interfaceName + version, SOFARPC's unique name),
// hessian2 (codec 1) and protobuf (codec 11, proto/echo.proto: echo and fail only):
//   echo(String) -> String       the argument back (any size, e.g. 1 MiB)
//   fail(String)                 throws Error(arg): the client gets an error response
//   sleep(int ms) -> String      replies "slept <ms>" after ms
//   len(String) -> int           the argument's length (large request, small reply)
//   big(int n) -> String         a deterministic n-character string (small request, large reply)
//
// --record FILE appends one JSON line per received frame (requests, oneway requests,
// heartbeats), written before the service method runs. Fields come from a tap on the socket
// bytes (the library skips the header map for hessian2): kind, proto, ver1, type, cmdcode,
// ver2, req_id, codec, switch, timeout, class, headers ([[k, v], ...] in wire order), crc,
// crc_ok, fixed_len (22 or 24), class_len, headers_len, content_len, frame_len, remote; and
// from the library's decode of the content: service, method, arg_types, args, target_app,
// request_props.
//
// sofa-rpc-node answers oneway requests like two-way ones; Java sofa-bolt never does. This
// tool drops those replies (as Java does) unless --reply-oneway.

const { RpcServer } = require('sofa-rpc-node').server;
const RpcResponse = require('sofa-rpc-node/lib/server/response');
const c = require('./lib/common');

const opts = c.parseArgs(process.argv.slice(2), {
  port: 'number',
  host: 'string',
  record: 'string',
  service: 'string',
  'reply-oneway': 'bool',
  verbose: 'bool',
}, { port: 0, host: '127.0.0.1', service: 'com.alipay.test.EchoService:1.0' });

const logger = c.makeLogger('bolt_server', opts.verbose);
const tapped = new WeakMap(); // socket -> Map<req_id, decoded frame>

class OnewayAwareResponse extends RpcResponse {
  async send(res) {
    if (this.req.oneway && !opts['reply-oneway']) return;
    if (res && res.isError && res.errorMsg) {
      // The library encodes a failure as an RpcServerException carrying the stack of an Error
      // it creates inside its encoder (node_modules paths). Hand it an Error with a fixed
      // stack instead, so replies and golden frames don't depend on the checkout path.
      const err = new Error(res.errorMsg);
      err.stack = `Error: ${res.errorMsg}\n    at com.alipay.test.EchoService.invoke (EchoService.java:1)`;
      res.appResponse = err;
    }
    return super.send(res);
  }
}

class RecordingServer extends RpcServer {
  _startServer(port) {
    // Bind to --host instead of all interfaces.
    const net = require('net');
    const server = net.createServer();
    server.once('error', err => { this.emit('error', err); });
    server.on('connection', socket => { this._handleSocket(socket); });
    server.listen(port, opts.host, () => {
      this.publishPort = server.address().port;
    });
    return server;
  }

  _handleSocket(socket) {
    const frames = new Map();
    tapped.set(socket, frames);
    const remote = socket.remoteAddress + ':' + socket.remotePort;
    // Added before the library's pipe, so each frame is decoded here first.
    c.tapSocket(socket, c.boltFrameLen, buf => {
      const f = c.decodeBoltFrame(buf);
      delete f.content;
      f.remote = remote;
      if (f.kind === 'heartbeat') {
        c.appendRecord(opts.record, f);
      } else {
        frames.set(f.req_id, f);
      }
    });
    super._handleSocket(socket);
  }

  async _handleRequest(req, conn) {
    const frames = tapped.get(conn.socket);
    const f = (frames && frames.get(req.packetId)) || { req_id: req.packetId };
    if (frames) frames.delete(req.packetId);
    req.oneway = f.kind === 'oneway';
    const d = req.data || {};
    c.appendRecord(opts.record, Object.assign(f, {
      service: d.serverSignature,
      method: d.methodName,
      arg_types: d.methodArgSigs,
      args: c.jsonable(d.args),
      target_app: d.targetAppName === undefined ? null : d.targetAppName,
      request_props: c.jsonable(d.requestProps),
    }));
    return super._handleRequest(req, conn);
  }
}

const sep = opts.service.indexOf(':');
const interfaceName = sep < 0 ? opts.service : opts.service.slice(0, sep);
const version = sep < 0 ? '' : opts.service.slice(sep + 1);

const server = new RecordingServer({
  logger,
  port: opts.port,
  // For protobuf-codec requests (anthunder, bolt_client.js --codec protobuf).
  proto: require('antpb').loadAll(require('path').join(__dirname, 'proto')),
  responseClass: OnewayAwareResponse,
  killTimeout: 1000,
});
server.on('error', err => logger.warn('server error: %s', err && err.message));
server.addService({ interfaceName, version }, {
  async echo(s) {
    return s; // a string (hessian2) or an EchoRequest, encoded back as EchoResponse (protobuf)
  },
  async fail(msg) {
    if (msg && typeof msg === 'object' && 'message' in msg) msg = msg.message; // EchoRequest
    const err = new Error(msg == null ? 'fail' : String(msg));
    err.ignoreLog = true; // expected: keep stderr quiet
    throw err;
  },
  async sleep(ms) {
    await new Promise(r => setTimeout(r, Number(ms) || 0));
    return 'slept ' + ms;
  },
  async len(s) {
    return s == null ? -1 : s.length;
  },
  async big(n) {
    return c.payloadString(Number(n) || 0);
  },
});

server.start().then(() => {
  process.stdout.write(`LISTENING ${server.publishPort}\n`);
}, err => {
  process.stderr.write(`bolt_server: start failed: ${err.stack}\n`);
  process.exit(1);
});
