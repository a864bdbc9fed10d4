"""Inspect a dataset archive before anything is written, then extract only plain files.

Every member is checked first: no absolute paths, no ``..``, no links or device files, and caps on
member count, total uncompressed size and compression ratio (zip bombs are refused from their
headers, before a byte is inflated; a tar bomb at the first header that crosses a cap, before the
rest of the stream is decompressed). Tar extraction also goes through ``filter='data'``. A corrupt
or lying archive (bad CRC, truncated stream, data longer than its header says) is a ``BadDataset``.
"""

from __future__ import annotations

import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kdcore.errors import BadDataset


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 200_000
    max_total_bytes: int = 8 * 1024**3
    max_ratio: float = 200.0


@dataclass(frozen=True)
class Member:
    name: str
    size: int


def _safe_name(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise BadDataset(f"archive member {name!r} has an absolute path; archive paths must be relative (train/<class>/<image>)")
    if ".." in path.parts:
        raise BadDataset(f"archive member {name!r} escapes the archive root with '..'")
    return str(path)


BOMB_FLOOR_BYTES = 64 * 1024 * 1024


@contextmanager
def _readable() -> Iterator[None]:
    """Turn the archive libraries' own errors (corrupt, truncated, bad CRC) into a sentence for the uploader."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, tarfile.TarError, NotImplementedError) as exc:
        raise BadDataset(f"the archive is corrupt or truncated ({type(exc).__name__}: {str(exc)[:200]}); re-create it and upload again") from None


def _check_totals(total: int, compressed: int, limits: ArchiveLimits) -> None:
    if total > limits.max_total_bytes:
        raise BadDataset(f"the archive would unpack to {total} bytes, more than the cap of {limits.max_total_bytes}")
    if total > BOMB_FLOOR_BYTES and total / compressed > limits.max_ratio:
        raise BadDataset(f"the archive's compression ratio {total / compressed:.0f}:1 exceeds {limits.max_ratio:.0f}:1 (a zip bomb?)")


def archive_kind(path: Path) -> str:
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        with tarfile.open(path, "r:*"):
            return "tar"
    except tarfile.TarError:
        raise BadDataset("the file is neither a .zip nor a .tar.gz archive") from None


def inspect_archive(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> list[Member]:
    """List the archive's regular files, refusing the whole archive on the first unsafe member."""
    kind = archive_kind(path)
    compressed = max(path.stat().st_size, 1)
    with _readable():
        members = _inspect_zip(path, limits) if kind == "zip" else _inspect_tar(path, limits, compressed)
    _check_totals(sum(m.size for m in members), compressed, limits)
    return members


def _inspect_zip(path: Path, limits: ArchiveLimits) -> list[Member]:
    members: list[Member] = []
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise BadDataset(f"the archive has {len(infos)} members, more than the cap of {limits.max_members}")
        for info in infos:
            name = _safe_name(info.filename)
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                raise BadDataset(f"archive member {info.filename!r} is a symbolic link; links are refused")
            if mode not in (0, 0o100000, 0o040000):
                raise BadDataset(f"archive member {info.filename!r} is not a regular file")
            if info.is_dir():
                continue
            members.append(Member(name, info.file_size))
    return members


def _inspect_tar(path: Path, limits: ArchiveLimits, compressed: int) -> list[Member]:
    """Walk the headers in stream order and stop at the first one that breaks a cap."""
    members: list[Member] = []
    total = count = 0
    with tarfile.open(path, "r:*") as archive:
        for info in archive:
            count += 1
            if count > limits.max_members:
                raise BadDataset(f"the archive has more than {limits.max_members} members, the cap")
            name = _safe_name(info.name)
            if info.issym() or info.islnk():
                raise BadDataset(f"archive member {info.name!r} is a link; links are refused")
            if info.isdir():
                continue
            if not info.isfile():
                raise BadDataset(f"archive member {info.name!r} is a device, FIFO or other special file; refused")
            total += info.size
            _check_totals(total, compressed, limits)
            members.append(Member(name, info.size))
    return members


def extract_archive(path: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()) -> list[Member]:
    """Inspect, then extract the regular files into ``dest``, never writing outside it."""
    members = inspect_archive(path, limits)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with _readable():
        if archive_kind(path) == "zip":
            _extract_zip(path, root)
        else:
            with tarfile.open(path, "r:*") as archive:
                archive.extractall(root, filter="data")
    return members


def _extract_zip(path: Path, root: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            target = (root / _safe_name(info.filename)).resolve()
            if root not in target.parents:
                raise BadDataset(f"archive member {info.filename!r} would land outside the dataset folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with archive.open(info) as source, open(target, "wb") as sink:
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > info.file_size:
                        raise BadDataset(f"archive member {info.filename!r} inflates beyond its declared size")
                    sink.write(chunk)
