"""The web console at ``/ui``: static files (HTML, ES modules, CSS) from ``api/console/``, no build step.

The page carries no data and no key: it signs in with an API key kept in the tab's sessionStorage
and calls the same ``/v1`` routes with it as the bearer header. The Content-Security-Policy lets
scripts come only from here, so text from the API shown on the page can never run.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.errors import ApiError

router = APIRouter(tags=["console"], include_in_schema=False)
CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
ASSETS = {path.name: path for path in CONSOLE_DIR.iterdir() if path.suffix in MEDIA_TYPES}
# inline styles are allowed for the job report (a self-contained HTML page shown in a sandboxed frame)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
    "frame-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


@router.get("/ui")
async def console_page() -> FileResponse:
    return FileResponse(CONSOLE_DIR / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/ui/{name}")
async def console_asset(name: str) -> FileResponse:
    path = ASSETS.get(name)
    if path is None:
        raise ApiError(404, f"the console has no file {name!r}; open /ui")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)
