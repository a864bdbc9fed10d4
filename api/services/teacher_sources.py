"""Teachers registered by reference: a version in MLflow's model registry (``models:/name/version`` or
``models:/name@alias``), or a file under a prefix the operator grants the tenant (``s3://bucket/key``,
``file:///path``; ``DISTILLERY_TEACHER_URI_PREFIXES``, by default the tenant's own teachers folder of
the store; the rule is :mod:`core.uri_allowlist`'s, as for datasets by reference).

The model is streamed to a local spool file under the upload's size cap, hashed on the way, and
from there takes exactly an upload's path (format rules, one run on a small batch, storage), so a
registered teacher never depends on the registry or the bucket again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from api.errors import ApiError
from api.services.teachers import SUFFIX
from api.services.uploads import spooled
from core.config import Settings
from core.dataset_uris import store_uri
from core.mlflow_rest import MlflowClientEnv, MlflowError, MlflowRest
from core.storage import CHUNK
from core.uri_allowlist import allowed_prefix, granted_prefixes, refusal

REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[0-9]+)|@(?P<alias>[\w-]+))$")
# the file names a registry folder may hold for each format; the spool file takes the upload's suffix
FILE_SUFFIXES = {
    "safetensors": (".safetensors",),
    "state_dict": (".pt", ".pth"),
    "onnx": (".onnx",),
    "torchscript": (".pt",),
    "exported_program": (".pt2",),
}
TEACHERS_FOLDER = "tenants/{tenant}/teachers/"
URI_FORMS = "models:/<name>/<version>, models:/<name>@<alias>, s3://bucket/key or file:///path"


def spooled_from_uri(uri: str, fmt: str, settings: Settings, tenant: str) -> AbstractContextManager[tuple[Path, int, str]]:
    """(path, size, sha256) of the model ``uri`` names, on local disk while the block runs."""
    if uri.startswith("models:/"):
        return _from_registry(uri, fmt, settings)
    if uri.startswith(("s3://", "file://")):
        return _from_store(uri, fmt, settings, tenant)
    raise ApiError(422, f"uri must be {URI_FORMS}; got {uri!r}")


@contextmanager
def _from_registry(uri: str, fmt: str, settings: Settings) -> Iterator[tuple[Path, int, str]]:
    match = REGISTRY_URI.match(uri)
    if match is None:
        raise ApiError(422, f"a registry uri is models:/<name>/<version> (a version number) or models:/<name>@<alias>; got {uri!r}")
    tracking = settings.mlflow_tracking_uri or ""
    if not tracking.startswith(("http://", "https://")):
        raise ApiError(
            422,
            "this server has no MLflow tracking server configured (MLFLOW_TRACKING_URI is not an http(s) URL), so it cannot read models:/ URIs; upload the file instead, or ask the operator to set MLFLOW_TRACKING_URI",
        )
    rest = MlflowRest(tracking, MlflowClientEnv())
    try:
        with _registry_errors():
            version = match["version"] or rest.alias_version(match["name"], match["alias"])
            file_uri = _model_file(rest, rest.model_version_uri(match["name"], version), fmt, uri)
        with spooled(_downloaded(rest, file_uri), settings, SUFFIX[fmt], f"the model at {uri}", "register a version that holds the model file") as file:
            yield file
    finally:
        rest.close()


@contextmanager
def _registry_errors() -> Iterator[None]:
    try:
        yield
    except MlflowError as exc:
        raise ApiError(422, f"the teacher could not be read from the registry: {exc}") from None


def _downloaded(rest: MlflowRest, file_uri: str) -> Iterator[bytes]:
    with _registry_errors(), rest.download(file_uri) as chunks:
        yield from chunks


def _model_file(rest: MlflowRest, location: str, fmt: str, uri: str) -> str:
    """The one file of ``fmt`` in the version's folder, or the version's source itself when that is a file."""
    suffixes = FILE_SUFFIXES[fmt]
    names = rest.list_files(location)
    if not names and location.endswith(suffixes):
        return location
    matching = [n for n in names if n.endswith(suffixes)]
    if len(matching) == 1:
        return f"{location.rstrip('/')}/{matching[0]}"
    held = ", ".join(names) or "no files"
    want = " or ".join(f"*{s}" for s in suffixes)
    raise ApiError(
        422,
        f"{uri} ({location}) holds {held}: {'none' if not matching else 'more than one'} of them is a {fmt} file ({want}); "
        "register a version whose folder holds exactly one file of that format, or pick the format of the file it holds",
    )


def _from_store(uri: str, fmt: str, settings: Settings, tenant: str) -> AbstractContextManager[tuple[Path, int, str]]:
    prefixes = granted_prefixes(settings.teacher_uri_prefixes, store_uri(settings, TEACHERS_FOLDER), tenant)
    if allowed_prefix(uri, prefixes) is None:
        raise ApiError(422, refusal(uri, prefixes, "teachers", "DISTILLERY_TEACHER_URI_PREFIXES") + "; a uri names the model file itself")
    return spooled(_stored_chunks(uri), settings, SUFFIX[fmt], f"the model at {uri}", "point the uri at the model file")


def _stored_chunks(uri: str) -> Iterator[bytes]:
    parts = urlsplit(uri)
    try:
        if parts.scheme == "file":
            handle: BinaryIO = open(Path(parts.path).resolve(), "rb")
        else:
            from core.storage_s3 import S3Store

            handle = S3Store(parts.netloc).open(parts.path.lstrip("/"))
        with handle:
            yield from iter(lambda: handle.read(CHUNK), b"")
    except (OSError, BotoCoreError, ClientError) as exc:
        reason = exc.response.get("Error", {}).get("Code", str(exc)) if isinstance(exc, ClientError) else str(exc) or type(exc).__name__
        raise ApiError(422, f"the model at {uri} could not be read: {reason}") from None
