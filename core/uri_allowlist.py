"""Which URIs a tenant may register by reference (datasets, teachers): prefixes the operator grants.

A setting such as ``DISTILLERY_DATASET_URI_PREFIXES`` or ``DISTILLERY_TEACHER_URI_PREFIXES`` is a
JSON list of URI prefixes in which ``{tenant}`` stands for the tenant's ID; without it a tenant is
granted only its own folder of the service's store. A URI is allowed when it lies under a prefix
on a path-segment boundary (``s3://b/team`` does not cover ``s3://b/team-x/…``) and spells its path
plainly (no empty, ``.`` or ``..`` segments, no query or fragment), so no spelling reaches outside
the prefix it matched. For ``file://`` the resolved path must also stay under the resolved prefix,
so a symbolic link cannot lead out.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

SCHEMES = ("s3", "file")


def granted_prefixes(templates: list[str] | None, default: str, tenant: str) -> list[str]:
    """The operator's prefixes for ``tenant`` (``{tenant}`` filled in), or ``default`` when the operator set none."""
    return [template.replace("{tenant}", tenant) for template in (templates if templates is not None else [default])]


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


def allowed_prefix(uri: str, prefixes: list[str]) -> str | None:
    """The prefix that covers ``uri`` (strictly below it), or None."""
    if not _plain(uri):
        return None
    return next((prefix for prefix in prefixes if _under(uri, prefix)), None)


def refusal(uri: str, prefixes: list[str], what: str, setting: str) -> str:
    """The sentence for a URI outside ``prefixes``: which prefixes there are and which setting grants more."""
    return (
        f"uri {uri!r} is outside the prefixes this tenant may register {what} under "
        f"({', '.join(prefixes) if prefixes else 'none are granted'}; the operator sets {setting}): "
        "give a path below one of them, spelled without '.', '..' or empty segments"
    )
