"""A real webhook receiver for tests: ``http.server`` on loopback in a thread, and the signature check a receiver makes."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Records every POST; answers each path's scripted status codes first, then 200.

    ``redirects`` maps a path to the ``Location`` its answers carry, so a scripted 3xx is a real redirect.
    """

    def __init__(self, plan: dict[str, list[int]], redirects: dict[str, str] | None = None) -> None:
        self.plan = plan
        self.redirects = redirects or {}
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                codes = receiver.plan.get(self.path) or []
                self.send_response(codes.pop(0) if codes else 200)
                if self.path in receiver.redirects:
                    self.send_header("Location", receiver.redirects[self.path])
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]


def signature_ok(secret: str, headers: dict, body: bytes) -> bool:
    """The receiver's side of the contract, written from the documented scheme only."""
    fields = dict(part.split("=", 1) for part in headers["Distillery-Signature"].split(","))
    expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return abs(time.time() - int(fields["t"])) < 300 and hmac.compare_digest(fields["v1"], expected)
