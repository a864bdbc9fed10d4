"""A cap on JSON request bodies (``DISTILLERY_MAX_JSON_BODY_BYTES``): refused with 413 before they are read whole.

A job spec or a dataset reference is a few kilobytes; a JSON body of megabytes is a mistake or an
attack, and parsing it costs the API memory and CPU. A declared ``Content-Length`` over the cap is
answered at once; a body sent in chunks is counted as it arrives and refused the moment it passes
the cap. Uploads (multipart) are not JSON and have their own cap (``DISTILLERY_MAX_UPLOAD_BYTES``).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem
from api.json_route import is_json
from core.config import get_settings


def _sentence(limit: int) -> str:
    return f"the JSON request body is larger than {limit} bytes, this server's limit (DISTILLERY_MAX_JSON_BODY_BYTES); a job spec needs a few kilobytes"


class JsonBodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_json(scope):
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_json_body_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await problem(413, _sentence(limit))(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # FastAPI lets an HTTPException raised while reading the body through to the problem handler
                raise HTTPException(413, _sentence(limit))
            return message

        await self.app(scope, counted, send)
