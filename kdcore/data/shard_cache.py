"""Remote shards on the worker's local disk: each downloaded once, at most ``max_bytes`` in all, least recently used evicted.

Why a disk cache and not a pure stream: batches are a pure function of (seed, epoch, step), so a
loader worker must be able to read any sample of the current window of shards at its offset, in
any order, which a forward-only S3 stream cannot give; one sequential GET per shard is also the
cheapest way to read S3 (a ranged GET per image would cost one request per sample). A set that
fits the cap crosses the network once for all epochs and later jobs; a larger one is re-read once
per epoch. Local ``file://`` shards are read where they lie and never copied.

Loader workers are separate processes: a file lock per shard makes one of them download it while
the others wait, and eviction holds one lock for the folder. A worker that still has an evicted
shard open keeps reading it (POSIX keeps the file until the last descriptor closes).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from filelock import FileLock

from kdcore.data import remote
from kdcore.errors import BadDataset

SUFFIX = ".shard"


class ShardCache:
    def __init__(self, folder: Path, max_bytes: int, endpoint_url: str | None = None) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.endpoint_url = endpoint_url
        folder.mkdir(parents=True, exist_ok=True)

    def path_for(self, uri: str) -> Path:
        return self.folder / (hashlib.sha256(uri.encode()).hexdigest()[:40] + SUFFIX)

    def local(self, uri: str, size: int) -> Path:
        """A local copy of the shard at ``uri`` (``size`` bytes, as the index says), downloading it if needed."""
        path = self.path_for(uri)
        if self._present(path, size):
            return path
        with FileLock(str(path) + ".lock"):
            if self._present(path, size):
                return path
            self._make_room(size, keep=path)
            part = path.with_name(f"{path.name}.{os.getpid()}.part")
            try:
                remote.download(uri, part, self.endpoint_url)
                actual = part.stat().st_size
                if actual != size:
                    raise BadDataset(f"shard {uri} is {actual} bytes but the dataset's index says {size}; it changed after registration, register it again")
                os.replace(part, path)
            finally:
                part.unlink(missing_ok=True)
        return path

    @staticmethod
    def _present(path: Path, size: int) -> bool:
        try:
            if path.stat().st_size != size:
                return False
            os.utime(path)
            return True
        except FileNotFoundError:
            return False

    def _make_room(self, incoming: int, keep: Path) -> None:
        if incoming > self.max_bytes:
            raise BadDataset(
                f"a shard of {incoming} bytes does not fit the worker's shard cache of {self.max_bytes} bytes; the operator must raise the cache size"
            )
        with FileLock(str(self.folder / ".evict.lock")):
            held = []
            for path in self.folder.glob("*" + SUFFIX):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                held.append((stat.st_mtime, stat.st_size, path))
            total = incoming + sum(size for _, size, _ in held)
            for _, size, path in sorted(held):
                if total <= self.max_bytes:
                    break
                if path != keep:
                    path.unlink(missing_ok=True)
                    total -= size

    def held_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*" + SUFFIX))
