#!/usr/bin/env node
'use strict';
// A real Dubbo service: sofa-rpc-node's RpcServer with the dubbo-remoting protocol (Dubbo
// exchange codec, hessian2 serialization id 2).
//
//   node dubbo_server.js --port 0 [--host 127.0.0.1] [--record FILE]
//        [--service com.alipay.test.EchoService] [--version 1.0.0] [--verbose]
//
// Prints `LISTENING <port>` as its first stdout line once bound, then nothing else on stdout.
// Service path `com.alipay.test.EchoService`, version `1.0.0`, methods as bolt_server.js:
// echo(String), fail(String) (throws: the library answers status 80 SERVER_ERROR with the
// message), sleep(int ms), len(String), big(int n).
//
// --record FILE appends one JSON line per received frame (requests and heartbeats), written
// before the method runs. From a tap on the socket bytes: kind, flag, request, two_way, event,
// serialization, status, req_id (u64 as a decimal string), body_len, frame_len, remote, and
// the hessian2 body in wire order: dubbo_version, path, version, method, desc, arg_types,
// args, attachments ([[k, v], ...] in wire order); from the library: service
// ("path:version", what it routes on), request_props (its merged attachment map).

const { RpcServer } = require('sofa-rpc-node').server;
const dubbo = require('dubbo-remoting');
const c = require('./lib/common');

const opts = c.parseArgs(process.argv.slice(2), {
  port: 'number',
  host: 'string',
  record: 'string',
  service: 'string',
  version: 'string',
  verbose: 'bool',
}, { port: 0, host: '127.0.0.1', service: 'com.alipay.test.EchoService', version: '1.0.0' });

const logger = c.makeLogger('dubbo_server', opts.verbose);
const tapped = new WeakMap(); // socket -> Map<req_id string, decoded frame>

class RecordingServer extends RpcServer {
  _startServer(port) {
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
    c.tapSocket(socket, c.dubboFrameLen, buf => {
      const f = c.decodeDubboFrame(buf);
      f.remote = remote;
      if (f.kind === 'request') {
        frames.set(f.req_id, f);
      } else {
        c.appendRecord(opts.record, f);
      }
    });
    super._handleSocket(socket);
  }

  async _handleRequest(req, conn) {
    const frames = tapped.get(conn.socket);
    const id = String(req.packetId);
    const f = (frames && frames.get(id)) || { req_id: id };
    if (frames) frames.delete(id);
    const d = req.data || {};
    c.appendRecord(opts.record, Object.assign(f, {
      service: d.serverSignature,
      request_props: c.jsonable(d.requestProps),
    }));
    return super._handleRequest(req, conn);
  }
}

const server = new RecordingServer({
  logger,
  port: opts.port,
  protocol: dubbo,
  killTimeout: 1000,
});
server.on('error', err => logger.warn('server error: %s', err && err.message));
server.addService({ interfaceName: opts.service, version: opts.version }, {
  async echo(s) {
    return s;
  },
  async fail(msg) {
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
  process.stderr.write(`dubbo_server: start failed: ${err.stack}\n`);
  process.exit(1);
});
