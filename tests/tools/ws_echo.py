#!/usr/bin/env python3
"""WebSocket echo server and checking client for the mosn end-to-end tests.

server --port N     echo every message back; prints "READY <port>" once listening
client --url URL --messages N
                    sends N text and N binary messages of growing size, checks every echo,
                    then a clean close; prints "OK <n> text <n> binary" and exits 0
"""
import argparse
import asyncio
import os
import sys

import websockets


async def serve(port):
    async def echo(ws, *_path):
        async for msg in ws:
            await ws.send(msg)

    async with websockets.serve(echo, "127.0.0.1", port, max_size=None) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"READY {bound}", flush=True)
        await asyncio.Future()


async def client(url, n):
    async with websockets.connect(url, max_size=None, open_timeout=20) as ws:
        texts = binaries = 0
        for i in range(n):
            text = f"message {i} " + "x" * (i * 37)
            await ws.send(text)
            back = await asyncio.wait_for(ws.recv(), 20)
            if back != text:
                print(f"FAIL text {i}: {back[:60]!r}", flush=True)
                return 1
            texts += 1
            data = os.urandom(1 + i * 1000)
            await ws.send(data)
            back = await asyncio.wait_for(ws.recv(), 20)
            if back != data:
                print(f"FAIL binary {i}: {len(back)} bytes", flush=True)
                return 1
            binaries += 1
        await ws.close()
    print(f"OK {texts} text {binaries} binary", flush=True)
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--url")
    p.add_argument("--messages", type=int, default=10)
    a = p.parse_args()
    if a.mode == "server":
        asyncio.run(serve(a.port))
        return 0
    return asyncio.run(client(a.url, a.messages))


if __name__ == "__main__":
    sys.exit(main())
