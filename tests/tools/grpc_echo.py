#!/usr/bin/env python3
"""gRPC echo server and checking client for the mosn end-to-end tests (grpcio, generic
handlers, raw bytes messages: no protoc needed).

server --port N   serves /test.Echo/{Unary,ServerStream,Bidi,Fail}; prints "READY <port>"
client --target HOST:PORT --messages N
                  runs unary, server streaming (N replies), bidirectional ping-pong (N each
                  way, each request sent only after the previous reply arrived) and a call
                  failing with NOT_FOUND; checks payloads, initial and trailing metadata;
                  prints one "OK ..." line per check and exits 0, or "FAIL ..." and exits 1
"""
import argparse
import queue
import sys
from concurrent import futures

import grpc

SERVICE = "test.Echo"
OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 64 << 20)]


def trailers(context, kind):
    context.set_trailing_metadata((("x-trailer", f"{kind}-done"), ("x-bin-bin", b"\x00\x01\xfe")))


def unary(request, context):
    context.send_initial_metadata((("x-initial", "unary"),))
    md = dict(context.invocation_metadata())
    trailers(context, "unary")
    return b"echo:" + request + b"|" + md.get("x-client", "").encode()


def server_stream(request, context):
    n = int(request.decode())
    for i in range(n):
        yield f"item-{i}".encode() * (1 + i % 7)
    trailers(context, "stream")


def bidi(request_iterator, context):
    for i, msg in enumerate(request_iterator):
        yield b"pong:" + msg
    trailers(context, "bidi")


def fail(request, context):
    context.set_trailing_metadata((("x-reason", "not-here"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())


def serve(port):
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"READY {bound}", flush=True)
    server.wait_for_termination()


def check(cond, what):
    if not cond:
        print(f"FAIL {what}", flush=True)
        sys.exit(1)


def client(target, n):
    ch = grpc.insecure_channel(target, options=OPTIONS)
    grpc.channel_ready_future(ch).result(timeout=20)

    call = ch.unary_unary(f"/{SERVICE}/Unary")
    big = bytes(range(256)) * 4096  # 1 MiB
    reply, c = call.with_call(big, metadata=(("x-client", "py"),), timeout=20)
    check(reply == b"echo:" + big + b"|py", "unary payload")
    check(dict(c.initial_metadata()).get("x-initial") == "unary", "unary initial metadata")
    tm = dict(c.trailing_metadata())
    check(tm.get("x-trailer") == "unary-done", f"unary trailing metadata {tm}")
    check(tm.get("x-bin-bin") == b"\x00\x01\xfe", f"unary binary trailer {tm}")
    check(c.code() == grpc.StatusCode.OK, "unary status")
    print("OK unary", flush=True)

    stream = ch.unary_stream(f"/{SERVICE}/ServerStream")(str(n).encode(), timeout=30)
    items = list(stream)
    check(len(items) == n, f"server stream count {len(items)}")
    for i, it in enumerate(items):
        check(it == f"item-{i}".encode() * (1 + i % 7), f"server stream item {i}")
    check(dict(stream.trailing_metadata()).get("x-trailer") == "stream-done", "stream trailer")
    check(stream.code() == grpc.StatusCode.OK, "stream status")
    print(f"OK server_stream {n}", flush=True)

    q = queue.Queue()

    def requests():
        while True:
            m = q.get()
            if m is None:
                return
            yield m

    q.put(b"ping-0")
    responses = ch.stream_stream(f"/{SERVICE}/Bidi")(requests(), timeout=30)
    got = 0
    for r in responses:
        check(r == f"pong:ping-{got}".encode(), f"bidi reply {got}: {r!r}")
        got += 1
        q.put(f"ping-{got}".encode() if got < n else None)
    check(got == n, f"bidi count {got}")
    check(dict(responses.trailing_metadata()).get("x-trailer") == "bidi-done", "bidi trailer")
    print(f"OK bidi {n}", flush=True)

    try:
        ch.unary_unary(f"/{SERVICE}/Fail")(b"thing", timeout=20)
        check(False, "Fail returned OK")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, f"status {e.code()}")
        check(e.details() == "no such thing: thing", f"details {e.details()!r}")
        check(dict(e.trailing_metadata()).get("x-reason") == "not-here", "error trailer")
    print("OK status NOT_FOUND", flush=True)
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--target")
    p.add_argument("--messages", type=int, default=20)
    a = p.parse_args()
    if a.mode == "server":
        serve(a.port)
        return 0
    return client(a.target, a.messages)


if __name__ == "__main__":
    sys.exit(main())
