"""A write whose local source has vanished is refused at once; only store faults are retried."""

from __future__ import annotations

import time

import pytest

from core.storage import LocalStore
from worker.storage_writes import LocalFileGone, put_local_file, with_storage_retries


def test_a_vanished_file_is_not_retried_as_an_outage(tmp_path):
    store = LocalStore(tmp_path / "store")
    present = tmp_path / "ckpt-000000004.pt"
    present.write_bytes(b"weights")
    stored = with_storage_retries("storing a checkpoint", lambda: put_local_file(store, "jobs/j/ckpt-000000004.pt", present))
    assert stored.size_bytes == len(b"weights")
    started = time.monotonic()
    with pytest.raises(LocalFileGone):
        with_storage_retries("storing a checkpoint", lambda: put_local_file(store, "jobs/j/ckpt-000000003.pt", tmp_path / "ckpt-000000003.pt"))
    assert time.monotonic() - started < 0.5  # the first back-off is 0.5 s: no retry happened
