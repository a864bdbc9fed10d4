"""One path and method that takes a multipart upload or a JSON reference, told apart by ``Content-Type``.

FastAPI gives each route one body type. A :class:`JsonBodyRoute` matches only requests whose body
is JSON, so registered ahead of the upload route on the same path it takes those and leaves every
other request to the upload route; :func:`json_body_alternative` adds the JSON body to the upload
operation's OpenAPI entry, since an OpenAPI path has one operation per method.
:func:`add_json_or_upload_post` registers the pair in that order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
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


def add_json_or_upload_post(
    router: APIRouter, *, json_endpoint: Callable[..., Any], json_model: type[BaseModel], upload_endpoint: Callable[..., Any], response_model: type[BaseModel]
) -> None:
    """``POST`` on the router's root, answering 201: JSON bodies (``json_model``) to ``json_endpoint``, every other body to ``upload_endpoint``.

    The JSON route goes first and stays out of the OpenAPI document; the upload operation documents both bodies.
    """
    router.add_api_route(
        "", json_endpoint, methods=["POST"], status_code=201, response_model=response_model, include_in_schema=False, route_class_override=JsonBodyRoute
    )
    router.add_api_route("", upload_endpoint, methods=["POST"], status_code=201, response_model=response_model, openapi_extra=json_body_alternative(json_model))
