"""Inspect a dataset archive before anything is written, then extract only plain files.

Every member is checked first: no absolute paths, no ``..``, no links or device files, and caps on
member count, total uncompressed size and compression ratio (zip bombs are refused from their
headers, before a byte is inflated). Tar extraction also goes through ``filter='data'``.
"""

from __future__ import annotations

import tarfile
import zipfile
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
    members: list[Member] = []
    compressed = max(path.stat().st_size, 1)
    total = 0
    if kind == "zip":
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
                total += info.file_size
                members.append(Member(name, info.file_size))
    else:
        with tarfile.open(path, "r:*") as archive:
            count = 0
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
                members.append(Member(name, info.size))
    if total > limits.max_total_bytes:
        raise BadDataset(f"the archive would unpack to {total} bytes, more than the cap of {limits.max_total_bytes}")
    if total / compressed > limits.max_ratio and total > 64 * 1024 * 1024:
        raise BadDataset(f"the archive's compression ratio {total / compressed:.0f}:1 exceeds {limits.max_ratio:.0f}:1 (a zip bomb?)")
    return members


def extract_archive(path: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()) -> list[Member]:
    """Inspect, then extract the regular files into ``dest``, never writing outside it."""
    members = inspect_archive(path, limits)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    if archive_kind(path) == "zip":
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
    else:
        with tarfile.open(path, "r:*") as archive:
            archive.extractall(root, filter="data")
    return members
