"""A small HTTP/1.1 load generator for loopback benchmarks: ``python bench/http_load.py``.

Runs as its own process, so the server under test and the load do not share an interpreter; it
imports nothing from kdcore, so running the file as a script starts in milliseconds.
Keep-alive connections on plain asyncio streams (far less CPU per request than a full client,
which matters when generator and server share two cores); bounded in requests and seconds; a
request that gets no usable answer in ``REQUEST_TIMEOUT_S`` counts as failed and its connection is
replaced. Prints one JSON object: warm-up and recorded counts, failures, requests/s, p50 and p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

WARMUP = 200
REQUEST_TIMEOUT_S = 5.0


def build_request(method: str, path: str, port: int, key: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked responses are not supported")
    await reader.readexactly(length)
    return status


async def load(port: int, request: bytes, concurrency: int, count: int, seconds: float) -> dict:
    """``count`` requests (after ``WARMUP`` unrecorded ones) over ``concurrency`` connections, at most ``seconds``."""
    latencies: list[float] = []
    failures = 0
    budget = {"warmup": min(WARMUP, count // 5), "left": count}
    recording = {"since": 0.0}

    async def connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while budget["left"] > 0 and (not recording["since"] or time.perf_counter() - recording["since"] < seconds):
                warm = budget["warmup"] > 0
                budget["warmup" if warm else "left"] -= 1
                if not warm and not recording["since"]:
                    recording["since"] = time.perf_counter()
                started = time.perf_counter()
                writer.write(request)
                try:
                    status = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_S)
                except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                    status = 599  # no usable answer: count it, and go on over a fresh connection
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                if not warm:
                    latencies.append(time.perf_counter() - started)
                    failures += status >= 400
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - recording["since"]
    ordered = sorted(latencies)
    return {
        "warmup": min(WARMUP, count // 5),
        "count": len(ordered),
        "failures": failures,
        "rps": len(ordered) / elapsed,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="http_load.py", description="load a loopback HTTP endpoint; prints JSON")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path", default="/")
    parser.add_argument("--key", default="", help="bearer token")
    parser.add_argument("--body", default="", help="JSON request body")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--count", type=int, default=1000, help="recorded requests, after the warm-up")
    parser.add_argument("--seconds", type=float, default=10.0, help="stop recording after this long")
    args = parser.parse_args(argv)
    request = build_request(args.method, args.path, args.port, args.key, args.body.encode())
    print(json.dumps(asyncio.run(load(args.port, request, args.concurrency, args.count, args.seconds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
