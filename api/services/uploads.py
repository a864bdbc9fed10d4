"""Spool an upload to a private temp file with a size cap and a sha256, never holding it in memory."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from fastapi import UploadFile

from api.core.config import Settings
from api.errors import ApiError
from api.storage import UploadTooLarge, copy_hashed


@contextmanager
def spooled_upload(upload: UploadFile, settings: Settings, suffix: str = "") -> Iterator[tuple[Path, int, str]]:
    """Yield (path, size, sha256) of the upload on local disk; the file is removed afterwards."""
    scratch = settings.resolved_data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=scratch, suffix=suffix, delete=False) as sink:
        path = Path(sink.name)
        try:
            size, digest = copy_hashed(upload.file, sink, settings.max_upload_bytes)
        except UploadTooLarge:
            path.unlink(missing_ok=True)
            raise ApiError(413, f"the upload is larger than the {settings.max_upload_bytes}-byte limit (DISTILLERY_MAX_UPLOAD_BYTES)") from None
    try:
        if size == 0:
            raise ApiError(422, "the uploaded file is empty; send the file in the multipart field 'file'")
        yield path, size, digest
    finally:
        path.unlink(missing_ok=True)
