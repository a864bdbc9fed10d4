"""Every refusal as ``application/problem+json`` (RFC 9457) with a sentence a person can act on.

:func:`install_error_handlers` also documents those answers on every operation of the OpenAPI
document (it must run before the routers are included) and answers 405 with an ``Allow`` header
that lists every method of the path, not only those of the first route that matched it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.schemas.common import Problem
from kdcore.errors import KdError

PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


DOCUMENTED_PROBLEMS = (400, 401, 404, 409, 413, 422, 429, 503)
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": TITLES[status], "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for status in DOCUMENTED_PROBLEMS
}


class ApiError(Exception):
    def __init__(
        self, status: int, detail: str, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None, type_: str = "about:blank"
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.type = type_


def not_found(kind: str, identifier: str) -> ApiError:
    return ApiError(404, f"no {kind} with id {identifier!r} exists for this API key's tenant")


def problem(
    status: int, detail: str, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None, type_: str = "about:blank"
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _json_safe(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for error in errors:
        out.append({"loc": [str(p) for p in error.get("loc", ())], "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))})
    return out


def _body_sentence(request: Request, errors: Sequence[Any]) -> str | None:
    """What is wrong with a JSON body as a whole, where pydantic's words ("JSON decode error", "a valid dictionary") would mislead."""
    if not errors:
        return None
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        at = f"at character {loc[1]}: " if len(loc) > 1 else ""
        return f"the request body is not valid JSON ({at}{(first.get('ctx') or {}).get('error', 'decode error')}); send one JSON object"
    if loc != ("body",):
        return None
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        shown = f"'{media_type}'" if media_type else "none"
        return f"this endpoint takes a JSON body; set the header 'Content-Type: application/json' (the request's Content-Type is {shown})"
    if first.get("type") == "missing":
        return "the request body is empty; send a JSON object"
    return f"the request body must be a JSON object, not {type(first.get('input')).__name__}"


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (Starlette lists only the first partial match's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    app.router.responses = {**PROBLEM_RESPONSES, **app.router.responses}

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.detail, exc.errors, exc.headers, exc.type)

    @app.exception_handler(KdError)
    async def _kd_error(_: Request, exc: KdError) -> JSONResponse:
        return problem(422, exc.message, type_=f"urn:distillery:{exc.code}")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _json_safe(exc.errors())
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p not in ("body",)) or "request"
        return problem(422, _body_sentence(request, exc.errors()) or f"{where}: {first['msg']}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
            detail = f"{request.method} is not allowed on this path; use {headers['Allow']}"
        return problem(exc.status_code, detail, headers=headers or None)

    @app.exception_handler(DataError)
    async def _unstorable(_: Request, exc: DataError) -> JSONResponse:
        return problem(
            422, "a value in the request cannot be stored or searched for (a NUL character in a text, or a number out of range); remove it and retry"
        )

    @app.exception_handler(OperationalError)
    async def _database_down(_: Request, exc: OperationalError) -> JSONResponse:
        return problem(503, "the database is unreachable right now (restarting or failing over); retry in a few seconds", headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        return problem(500, f"an internal error occurred ({type(exc).__name__}); this is a bug, please report it")
