#!/usr/bin/env node
'use strict';
// Captures golden frames from the real peers: runs bolt_server.js / dubbo_server.js, puts a
// byte-forwarding man-in-the-middle on 127.0.0.1 in front of each, drives bolt_client.js /
// dubbo_client.js through it, splits both directions into whole frames by the protocols'
// length fields, and writes one frame per file plus README.md.
//
//   node capture_fixtures.js [--out DIR]     (default: dataplane/wire/tests/fixtures/real)
//
// Every scenario runs in a fresh client process, so request ids start at 1 and the output is
// byte-for-byte reproducible with the pinned package-lock.json.

const fs = require('fs');
const net = require('net');
const path = require('path');
const { spawn, execFile } = require('child_process');
const c = require('./lib/common');

const here = __dirname;
const repo = path.resolve(here, '../../..');
const opts = c.parseArgs(process.argv.slice(2), { out: 'string' }, {
  out: path.join(repo, 'dataplane/wire/tests/fixtures/real'),
});

function version(pkg) {
  return require(path.join(here, 'node_modules', pkg, 'package.json')).version;
}
const V = {
  node: process.version,
  'sofa-rpc-node': version('sofa-rpc-node'),
  'sofa-bolt-node': version('sofa-bolt-node'),
  'dubbo-remoting': version('dubbo-remoting'),
  'hessian.js': version('hessian.js'),
};
const BOLT_LIB = `sofa-rpc-node ${V['sofa-rpc-node']} + sofa-bolt-node ${V['sofa-bolt-node']}`;
const ANTHUNDER_LIB = 'anthunder ' + require('fs').readFileSync(path.join(here, 'requirements.txt'), 'utf8')
  .match(/^anthunder==(\S+)/m)[1] + ' (PyPI, Python)';
const DUBBO_LIB = `sofa-rpc-node ${V['sofa-rpc-node']} + dubbo-remoting ${V['dubbo-remoting']} (hessian.js ${V['hessian.js']})`;

function startServer(script, extra = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ path.join(here, script), '--port', '0', ...extra ], {
      stdio: [ 'ignore', 'pipe', 'inherit' ],
    });
    let buf = '';
    child.stdout.on('data', d => {
      buf += d;
      const m = /^LISTENING (\d+)\n/.exec(buf);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.once('exit', code => reject(new Error(`${script} exited ${code}`)));
  });
}

/** A forwarding proxy that records the frames of each direction. */
function mitm(upstreamPort, lenFn) {
  const frames = []; // {dir: 'c2s'|'s2c', buf}
  const server = net.createServer(down => {
    const up = net.connect(upstreamPort, '127.0.0.1');
    const c2s = c.frameSplitter(lenFn, buf => frames.push({ dir: 'c2s', buf }));
    const s2c = c.frameSplitter(lenFn, buf => frames.push({ dir: 's2c', buf }));
    down.on('data', d => { c2s(d); up.write(d); });
    up.on('data', d => { s2c(d); down.write(d); });
    down.on('end', () => up.end());
    up.on('end', () => down.end());
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
  });
  return new Promise(resolve => {
    server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port, frames }));
  });
}

function runClient(script, args) {
  const exe = script.endsWith('.py') ? '/usr/bin/python3' : process.execPath;
  return new Promise((resolve, reject) => {
    execFile(exe, [ path.join(here, script), ...args ], { timeout: 20000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${script} ${args.join(' ')}: ${err.message}\n${stderr}`));
      const lines = stdout.trim().split('\n').map(l => JSON.parse(l));
      resolve(lines);
    });
  });
}

const sleep = ms => new Promise(r => setTimeout(r, ms));
const written = [];

function pick(frames, dir, kind, decode) {
  const hits = frames.filter(f => f.dir === dir && decode(f.buf).kind === kind);
  if (hits.length !== 1) {
    throw new Error(`expected exactly one ${dir} ${kind} frame, got ${hits.length}`);
  }
  return hits[0].buf;
}

function save(name, buf, decode, lib, how) {
  if (!/^(bolt|dubbo)/.test(name)) throw new Error(`fixture name must start with bolt or dubbo: ${name}`);
  const file = path.join(opts.out, name + '.bin');
  fs.writeFileSync(file, buf);
  const d = decode(buf);
  delete d.content;
  written.push({ name: name + '.bin', lib, how, len: buf.length, decoded: d });
  process.stderr.write(`wrote ${path.relative(repo, file)} (${buf.length} bytes)\n`);
}

/** Runs one client scenario through a fresh MITM; returns the frames and the client's lines. */
async function scenario(upstreamPort, lenFn, script, args) {
  const m = await mitm(upstreamPort, lenFn);
  const lines = await runClient(script, [ '--addr', `127.0.0.1:${m.port}`, ...args ]);
  await sleep(150); // let the last frames cross the MITM
  m.server.close();
  return { frames: m.frames, lines };
}

function expectOk(lines, ok) {
  const s = lines[lines.length - 1].summary;
  if (!s || s.ok !== ok) throw new Error('unexpected client result: ' + JSON.stringify(lines));
}

async function bolt() {
  const dec = c.decodeBoltFrame;
  const { child, port } = await startServer('bolt_server.js');
  try {
    let r = await scenario(port, c.boltFrameLen, 'bolt_client.js', [ '--method', 'echo', '--args', '["hello mosn"]' ]);
    expectOk(r.lines, 1);
    save('bolt_v1_request', pick(r.frames, 'c2s', 'request', dec), dec, BOLT_LIB,
      'bolt_client.js --method echo --args \'["hello mosn"]\' (RpcConsumer.invoke, hessian2)');
    save('bolt_v1_response', pick(r.frames, 's2c', 'response', dec), dec, BOLT_LIB,
      'bolt_server.js reply to echo("hello mosn"): status 0 SUCCESS, SofaResponse');

    r = await scenario(port, c.boltFrameLen, 'bolt_client.js', [ '--method', 'fail', '--args', '["boom"]' ]);
    expectOk(r.lines, 0);
    save('bolt_v1_response_error', pick(r.frames, 's2c', 'response', dec), dec, BOLT_LIB,
      'bolt_server.js reply to fail("boom"): status 2 SERVER_EXCEPTION, content RpcServerException');

    r = await scenario(port, c.boltFrameLen, 'bolt_client.js', [ '--heartbeat' ]);
    expectOk(r.lines, 1);
    save('bolt_v1_heartbeat', pick(r.frames, 'c2s', 'heartbeat', dec), dec, BOLT_LIB,
      'bolt_client.js --heartbeat (encoder.writeHeartbeat, as RpcConnection.heartbeat() sends it)');
    save('bolt_v1_heartbeat_ack', pick(r.frames, 's2c', 'heartbeat_ack', dec), dec, BOLT_LIB,
      'bolt_server.js heartbeat ack (RpcConnection._handleHeartbeat)');

    r = await scenario(port, c.boltFrameLen, 'bolt_client.js', [ '--oneway', '--args', '["fire and forget"]' ]);
    expectOk(r.lines, 1);
    save('bolt_v1_oneway', pick(r.frames, 'c2s', 'oneway', dec), dec, BOLT_LIB,
      'bolt_client.js --oneway (request with oneway=true through sofa-bolt-node\'s encoder: type 0x02)');
    if (r.frames.some(f => f.dir === 's2c')) throw new Error('the server answered a oneway request');

    r = await scenario(port, c.boltFrameLen, 'bolt_client.js', [ '--bolt', 'v2', '--args', '["hello v2"]' ]);
    expectOk(r.lines, 1);
    save('bolt_v2_request', pick(r.frames, 'c2s', 'request', dec), dec, BOLT_LIB,
      'bolt_client.js --bolt v2 (encoder protocolType bolt2, ver1 1, no CRC)');
    save('bolt_v2_response', pick(r.frames, 's2c', 'response', dec), dec, BOLT_LIB,
      'bolt_server.js reply in kind (proto 0x02, ver1 1)');

    r = await scenario(port, c.boltFrameLen, 'bolt_client.js', [ '--crc', '--args', '["hello crc"]' ]);
    expectOk(r.lines, 1);
    save('bolt_v2_crc_request', pick(r.frames, 'c2s', 'request', dec), dec, BOLT_LIB,
      'bolt_client.js --crc (proto 0x02, ver1 2, switch 1, CRC32 trailer)');
    save('bolt_v2_crc_response', pick(r.frames, 's2c', 'response', dec), dec, BOLT_LIB,
      'bolt_server.js reply in kind (ver1 2, switch 1, CRC32 trailer)');

    r = await scenario(port, c.boltFrameLen, 'bolt_client.js', [ '--codec', 'protobuf', '--args', '["hello pb"]' ]);
    expectOk(r.lines, 1);
    save('bolt_v1_protobuf_request', pick(r.frames, 'c2s', 'request', dec), dec, BOLT_LIB,
      'bolt_client.js --codec protobuf --args \'["hello pb"]\' (codec 11, EchoRequest from proto/echo.proto)');
    save('bolt_v1_protobuf_response', pick(r.frames, 's2c', 'response', dec), dec, BOLT_LIB,
      'bolt_server.js reply: status 0, header sofa_head_response_error=false, EchoResponse');

    r = await scenario(port, c.boltFrameLen, 'anthunder_client.py', [ '--args', '["hello anthunder"]' ]);
    expectOk(r.lines, 1);
    save('bolt_v1_anthunder_request', pick(r.frames, 'c2s', 'request', dec), dec, ANTHUNDER_LIB,
      'anthunder_client.py --args \'["hello anthunder"]\' (Client.invoke_sync, codec 11). Not byte-reproducible: ' +
      'random request id, trace id from time and pid');
  } finally {
    child.kill('SIGKILL');
  }
  // What the library itself does with a oneway request (not a fixture): does it reply?
  const s2 = await startServer('bolt_server.js', [ '--reply-oneway' ]);
  try {
    const r = await scenario(s2.port, c.boltFrameLen, 'bolt_client.js', [ '--oneway' ]);
    const replies = r.frames.filter(f => f.dir === 's2c').length;
    process.stderr.write(`note: with --reply-oneway sofa-rpc-node sent ${replies} reply frame(s) to a oneway request\n`);
    return replies;
  } finally {
    s2.child.kill('SIGKILL');
  }
}

async function dubbo() {
  const dec = c.decodeDubboFrame;
  const { child, port } = await startServer('dubbo_server.js');
  try {
    let r = await scenario(port, c.dubboFrameLen, 'dubbo_client.js', [
      '--method', 'echo', '--args', '["hello mosn"]', '--attachment', 'tenant=alipay', '--attachment', 'trace_id=0a1b2c',
    ]);
    expectOk(r.lines, 1);
    save('dubbo_request', pick(r.frames, 'c2s', 'request', dec), dec, DUBBO_LIB,
      'dubbo_client.js --method echo --args \'["hello mosn"]\' --attachment tenant=alipay --attachment trace_id=0a1b2c');
    save('dubbo_response', pick(r.frames, 's2c', 'response', dec), dec, DUBBO_LIB,
      'dubbo_server.js reply to echo("hello mosn"): status 20 OK, result flag 1 (value)');

    r = await scenario(port, c.dubboFrameLen, 'dubbo_client.js', [ '--method', 'fail', '--args', '["boom"]' ]);
    expectOk(r.lines, 0);
    save('dubbo_response_error', pick(r.frames, 's2c', 'response', dec), dec, DUBBO_LIB,
      'dubbo_server.js reply to fail("boom"): status 80 SERVER_ERROR, body hessian2 string');

    r = await scenario(port, c.dubboFrameLen, 'dubbo_client.js', [ '--heartbeat' ]);
    expectOk(r.lines, 1);
    save('dubbo_heartbeat', pick(r.frames, 'c2s', 'heartbeat', dec), dec, DUBBO_LIB,
      'dubbo_client.js --heartbeat (encoder.writeHeartbeat: flag 0xe2, body hessian null)');
    save('dubbo_heartbeat_ack', pick(r.frames, 's2c', 'heartbeat_ack', dec), dec, DUBBO_LIB,
      'dubbo_server.js heartbeat ack (flag 0x22, status 20, body hessian null)');
  } finally {
    child.kill('SIGKILL');
  }
}

function readme(onewayReplies) {
  const rows = written.map(w => {
    const d = w.decoded;
    let what;
    if (d.proto !== undefined) {
      what = `proto ${d.proto}${d.ver1 !== undefined ? ` ver1 ${d.ver1} switch ${d.switch}` : ''} type ${d.type} ` +
        `cmdcode ${d.cmdcode} id ${d.req_id} codec ${d.codec} ` +
        (d.status !== undefined ? `status ${d.status}` : `timeout ${d.timeout}`) +
        (d.headers.length ? ` headers ${d.headers.map(h => h[0]).join(',')}` : '') +
        (d.crc ? ' +crc32' : '');
    } else {
      what = `flag 0x${d.flag.toString(16)} status ${d.status} id ${d.req_id} body ${d.body_len}` +
        (d.attachments ? ` attachments ${d.attachments.map(a => a[0]).join(',')}` : '');
    }
    return `| \`${w.name}\` | ${w.len} | ${what} | ${w.lib} | ${w.how} |`;
  });
  return `# Golden frames from real peers

Each \`.bin\` file here is exactly one whole frame, byte for byte as a real, independent
implementation put it on the wire, captured by a TCP man-in-the-middle on 127.0.0.1 between a
real client and a real server (no mosn-rs code involved). The frames were split by the
protocols' own length fields (Bolt: PROTOCOLS.md §2.1/§2.2 incl. the v2 CRC32 trailer; Dubbo:
16-byte header + body length).

Libraries (npm, pinned in \`tests/tools/rpc/package-lock.json\`, run on node ${V.node}; PyPI,
pinned in \`tests/tools/rpc/requirements.txt\`, run on Debian's python3):

- Bolt: \`sofa-rpc-node\` ${V['sofa-rpc-node']} (SOFAStack's SOFARPC for Node: RpcClient/RpcServer)
  with its protocol \`sofa-bolt-node\` ${V['sofa-bolt-node']}, hessian2 (codec 1).
- Dubbo: \`sofa-rpc-node\` ${V['sofa-rpc-node']} with the \`dubbo-remoting\` ${V['dubbo-remoting']} protocol,
  hessian2 (serialization id 2) by \`hessian.js\` ${V['hessian.js']}.
- Bolt, second client: ${ANTHUNDER_LIB}, Ant's Python Bolt library (protobuf codec 11 only).

| file | bytes | header fields | produced by | how |
|---|---|---|---|---|
${rows.join('\n')}

Notes:

- The hessian2 SOFARPC client puts a single entry in the Bolt header map: \`service\` =
  \`<interface>:<version>\`; the method name, target app and requestProps travel inside the
  hessian2 \`SofaRequest\` body. (The Java client adds \`sofa_head_*\`, \`type\`, \`generic.revise\`
  and trace keys; this library sends those only with the protobuf codec.)
- The heartbeat request carries timeout 3000 (sofa-bolt-node's default), not -1.
- sofa-rpc-node's server replies to oneway requests unless told not to (it sent
  ${onewayReplies} reply frame(s) in the check); \`bolt_server.js\` drops those replies as
  Java sofa-bolt does, so \`bolt_v1_oneway.bin\` has no reply.
- A failing SOFARPC method is answered with response status 2 (SERVER_EXCEPTION) and a
  \`com.alipay.remoting.rpc.exception.RpcServerException\` body; its stack trace is fixed by
  \`bolt_server.js\` so the bytes don't depend on the checkout path.
- Dubbo attachments are a hessian2 map whose keys hessian.js writes sorted.
- With its protobuf codec sofa-rpc-node's header map is \`service\`, \`sofa_head_method_name\`,
  \`sofa_head_target_app\`, \`sofa_head_target_service\` (+ requestProps); anthunder sends
  \`sofa_head_target_service\`, \`sofa_head_method_name\`, \`sofa_head_target_app\`, \`service\`,
  \`uid\`, \`rpc_trace_context.sofaTraceId\`, \`rpc_trace_context.sofaRpcId\`.
- Request ids start at 1 in every node capture (a fresh client process per scenario), so those
  files are reproducible; \`bolt_v1_anthunder_request.bin\` is not (anthunder starts its ids at
  random and its trace id has a timestamp and pid), it changes on every regeneration.

Regenerate (after \`ci/setup.sh\`, which runs \`npm ci\` in \`tests/tools/rpc\` and pip-installs
anthunder into \`tests/tools/rpc/pydeps\`):

    node tests/tools/rpc/capture_fixtures.js

It rewrites every file listed above and this README.
`;
}

async function main() {
  fs.mkdirSync(opts.out, { recursive: true });
  const onewayReplies = await bolt();
  await dubbo();
  fs.writeFileSync(path.join(opts.out, 'README.md'), readme(onewayReplies));
  process.stderr.write(`wrote ${written.length} frames and README.md to ${path.relative(repo, opts.out)}\n`);
}

main().then(() => process.exit(0), err => {
  process.stderr.write(`capture_fixtures: ${err.stack}\n`);
  process.exit(1);
});
