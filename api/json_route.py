"""One path and method that takes a multipart upload or a JSON reference, told apart by ``Content-Type``.

FastAPI gives each route one body type. A :class:`JsonBodyRoute` matches only requests whose body
is JSON, so registered ahead of the upload route on the same path it takes those and leaves every
other request to the upload route; :func:`json_body_alternative` adds the JSON body to the upload
operation's OpenAPI entry, since an OpenAPI path has one operation per method.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import Scope


def is_json(scope: Scope) -> bool:
    media_type = Headers(scope=scope).get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


class JsonBodyRoute(APIRoute):
    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is Match.FULL and not is_json(scope):
            return Match.NONE, {}
        return match, child_scope


def json_body_alternative(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the operation's ``application/json`` request body."""
    return {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema()}}}}
