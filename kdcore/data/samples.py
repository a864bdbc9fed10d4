"""The encoded bytes of any sample of a split, wherever it lies: a local tar, a cached remote tar, one object per image.

A reader is made in the training process and inherited by forked loader workers; open files are
per process (re-opened after a fork) and kept for the few shards of the current window. Anything
that goes wrong reading or decoding one sample is a :class:`BadDataset` naming its shard and key.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import torch

from kdcore.data import remote
from kdcore.data.imagefolder import decode
from kdcore.data.index import DatasetIndex, SampleTable
from kdcore.data.shard_cache import ShardCache
from kdcore.errors import BadDataset

OPEN_SHARDS = 16


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Storage errors (a deleted object, a lost connection after boto3's retries) as a failure naming the sample."""
    try:
        yield
    except BadDataset:
        raise
    except Exception as exc:
        if isinstance(exc, OSError) or type(exc).__module__.startswith(("botocore", "boto3", "urllib3")):
            raise BadDataset(f"{what} could not be read ({type(exc).__name__}: {str(exc)[:200]})") from None
        raise


class SampleReader:
    def __init__(self, index: DatasetIndex, split: str, cache: ShardCache | None = None, endpoint_url: str | None = None) -> None:
        self.base_uri = index.base_uri
        self.whole_objects = index.format == "imagefolder"
        self.table = SampleTable.of(index.splits[split])
        self.cache = cache
        self.endpoint_url = endpoint_url
        self._pid = os.getpid()
        self._open: OrderedDict[int, BinaryIO] = OrderedDict()

    def __len__(self) -> int:
        return len(self.table)

    def shard_uri(self, shard: int) -> str:
        return remote.join(self.base_uri, self.table.shard_names[shard])

    def read(self, i: int) -> bytes:
        table = self.table
        with _reading(table.describe(i)):
            if self.whole_objects:
                return remote.read_all(remote.join(self.base_uri, table.key[i].decode()), self.endpoint_url)
            shard, offset, size = int(table.shard[i]), int(table.offset[i]), int(table.size[i])
            handle = self._handle(shard)
            data = os.pread(handle.fileno(), size, offset) if handle is not None else remote.read_range(self.shard_uri(shard), offset, size, self.endpoint_url)
        if len(data) != size:
            raise BadDataset(f"{table.describe(i)}: the shard ends {size - len(data)} bytes before the sample does; the shard was truncated or replaced")
        return data

    def decode(self, i: int, channels: int, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Sample ``i`` as uint8 ``[C,H,W]`` (resized to ``size`` when given)."""
        return decode(io.BytesIO(self.read(i)), channels, size, name=self.table.describe(i))

    def _handle(self, shard: int) -> BinaryIO | None:
        """An open local file for the shard (in place, or from the cache), or ``None`` to read it by ranged requests."""
        if os.getpid() != self._pid:
            self._pid, self._open = os.getpid(), OrderedDict()
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        uri = self.shard_uri(shard)
        path = remote.local_path(uri)
        if path is None:
            if self.cache is None:
                return None
            path = self.cache.local(uri, self.table.shard_sizes[shard])
        self._open[shard] = open(path, "rb")
        while len(self._open) > OPEN_SHARDS:
            self._open.popitem(last=False)[1].close()
        return self._open[shard]
