"""Pure ASGI middleware that reports each HTTP response's status and time-to-headers to observers.

Starlette's ``@app.middleware("http")`` wraps every request in extra tasks and memory streams; this
costs one closure per request. Time is taken when the response headers go out, so a streamed
download or an SSE stream counts its time to first byte, not how long the client stays connected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Observer = Callable[[Scope, int, float], None]


class ResponseObserver:
    def __init__(self, app: ASGIApp, observers: Sequence[Observer]) -> None:
        self.app = app
        self.observers = tuple(observers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seconds = time.perf_counter() - started
                for observe in self.observers:
                    observe(scope, message["status"], seconds)
            await send(message)

        await self.app(scope, receive, observed_send)


def route_template(scope: Scope) -> str:
    """``/v1/jobs/{job_id}`` rather than the concrete path, so labels stay few."""
    return getattr(scope.get("route"), "path", "unmatched")
