"""Teacher-output reuse: a frozen teacher gives the same logits for the same input, so compute once.

The inputs repeat when ``augment`` is ``none`` (one slot: the plain image) or when the augmentation
comes from a :class:`~kdcore.data.augment.VariantPool` (``VARIANTS_PER_SAMPLE`` fixed crop+flip
slots per sample, one slot per epoch). This is FKD's idea (Shen & Xing, ECCV 2022, szq0214/FKD, by
the MEAL V2 authors): store the teacher's soft labels per (sample, crop box, flip) once, and let
every later epoch, and every later job with the same teacher and data, skip the teacher.

* **When**: the first batch that needs a slot runs the teacher over the whole training set for that
  slot, in ``FILL_BATCH`` chunks in index order. That makes every stored value a pure function of
  (teacher, data, slot), so a resumed run or a later job gets the same bits whether it computes or
  loads them, and lookups afterwards are gathers with no host sync.
* **How compact**: up to ``FULL_LOGITS_MAX_CLASSES`` classes every logit is kept in fp16, as an offset
  from the row's fp32 maximum (2·C+4 bytes per row; CIFAR-100 with 4 slots is 41 MB a teacher),
  exact to fp16 rounding of the offsets, so methods that
  sharpen or soften with any temperature, or read raw logits (MEAL V2's discriminator), see what the
  teacher said. Above that, FKD's top-k compression carried over to logits: the ``TOP_K`` largest
  logits with their class indices, plus one fill logit, log(mean(exp(other logits))), for the rest;
  at τ=1 the top-k probabilities are kept and the remaining mass is spread evenly, FKD's
  "marginal smoothing" (ImageNet with 4 slots: ≈250 MB a teacher instead of 10 GB).
  Values pass through the storage format before their first use, computed or loaded alike.
* **Where**: each filled slot is written as safetensors under ``store`` (``KDCORE_TEACHER_STORE``
  or ``<work_dir>/teacher-outputs``), named by a digest of the teacher file's sha256 and settings,
  the dataset's bytes, the input size, the slot (seed, crop padding, flip), the storage format and
  the precision. Teachers that are not loaded from a file (no ``source``) are not persisted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from kdcore.checkpoint import sha256_file
from kdcore.data.augment import VariantPool, apply_crop_flip
from kdcore.data.images import ImageSet
from kdcore.data.loader import Batch

VARIANTS_PER_SAMPLE = 4  # K: the teacher runs in the first K epochs only; more slots = more crop diversity, fewer savings
FULL_LOGITS_MAX_CLASSES = 100
TOP_K = 10
FILL_BATCH = 256
STORE_VERSION = 1
STORE_ENV = "KDCORE_TEACHER_STORE"


def teacher_store_dir(work_dir: Path) -> Path:
    """Where filled slots persist: a shared folder from ``KDCORE_TEACHER_STORE``, else the job's work dir."""
    return Path(os.environ.get(STORE_ENV) or Path(work_dir) / "teacher-outputs")


class LogitCodec:
    """How one row of logits is stored: fp16 offsets from the row's largest logit (kept in fp32).

    Centring first makes fp16's error smallest where softmax looks (the largest logits) and keeps
    the largest logit exact; adding the fp32 maximum back restores raw logits for methods that use them.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.top_k = None if num_classes <= FULL_LOGITS_MAX_CLASSES else TOP_K

    def describe(self) -> str:
        return "fp16" if self.top_k is None else f"top{self.top_k}-fp16"

    def empty(self, rows: tuple[int, ...], device: torch.device) -> dict[str, Tensor]:
        parts = {"max": torch.zeros(*rows, dtype=torch.float32, device=device)}
        if self.top_k is None:
            parts["logits"] = torch.zeros(*rows, self.num_classes, dtype=torch.float16, device=device)
            return parts
        index_dtype = torch.int16 if self.num_classes <= torch.iinfo(torch.int16).max else torch.int32
        parts["top_logits"] = torch.zeros(*rows, self.top_k, dtype=torch.float16, device=device)
        parts["top_classes"] = torch.zeros(*rows, self.top_k, dtype=index_dtype, device=device)
        parts["fill"] = torch.zeros(*rows, dtype=torch.float32, device=device)
        return parts

    def encode(self, logits: Tensor) -> dict[str, Tensor]:
        logits = logits.float()
        peak = logits.max(dim=1).values
        centred = logits - peak[:, None]
        if self.top_k is None:
            return {"max": peak, "logits": centred.half()}
        top = centred.topk(self.top_k, dim=1)
        others = centred.scatter(1, top.indices, float("-inf"))
        fill = torch.logsumexp(others, dim=1) - math.log(self.num_classes - self.top_k)
        return {"max": peak, "top_logits": top.values.half(), "top_classes": top.indices, "fill": fill}

    def decode(self, parts: dict[str, Tensor]) -> Tensor:
        peak = parts["max"][:, None]
        if self.top_k is None:
            return parts["logits"].float() + peak
        rows = peak.shape[0]
        out = parts["fill"][:, None].expand(rows, self.num_classes).clone()
        return out.scatter_(1, parts["top_classes"].long(), parts["top_logits"].float()).add_(peak)


def teacher_identity(teacher: nn.Module) -> str | None:
    """The teacher file's sha256 plus how it is read; ``None`` for a module not loaded from a file."""
    source = getattr(teacher, "source", None)
    if source is None or not Path(source.path).is_file():
        return None
    settings = source.model_dump(mode="json", include={"format", "arch", "num_classes", "input_size", "mean", "std"})
    return json.dumps({"sha256": sha256_file(Path(source.path)), **settings}, sort_keys=True)


def dataset_digest(data: ImageSet) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(list(data.images.shape)).encode())
    digest.update(data.images.contiguous().numpy())
    digest.update(data.labels.contiguous().numpy())
    return digest.hexdigest()


class TeacherOutputCache:
    """Per-teacher tables ``[slots, N, ...]`` of stored outputs, filled slot by slot on first need."""

    def __init__(
        self,
        data: ImageSet,
        pool: VariantPool | None,
        num_teachers: int,
        device: torch.device | None = None,
        store: Path | None = None,
        precision: torch.dtype | None = None,
        check: Callable[[], None] | None = None,
    ) -> None:
        self.data = data
        self.pool = pool
        self.device = device or torch.device("cpu")
        self.store = store
        self.precision = precision
        self.check = check
        self.codec = LogitCodec(data.num_classes)
        self.slots = pool.variants if pool is not None else 1
        self.tables = [self.codec.empty((self.slots, len(data)), self.device) for _ in range(num_teachers)]
        self.filled: list[set[int]] = [set() for _ in range(num_teachers)]
        self._identities: dict[int, str | None] = {}
        self._data_digest: str | None = None
        self.teacher_samples = 0
        self.served_rows = 0
        self.loaded_slots = 0

    def logits(self, teacher_index: int, teacher: nn.Module, batch: Batch) -> Tensor:
        """The teacher's logits for ``batch``: from the table when its inputs are pool slots, else fresh."""
        if batch.augment is None and self.pool is None:
            slots = torch.zeros_like(batch.indices)
        elif batch.augment is not None and batch.augment.variant is not None and self.pool is not None:
            slots = batch.augment.variant
        else:
            self.teacher_samples += len(batch.indices)
            with torch.inference_mode(), self._autocast():
                return teacher(batch.images).float()
        if len(self.filled[teacher_index]) < self.slots:
            for slot in set(slots.unique().tolist()) - self.filled[teacher_index]:
                self._fill(teacher_index, teacher, int(slot))
        table = self.tables[teacher_index]
        slots, rows = slots.to(self.device, non_blocking=True), batch.indices.to(self.device, non_blocking=True)
        self.served_rows += len(batch.indices)
        return self.codec.decode({name: part[slots, rows] for name, part in table.items()}).to(batch.images.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision)

    def _fill(self, teacher_index: int, teacher: nn.Module, slot: int) -> None:
        table = self.tables[teacher_index]
        path = self._store_path(teacher_index, teacher, slot)
        if path is not None and self._load(path, table, slot):
            self.loaded_slots += 1
        else:
            for start in range(0, len(self.data), FILL_BATCH):
                if self.check is not None:
                    self.check()
                rows = torch.arange(start, min(start + FILL_BATCH, len(self.data)))
                images = self.data.images[rows].to(self.device).float().div_(255.0)
                if self.pool is not None:
                    images = apply_crop_flip(images, self.pool.params(rows, slot))
                with torch.inference_mode(), self._autocast():
                    out = teacher(images)
                for name, value in self.codec.encode(out).items():
                    table[name][slot, start : start + len(rows)] = value.to(table[name].dtype)
                self.teacher_samples += len(rows)
            if path is not None:
                self._save(path, table, slot)
        self.filled[teacher_index].add(slot)

    def _store_path(self, teacher_index: int, teacher: nn.Module, slot: int) -> Path | None:
        if self.store is None:
            return None
        if teacher_index not in self._identities:
            self._identities[teacher_index] = teacher_identity(teacher)
        identity = self._identities[teacher_index]
        if identity is None:
            return None
        if self._data_digest is None:
            self._data_digest = dataset_digest(self.data)
        key = {
            "version": STORE_VERSION,
            "teacher": identity,
            "data": self._data_digest,
            "input": list(self.data.images.shape[1:]),
            "slot": self.pool.describe(slot) if self.pool is not None else "plain",
            "codec": self.codec.describe(),
            "precision": str(self.precision or torch.float32),
        }
        return self.store / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40] + ".safetensors")

    def _load(self, path: Path, table: dict[str, Tensor], slot: int) -> bool:
        """Read a stored slot; a missing, torn or mismatched file is ignored (the slot is recomputed)."""
        from safetensors.torch import load_file

        try:
            stored = load_file(str(path), device=str(self.device))
        except (OSError, RuntimeError, ValueError):
            return False
        if stored.keys() != table.keys() or any(stored[k].shape != table[k].shape[1:] or stored[k].dtype != table[k].dtype for k in table):
            return False
        for name, value in stored.items():
            table[name][slot] = value
        return True

    def _save(self, path: Path, table: dict[str, Tensor], slot: int) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({name: part[slot].contiguous() for name, part in table.items()}, str(temp))
        os.replace(temp, path)
