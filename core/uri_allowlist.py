"""Which object-store URIs a tenant may register by reference: prefixes the operator grants per tenant.

A setting maps tenant names to URI prefixes, as JSON, with ``"*"`` for every tenant:
``{"acme": ["s3://models/acme/"], "*": ["s3://shared-models/"]}``. A URI is allowed when it lies
under one of its tenant's prefixes on a path-segment boundary (``s3://b/team`` does not cover
``s3://b/team-x/…``) and spells its path plainly (no empty, ``.`` or ``..`` segments, no query or
fragment), so no spelling of a URI reaches outside the prefix it matched. For ``file://`` the
resolved path must also stay under the resolved prefix, so a symbolic link cannot lead out.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

SCHEMES = ("s3", "file")


def granted_prefixes(grants: dict[str, list[str]], tenant_name: str) -> list[str]:
    return [*grants.get(tenant_name, []), *grants.get("*", [])]


def _plain(uri: str) -> bool:
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES or parts.query or parts.fragment or "\\" in uri:
        return False
    segments = parts.path.split("/")[1:]
    return bool(segments) and all(s not in ("", ".", "..") for s in segments)


def _under(uri: str, prefix: str) -> bool:
    base = prefix.rstrip("/")
    if not uri.startswith(base + "/"):
        return False
    if urlsplit(uri).scheme != "file":
        return True
    return Path(urlsplit(uri).path).resolve().is_relative_to(Path(urlsplit(base).path).resolve())


def allowed_prefix(uri: str, grants: dict[str, list[str]], tenant_name: str) -> str | None:
    """The granted prefix that covers ``uri`` (an object or file, not a folder), or None."""
    if not _plain(uri):
        return None
    return next((prefix for prefix in granted_prefixes(grants, tenant_name) if _under(uri, prefix)), None)
