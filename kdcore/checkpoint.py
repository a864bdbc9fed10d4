"""Checkpoints written atomically (temp file, fsync, rename) with a sha256 beside each.

A resumed run loads the newest checkpoint whose digest still matches, so a file torn by a crash
mid-write is never trusted. Files load with ``weights_only=True`` like any other input.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

KEEP_CHECKPOINTS = 2


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(directory: Path, global_step: int, state: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"ckpt-{global_step:09d}.pt"
    temp = final.with_suffix(".pt.tmp")
    torch.save(state, temp)
    with open(temp, "rb+") as handle:
        os.fsync(handle.fileno())
    digest = sha256_file(temp)
    os.replace(temp, final)
    (final.with_suffix(".sha256")).write_text(digest)
    for old in sorted(directory.glob("ckpt-*.pt"))[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
        old.with_suffix(".sha256").unlink(missing_ok=True)
    return final


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint whose recorded sha256 matches its bytes."""
    for candidate in sorted(directory.glob("ckpt-*.pt"), reverse=True):
        digest_file = candidate.with_suffix(".sha256")
        if digest_file.exists() and digest_file.read_text().strip() == sha256_file(candidate):
            return candidate
    return None


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)
