#!/usr/bin/env node
'use strict';
// A real Dubbo client: sofa-rpc-node's RpcClient/RpcConsumer with the dubbo-remoting protocol
// (hessian2, serialization id 2).
//
//   node dubbo_client.js --addr 127.0.0.1:PORT [--service com.alipay.test.EchoService]
//        [--version 1.0.0] [--group G] [--method echo] [--args '["hi"]' | --payload-size N]
//        [--count N] [--concurrency C] [--timeout MS] [--attachment k=v ...] [--heartbeat]
//        [--verbose]
//
// stdout: as bolt_client.js: one JSON line per call ({"ok":true,"result":...,"ms":...} or
// {"ok":false,"error":...,"code":...}), then {"summary":{"ok":N,"failed":M}}; `status` is the
// Dubbo response status byte off the wire (20 OK, 80 SERVER_ERROR, ...). Exit 0 even when
// calls fail.
//
// What the library sends: flag 0xc2 (request, two-way, hessian2), the body dubbo version
// "5.3.0" (dubbo-remoting's hard-coded attachment), path, version, method, descriptor, args,
// and the attachments map: dubbo, path, group (the consumer's group, default "SOFA"), service
// ("path:version", the library's default requestProps), version and each --attachment;
// hessian.js writes map keys sorted, so that is also their wire order. The library has no oneway Dubbo call (two-way bit
// always set). --heartbeat sends heartbeat events (flag 0xe2, body hessian null) through the
// library's encoder and waits for each ack (a tool extension: the library has no heartbeat
// timer for Dubbo).

const dubbo = require('dubbo-remoting');
const c = require('./lib/common');
const core = require('./lib/client_core');

const opts = c.parseArgs(process.argv.slice(2), {
  addr: 'string',
  service: 'string',
  version: 'string',
  group: 'string',
  method: 'string',
  args: 'string',
  'payload-size': 'number',
  count: 'number',
  concurrency: 'number',
  timeout: 'number',
  attachment: 'list',
  heartbeat: 'bool',
  verbose: 'bool',
}, {
  service: 'com.alipay.test.EchoService',
  version: '1.0.0',
  method: 'echo',
  args: '["hi"]',
  count: 1,
  concurrency: 1,
  timeout: 3000,
});
if (!opts.addr) c.die('--addr HOST:PORT is required');

const attachments = c.pairs(opts.attachment);
const args = core.callArgs(opts);

core.main('dubbo_client', () => core.run(opts, args, {
  scheme: 'dubbo',
  protocol: dubbo,
  frameLen: c.dubboFrameLen,
  decode: c.decodeDubboFrame,
  oneway: false,
  // The library's default requestProps is {service: "path:version"}; attachments add to it.
  requestProps: attachments.length ?
    id => Object.assign({ service: id }, Object.fromEntries(attachments)) : undefined,
  logger: c.makeLogger('dubbo_client', opts.verbose),
}));
