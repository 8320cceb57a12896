#!/usr/bin/python3
"""A second, independent SOFARPC Bolt client: anthunder (Ant's Python Bolt library).

    /usr/bin/python3 anthunder_client.py --addr 127.0.0.1:PORT
        [--service com.alipay.test.EchoService:1.0] [--method echo] [--args '["hi"]']
        [--count N] [--timeout MS] [--oneway] [--heartbeat] [--header k=v ...]
        [--target-app NAME]

Output as bolt_client.js: one JSON line per call, {"ok":true,"result":...,"ms":...} or
{"ok":false,"error":...,"code":null,"status":S}, then {"summary":{"ok":N,"failed":M}}; exit 0
even when calls fail. anthunder speaks Bolt v1 with the protobuf codec (codec 11) only: the
argument goes as com.alipay.test.EchoRequest{message} (proto/echo.proto, encoded here by hand:
anthunder takes the content as bytes) and the result is EchoResponse.message. Its header map is
sofa_head_target_service, sofa_head_method_name, sofa_head_target_app, service, uid, then the
--header entries and the rpc_trace_context.* keys of its tracer. Calls are sequential (the
library's sync client); --heartbeat sends anthunder's HeartbeatRequest (timeout 0) and reads
the ack. The packages live in tests/tools/rpc/pydeps (ci/setup.sh installs them with
pip --target).
"""

import argparse
import json
import os
import re
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "pydeps"))

import logging  # noqa: E402

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

from anthunder import SERVICE_MAP  # noqa: E402
from anthunder.client.client import Client  # noqa: E402
from anthunder.command.heartbeat import HeartbeatRequest  # noqa: E402
from anthunder.protocol import BoltResponse  # noqa: E402
from mytracer import SpanContext  # noqa: E402


class DirectClient(Client):
    """anthunder's sync Client without the mesh registry agent (an HTTP call at startup)."""

    def __init__(self):  # noqa: super().__init__ would start the MeshClient
        self._mesh_client = None


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_echo_request(message):
    b = message.encode("utf-8")
    return (b"\x0a" + varint(len(b)) + b) if b else b""


def decode_message_field(buf):
    """Field 1 (string) of an EchoResponse."""
    i = 0
    while i < len(buf):
        key = 0
        shift = 0
        while True:
            c = buf[i]
            i += 1
            key |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                break
        field, wire = key >> 3, key & 7
        if wire != 2:
            raise ValueError("unexpected wire type %d" % wire)
        n = 0
        shift = 0
        while True:
            c = buf[i]
            i += 1
            n |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                break
        val = buf[i:i + n]
        i += n
        if field == 1:
            return val.decode("utf-8")
    return ""


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def heartbeat(host, port, timeout_ms):
    req = HeartbeatRequest.new_request()
    with socket.create_connection((host, port), timeout=timeout_ms / 1000.0) as s:
        s.sendall(req.to_stream())
        need = BoltResponse.bolt_header_size()
        buf = b""
        while len(buf) < need:
            chunk = s.recv(need - len(buf))
            if not chunk:
                raise ConnectionError("closed before the heartbeat ack")
            buf += chunk
        h = BoltResponse.bolt_header_from_stream(buf)
        return req.request_id, h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--service", default="com.alipay.test.EchoService:1.0")
    ap.add_argument("--method", default="echo")
    ap.add_argument("--args", default='["hi"]')
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=3000)
    ap.add_argument("--oneway", action="store_true")
    ap.add_argument("--heartbeat", action="store_true")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--target-app", default="")
    o = ap.parse_args()
    host, port = o.addr.rsplit(":", 1)
    port = int(port)
    args = json.loads(o.args)
    message = "" if not args or args[0] is None else str(args[0])
    extra = {}
    for kv in o.header:
        k, _, v = kv.partition("=")
        extra[k] = v

    stats = {"ok": 0, "failed": 0}
    if o.heartbeat:
        for _ in range(o.count):
            start = time.time()
            try:
                rid, h = heartbeat(host, port, o.timeout)
                ok = h["cmdcode"] == 0 and h["request_id"] == rid
                emit({"ok": ok, "heartbeat": True, "req_id": rid, "status": h["respstatus"],
                      "ms": int((time.time() - start) * 1000)})
                stats["ok" if ok else "failed"] += 1
            except Exception as e:  # noqa: BLE001 - reported as a failed call
                emit({"ok": False, "heartbeat": True, "error": str(e), "name": type(e).__name__,
                      "code": None, "status": None, "ms": int((time.time() - start) * 1000)})
                stats["failed"] += 1
        emit({"summary": stats})
        return

    SERVICE_MAP[o.service] = (host, port)
    client = DirectClient()
    content = encode_echo_request(message)
    for _ in range(o.count):
        start = time.time()
        try:
            if o.oneway:
                client.invoke_oneway(o.service, o.method, content, spanctx=SpanContext(),
                                     target_app=o.target_app, **extra)
                out = {"ok": True, "oneway": True, "result": None}
            else:
                resp = client.invoke_sync(o.service, o.method, content, spanctx=SpanContext(),
                                          target_app=o.target_app, timeout_ms=o.timeout, **extra)
                result = decode_message_field(resp)
                out = {"ok": True, "result": result, "result_len": len(result),
                       "echoed": result == message, "status": 0}
            out["ms"] = int((time.time() - start) * 1000)
            out["req_id"] = None
            emit(out)
            stats["ok"] += 1
        except Exception as e:  # noqa: BLE001 - reported as a failed call
            m = re.search(r"RESPSTATUS=(\d+)", str(e))
            emit({"ok": False, "error": str(e), "name": type(e).__name__, "code": None,
                  "status": int(m.group(1)) if m else None,
                  "ms": int((time.time() - start) * 1000), "req_id": None})
            stats["failed"] += 1
    if o.oneway:
        time.sleep(0.05)
    emit({"summary": stats})


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        sys.stderr.write("anthunder_client: %r\n" % (e,))
        emit({"ok": False, "error": str(e), "name": type(e).__name__, "code": None, "status": None})
        emit({"summary": {"ok": 0, "failed": 1}})
    sys.exit(0)
