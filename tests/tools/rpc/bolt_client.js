#!/usr/bin/env node
'use strict';
// A real SOFARPC Bolt client: sofa-rpc-node's RpcClient/RpcConsumer (hessian2, sofa-bolt-node).
//
//   node bolt_client.js --addr 127.0.0.1:PORT [--service com.alipay.test.EchoService:1.0]
//        [--method echo] [--args '["hi"]' | --payload-size N] [--count N] [--concurrency C]
//        [--timeout MS] [--oneway] [--heartbeat] [--header k=v ...] [--prop k=v ...]
//        [--bolt v1|v2] [--crc] [--target-app NAME] [--verbose]
//
// stdout: one JSON line per call, then {"summary":{"ok":N,"failed":M}}. Exit 0 even when
// calls fail (the caller asserts); 2 on bad flags.
//   {"ok":true,"result":R,"ms":T,"req_id":I,"status":0}
//   {"ok":false,"error":"msg","name":"ErrName","code":"01","status":2,"ms":T,"req_id":I}
// `status` is the Bolt response status read off the wire (null when no response arrived, e.g.
// a timeout); `code` is sofa-rpc-node's resultCode (01 business error, 02 framework error,
// 03 timeout, 04 no route/provider). String results also carry result_len and result_sha256;
// results longer than 64 KiB are given only by those. `echoed` tells whether the result equals
// the first argument.
//
// What the library sends (hessian2): class com.alipay.sofa.rpc.core.request.SofaRequest and a
// header map with the single entry `service` = "<interface>:<version>"; method, target app and
// requestProps travel inside the hessian2 SofaRequest body. Tool extensions, each marked:
//   --header k=v   appends entries to the Bolt header map after the library's (the library has
//                  no API for that with hessian2), in the given order.
//   --oneway       sends the request with type 0x02 through the library's encoder (the
//                  consumer API has no oneway call) and does not wait for a reply.
//   --heartbeat    sends heartbeats (cmdcode 0) through the library's encoder (RpcConnection
//                  only sends them when idle for 30 s) and waits for each ack.
//   --bolt v2      makes the library's encoder write Bolt v2 (proto 0x02, ver1 1); --crc adds
//                  the CRC32 trailer (ver1 2, switch 1). The server answers in kind.
//   --prop k=v     sets the library's requestProps (in the SofaRequest body).
//   --codec protobuf  the library's protobuf codec (codec 11) with proto/echo.proto: the
//                  argument goes as EchoRequest{message}, the result is EchoResponse.message.
//                  With protobuf the library's header map is service, sofa_head_method_name,
//                  sofa_head_target_app, sofa_head_target_service, then the requestProps
//                  flattened (service again, so it appears once, plus --prop keys).

const bolt = require('sofa-bolt-node');
const RpcRequestCommand = require('sofa-bolt-node/lib/protocol/rpc_req_cmd');
const SimpleMapSerializer = require('sofa-bolt-node/lib/simple_map_serializer');
const c = require('./lib/common');
const core = require('./lib/client_core');

const opts = c.parseArgs(process.argv.slice(2), {
  addr: 'string',
  service: 'string',
  method: 'string',
  args: 'string',
  'payload-size': 'number',
  count: 'number',
  concurrency: 'number',
  timeout: 'number',
  oneway: 'bool',
  heartbeat: 'bool',
  header: 'list',
  prop: 'list',
  bolt: 'string',
  crc: 'bool',
  'target-app': 'string',
  codec: 'string',
  verbose: 'bool',
}, {
  service: 'com.alipay.test.EchoService:1.0',
  method: 'echo',
  args: '["hi"]',
  count: 1,
  concurrency: 1,
  timeout: 3000,
  bolt: 'v1',
  codec: 'hessian2',
});
if (opts.codec !== 'hessian2' && opts.codec !== 'protobuf') c.die('--codec is hessian2 or protobuf');
const protobuf = opts.codec === 'protobuf';
if (protobuf) bolt.setOptions({ proto: require('antpb').loadAll(require('path').join(__dirname, 'proto')) });
if (!opts.addr) c.die('--addr HOST:PORT is required');
if (opts.bolt !== 'v1' && opts.bolt !== 'v2') c.die('--bolt is v1 or v2');
if (opts.crc) opts.bolt = 'v2';

const extraHeaders = c.pairs(opts.header);
const props = c.pairs(opts.prop);
const args = core.callArgs(opts);

class ExtRequestCommand extends RpcRequestCommand {
  serializeHeader(byteBuffer) {
    super.serializeHeader(byteBuffer);
    // Tool extension: extra header-map entries, appended after the library's own.
    const m = {};
    for (const [ k, v ] of extraHeaders) m[k] = v;
    byteBuffer.put(SimpleMapSerializer.encode(m));
  }
}

// sofa-bolt-node with its encoder configured from the flags.
const protocol = Object.assign({}, bolt, {
  encoder(options) {
    const e = bolt.encoder(options);
    if (opts.bolt === 'v2') {
      e.protocolType = 'bolt2';
      e.boltVersion = opts.crc ? 2 : 1;
      e.crcEnable = !!opts.crc;
    }
    if (extraHeaders.length) {
      e._requestEncode = function(packet) {
        const req = packet.req;
        if (req.codecType) packet.meta.codecType = req.codecType;
        const cmd = new ExtRequestCommand(req, packet.meta);
        return this.protocol.requestEncode(packet.packetId, cmd, packet.meta);
      };
    }
    return e;
  },
});

core.main('bolt_client', () => core.run(opts, args, {
  scheme: 'bolt',
  protocol,
  frameLen: c.boltFrameLen,
  decode: c.decodeBoltFrame,
  oneway: opts.oneway,
  // The library's default requestProps is {service: <unique name>}; --prop adds to it.
  requestProps: props.length ? id => Object.assign({ service: id }, Object.fromEntries(props)) : undefined,
  // protobuf: echo/fail take and return com.alipay.test.EchoRequest/EchoResponse (proto/).
  codecType: protobuf ? 'protobuf' : undefined,
  mapArgs: protobuf ? a => [ { message: a[0] == null ? '' : String(a[0]) } ] : undefined,
  mapResult: protobuf ? r => (r && typeof r === 'object' && 'message' in r ? r.message : r) : undefined,
  logger: c.makeLogger('bolt_client', opts.verbose),
}));
