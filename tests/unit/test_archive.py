"""Dataset archives are judged before a byte is written: escapes, links, specials, caps and bombs refused."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from e2e.test_hostile_uploads import GiB, lying_zip, tar_gz, tar_member, zip64_bomb, zip_entry

from kdcore.data.archive import ArchiveLimits, extract_archive, inspect_archive
from kdcore.errors import BadDataset


def _write(tmp_path: Path, content: bytes, name: str = "upload.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _zip(entries: dict[str, bytes], mode: int | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


GOOD = {"train/a/1.png": b"one", "train/b/2.png": b"two", "val/a/3.png": b"three"}


@pytest.mark.parametrize("archive", [_zip(GOOD), tar_gz([tar_member(name, content=data) for name, data in GOOD.items()])], ids=["zip", "tar.gz"])
def test_a_plain_archive_extracts_inside_its_folder(tmp_path, archive):
    members = extract_archive(_write(tmp_path, archive), tmp_path / "out")
    assert sorted(m.name for m in members) == sorted(GOOD)
    assert {str(p.relative_to(tmp_path / "out")): p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == GOOD


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (zip_entry("../../evil.png"), "'..'"),
        (zip_entry("/etc/evil.png"), "absolute"),
        (zip_entry("C:/evil.png"), "absolute"),
        (zip_entry("train\\..\\..\\evil.png"), "'..'"),
        (zip_entry("train/a/link.png", symlink_to="/etc/passwd"), "symbolic link"),
        (_zip({"train/a/fifo.png": b""}, mode=0o010644), "not a regular file"),
        (tar_gz([tar_member("../evil.png", content=b"x")]), "'..'"),
        (tar_gz([tar_member("/etc/evil.png", content=b"x")]), "absolute"),
        (tar_gz([tar_member("train/a/link.png", tarfile.SYMTYPE, "/etc/passwd")]), "link"),
        (tar_gz([tar_member("train/a/hard.png", tarfile.LNKTYPE, "/etc/passwd")]), "link"),
        (tar_gz([tar_member("train/a/dev.png", tarfile.CHRTYPE)]), "special file"),
        (tar_gz([tar_member("train/a/fifo.png", tarfile.FIFOTYPE)]), "special file"),
        (b"just some bytes", "neither"),
    ],
    ids=[
        "zip-dotdot",
        "zip-absolute",
        "zip-drive",
        "zip-backslash",
        "zip-symlink",
        "zip-fifo",
        "tar-dotdot",
        "tar-absolute",
        "tar-symlink",
        "tar-hardlink",
        "tar-device",
        "tar-fifo",
        "not-an-archive",
    ],
)
def test_unsafe_members_refuse_the_whole_archive_before_writing(tmp_path, archive, reason):
    with pytest.raises(BadDataset, match=reason.replace("(", r"\(")):
        extract_archive(_write(tmp_path, archive), tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path.parent / "evil.png").exists()


def test_member_count_and_total_size_caps(tmp_path):
    many = _write(tmp_path, _zip({f"train/a/{n}.png": b"x" for n in range(6)}))
    with pytest.raises(BadDataset, match="more than the cap of 5"):
        inspect_archive(many, ArchiveLimits(max_members=5))
    with pytest.raises(BadDataset, match="unpack to 6 bytes"):
        inspect_archive(many, ArchiveLimits(max_total_bytes=5))


def test_a_10_gib_zip_bomb_is_refused_from_its_headers(tmp_path):
    path = _write(tmp_path, zip64_bomb())
    started = time.monotonic()
    with pytest.raises(BadDataset, match=f"unpack to {10 * GiB} bytes"):
        extract_archive(path, tmp_path / "out")
    assert time.monotonic() - started < 2.0, "the bomb was inflated"
    with pytest.raises(BadDataset, match="compression ratio"):  # under a larger size cap the ratio still gives it away
        inspect_archive(path, ArchiveLimits(max_total_bytes=100 * GiB))


def test_a_tar_bomb_is_refused_at_its_first_header(tmp_path):
    """The header is judged before the stream is read on: the zeros behind it are never decompressed."""
    zeros = tar_gz([tar_member("train/a/zeros.png", content=bytes(80 << 20))])
    with pytest.raises(BadDataset, match="compression ratio"):
        extract_archive(_write(tmp_path, zeros), tmp_path / "out")
    claims = tar_gz([tar_member("train/a/huge.png", claimed_size=10 * GiB)])  # no data behind the header at all
    with pytest.raises(BadDataset, match="unpack to"):
        extract_archive(_write(tmp_path, claims, "claims.tar.gz"), tmp_path / "out")


def test_lying_or_broken_archives_are_bad_datasets_not_crashes(tmp_path):
    with pytest.raises(BadDataset, match="corrupt"):  # headers claim 1 KiB, the data is 64 MiB: reading stops at 1 KiB, the CRC fails
        extract_archive(_write(tmp_path, lying_zip()), tmp_path / "out")
    assert sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file()) <= 1024
    good = tar_gz([tar_member(name, content=data * 1000) for name, data in GOOD.items()])
    with pytest.raises(BadDataset, match="corrupt"):
        extract_archive(_write(tmp_path, good[: len(good) // 2], "cut.tar.gz"), tmp_path / "cut")
    garbled = gzip.compress(b"not a tar stream at all" * 100)
    with pytest.raises(BadDataset):
        extract_archive(_write(tmp_path, garbled, "garbled.tar.gz"), tmp_path / "garbled")
