"""Teacher-output reuse that changes nothing the student trains on: FKD's stored soft labels, per view.

FKD (Shen & Xing, ECCV 2022, szq0214/FKD, by the MEAL V2 authors) draws each sample's crop and flip
for each epoch ahead of time and stores the teacher's soft labels with them. Here the views are the
training stream's own: :class:`~kdcore.data.loader.TrainingBatches` draws them from (seed, epoch,
step) alone, so the student sees exactly the images it sees with ``teacher_cache: off``, and the
teacher's outputs for those images are a pure function of (teacher, data, seed, epoch, batch plan).

* **Slots**: with ``augment: none`` one slot, the plain images, serves every epoch (the teacher runs
  once per sample for the run). With ``flip_crop`` each epoch is its own slot (one view per sample
  and epoch), used once per run: the saving is for later jobs with the same teacher, data, seed and
  batch plan (a sweep over students, methods or hyperparameters), and for a resumed job. Where a
  slot cannot be stored for them (a teacher not loaded from a file, or a store larger than
  ``KDCORE_TEACHER_STORE_MAX_BYTES``), reuse is switched off and the teacher runs on every batch;
  an epoch whose plan shows a sample twice (two views) is served fresh too.
* **When**: the first batch that needs a slot runs the teacher over the whole slot (plain images in
  ``FILL_BATCH`` chunks in index order; an epoch's own batches in plan order), so every stored value
  is a pure function of its key and a resumed run gets the same bits whether it computes or loads.
* **How exact**: every logit in fp16 as an offset from the row's fp32 maximum (2·C+4 bytes a row),
  unless the method declares ``teacher_softmax_only`` (its losses read the teachers' logits only as
  softmax(z/τ) at ``hyperparams.temperature``), τ is 1 and there are more than
  ``FULL_LOGITS_MAX_CLASSES`` classes: then FKD's top-k, the ``TOP_K`` largest logits and one fill
  logit for the rest (exact top-k probabilities, the remaining mass spread evenly). Any other τ, a
  learned τ, standardised logits or a method that reads raw logits (MEAL V2's discriminator) keeps
  every logit. The store's measured error is reported: ``teacher_cache/kl_error`` (mean
  KL(teacher ‖ stored) per row at the method's τ, or 1) and ``teacher_cache/max_logit_error``.
* **Where**: safetensors under ``KDCORE_TEACHER_STORE`` or ``<work_dir>/teacher-outputs``, named by
  a digest of the teacher file's sha256 and settings, the dataset's bytes, the view (plain, or seed,
  crop padding, epoch and the epoch's batches), the storage format and the precision.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kdcore.checkpoint import sha256_file
from kdcore.data.images import ImageSet
from kdcore.data.loader import Batch, TrainingBatches
from kdcore.spec import JobSpec, TeacherSource

FULL_LOGITS_MAX_CLASSES = 100
TOP_K = 10
FILL_BATCH = 256
STORE_VERSION = 2
STORE_ENV = "KDCORE_TEACHER_STORE"
STORE_MAX_BYTES_ENV = "KDCORE_TEACHER_STORE_MAX_BYTES"
STORE_MAX_BYTES = 8 * 1024**3
PLAIN = "plain"
Slot = int | str  # an epoch whose views are tabled, or PLAIN


def teacher_store_dir(work_dir: Path) -> Path:
    """Where filled slots persist: a shared folder from ``KDCORE_TEACHER_STORE``, else the job's work dir."""
    return Path(os.environ.get(STORE_ENV) or Path(work_dir) / "teacher-outputs")


class LogitCodec:
    """How one row of logits is stored: fp16 offsets from the row's largest logit (kept in fp32), all or top-k.

    Centring first makes fp16's error smallest where softmax looks (the largest logits) and keeps
    the largest logit exact; adding the fp32 maximum back restores raw logits for methods that use them.
    """

    def __init__(self, num_classes: int, top_k: int | None = None) -> None:
        self.num_classes = num_classes
        self.top_k = top_k

    def describe(self) -> str:
        return "fp16" if self.top_k is None else f"top{self.top_k}-fp16"

    def _index_dtype(self) -> torch.dtype:
        return torch.int16 if self.num_classes <= torch.iinfo(torch.int16).max else torch.int32

    def row_bytes(self) -> int:
        if self.top_k is None:
            return 4 + 2 * self.num_classes
        return 8 + self.top_k * (2 + torch.empty(0, dtype=self._index_dtype()).element_size())

    def empty(self, rows: int, device: torch.device) -> dict[str, Tensor]:
        parts = {"max": torch.zeros(rows, dtype=torch.float32, device=device)}
        if self.top_k is None:
            parts["logits"] = torch.zeros(rows, self.num_classes, dtype=torch.float16, device=device)
            return parts
        parts["top_logits"] = torch.zeros(rows, self.top_k, dtype=torch.float16, device=device)
        parts["top_classes"] = torch.zeros(rows, self.top_k, dtype=self._index_dtype(), device=device)
        parts["fill"] = torch.zeros(rows, dtype=torch.float32, device=device)
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
        return {"max": peak, "top_logits": top.values.half(), "top_classes": top.indices.to(self._index_dtype()), "fill": fill}

    def decode(self, parts: dict[str, Tensor]) -> Tensor:
        peak = parts["max"][:, None]
        if self.top_k is None:
            return parts["logits"].float() + peak
        rows = peak.shape[0]
        out = parts["fill"][:, None].expand(rows, self.num_classes).clone()
        return out.scatter_(1, parts["top_classes"].long(), parts["top_logits"].float()).add_(peak)


def fixed_temperature(hparams: Any) -> float | None:
    """The method's temperature when it is one fixed number; ``None`` when learned, absent or anything else."""
    value = getattr(hparams, "temperature", None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def choose_codec(method: type, hparams: Any, num_classes: int) -> LogitCodec:
    """Top-k only where it is exact enough: a declared softmax-only reader at τ 1, many classes, raw logits."""
    softmax_only = getattr(method, "teacher_softmax_only", False) is True
    standardised = bool(getattr(hparams, "logit_standardization", False))
    if num_classes > FULL_LOGITS_MAX_CLASSES and softmax_only and not standardised and fixed_temperature(hparams) == 1.0:
        return LogitCodec(num_classes, TOP_K)
    return LogitCodec(num_classes)


@dataclass
class StoreError:
    """Running measure of how far stored logits are from the teacher's: KL sum, rows, largest logit error."""

    kl_sum: float = 0.0
    rows: int = 0
    max_logit_error: float = 0.0

    def add(self, other: StoreError) -> None:
        self.kl_sum += other.kl_sum
        self.rows += other.rows
        self.max_logit_error = max(self.max_logit_error, other.max_logit_error)

    @classmethod
    def measure(cls, logits: Tensor, stored: Tensor, temperature: float) -> StoreError:
        target = F.log_softmax(logits.float() / temperature, dim=1)
        kl = F.kl_div(F.log_softmax(stored / temperature, dim=1), target, reduction="sum", log_target=True)
        # a KL is never negative; one of two nearly equal distributions can round to a few 1e-9 below zero
        return cls(max(0.0, float(kl)), len(logits), float((stored - logits.float()).abs().max()) if len(logits) else 0.0)

    def metadata(self) -> dict[str, str]:
        return {"kl_sum": repr(self.kl_sum), "rows": str(self.rows), "max_logit_error": repr(self.max_logit_error)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None) -> StoreError | None:
        if metadata is None:
            return None
        try:
            return cls(float(metadata["kl_sum"]), int(metadata["rows"]), float(metadata["max_logit_error"]))
        except (KeyError, TypeError, ValueError):
            return None


def _file_source(teacher: nn.Module) -> TeacherSource | None:
    """Where ``teacher`` was loaded from, when that is a file on disk (a :class:`Teacher` keeps its ``source``)."""
    source = getattr(teacher, "source", None)
    return source if source is not None and Path(source.path).is_file() else None


def loaded_from_file(teacher: nn.Module) -> bool:
    return _file_source(teacher) is not None


def teacher_identity(teacher: nn.Module) -> str | None:
    """The teacher file's sha256 plus how it is read; ``None`` for a module not loaded from a file."""
    source = _file_source(teacher)
    if source is None:
        return None
    settings = source.model_dump(mode="json", exclude={"path", "name"})
    return json.dumps({"sha256": sha256_file(Path(source.path)), **settings}, sort_keys=True)


def dataset_digest(data: ImageSet) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(list(data.images.shape)).encode())
    digest.update(data.images.contiguous().numpy().data)
    digest.update(data.labels.contiguous().numpy().data)
    return digest.hexdigest()


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:40]


class TeacherOutputCache:
    """Per teacher, the table ``[N, ...]`` of the slot in use (plain images, or one epoch's views).

    ``reason`` set means reuse is off: :meth:`logits` runs the teacher on every batch, and the
    metrics say so (``teacher_cache/reuse`` 0).
    """

    def __init__(
        self,
        data: ImageSet,
        batches: TrainingBatches,
        recipe: str,
        num_teachers: int,
        codec: LogitCodec,
        temperature: float = 1.0,
        device: torch.device | None = None,
        store: Path | None = None,
        precision: torch.dtype | None = None,
        check: Callable[[], None] | None = None,
        reason: str | None = None,
    ) -> None:
        self.data = data
        self.batches = batches
        self.recipe = recipe
        self.codec = codec
        self.temperature = temperature
        self.device = device or torch.device("cpu")
        self.store = store
        self.precision = precision
        self.check = check
        self.reason = reason
        self.tables: list[tuple[Slot | None, dict[str, Tensor] | None]] = [(None, None)] * num_teachers
        self.error = StoreError()
        self._identities: dict[int, str | None] = {}
        self._data_digest: str | None = None
        self._epoch_keys: dict[int, str | None] = {}
        self.teacher_samples = 0
        self.served_rows = 0
        self.loaded_rows = 0
        self.computed_rows = 0

    @property
    def enabled(self) -> bool:
        return self.reason is None

    def logits(self, teacher_index: int, teacher: nn.Module, batch: Batch) -> Tensor:
        """The teacher's logits for ``batch``: from the slot's table when reuse is on, else freshly computed."""
        slot = self._slot_for_epoch(batch.epoch)
        if slot is None:
            self.teacher_samples += len(batch.indices)
            with torch.inference_mode(), self._autocast():
                return teacher(batch.images).float()
        table = self._table(teacher_index, teacher, slot)
        rows = batch.indices.to(self.device, non_blocking=True)
        self.served_rows += len(batch.indices)
        return self.codec.decode({name: part[rows] for name, part in table.items()}).to(batch.images.device)

    def prepare(self, epoch: int, teachers: list[nn.Module]) -> None:
        """Fill (or load) each teacher's table for ``epoch`` before its first step, so the fill is a phase of its own, not part of a step."""
        slot = self._slot_for_epoch(epoch)
        if slot is not None:
            for index, teacher in enumerate(teachers):
                self._table(index, teacher, slot)

    def metrics(self) -> dict[str, float]:
        """What the job reports about reuse: whether it is on, how much came from the store, how exact it is."""
        values = {"teacher_cache/reuse": float(self.enabled)}
        if self.loaded_rows + self.computed_rows:
            values["teacher_cache/from_store"] = self.loaded_rows / (self.loaded_rows + self.computed_rows)
        if self.error.rows:
            values["teacher_cache/kl_error"] = self.error.kl_sum / self.error.rows
            values["teacher_cache/max_logit_error"] = self.error.max_logit_error
        return values

    def _slot_for_epoch(self, epoch: int | None) -> Slot | None:
        """The table that serves ``epoch``: the plain images without augmentation, else that epoch's views (None where a sample repeats)."""
        if not self.enabled:
            return None
        if self.recipe == "none":
            return PLAIN
        if epoch is None or self._epoch_key(epoch) is None:
            return None
        return epoch

    def _epoch_key(self, epoch: int) -> str | None:
        """What identifies an epoch's views: its batches (and this rank's share); ``None`` when a sample repeats."""
        if epoch not in self._epoch_keys:
            steps = self.batches.plan.batches(epoch)
            order = torch.cat(steps)
            stream = hashlib.sha256(order.numpy().tobytes())
            stream.update(json.dumps([[len(s) for s in steps], getattr(self.batches, "rank", 0), getattr(self.batches, "ranks", 1)]).encode())
            unique = len(torch.unique(order)) == len(order)
            self._epoch_keys = {epoch: stream.hexdigest()[:40] if unique else None}
        return self._epoch_keys[epoch]

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision)

    def _table(self, teacher_index: int, teacher: nn.Module, slot: Slot) -> dict[str, Tensor]:
        held, table = self.tables[teacher_index]
        if held == slot and table is not None:
            return table
        table = self.codec.empty(len(self.data), self.device)
        path = self._store_path(teacher_index, teacher, slot)
        if path is None or not self._load(path, table):
            error = StoreError()
            for rows, images in self._inputs(slot):
                if self.check is not None:
                    self.check()
                with torch.inference_mode(), self._autocast():
                    out = teacher(images)
                parts = self.codec.encode(out)
                error.add(StoreError.measure(out, self.codec.decode(parts), self.temperature))
                rows = rows.to(self.device)
                for name, value in parts.items():
                    table[name][rows] = value.to(self.device, table[name].dtype)
                self.teacher_samples += len(rows)
                self.computed_rows += len(rows)
            self.error.add(error)
            if path is not None:
                self._save(path, table, error)
        self.tables[teacher_index] = (slot, table)
        return table

    def _inputs(self, slot: Slot) -> Iterator[tuple[Tensor, Tensor]]:
        """The teacher's inputs for ``slot`` with their dataset rows: the very images training will show."""
        if slot == PLAIN:
            for start in range(0, len(self.data), FILL_BATCH):
                rows = torch.arange(start, min(start + FILL_BATCH, len(self.data)))
                yield rows, self.data.images[rows].to(self.device).float().div_(255.0)
            return
        for batch in self.batches.epoch(int(slot)):
            yield batch.indices, batch.images

    def _store_path(self, teacher_index: int, teacher: nn.Module, slot: Slot) -> Path | None:
        if self.store is None:
            return None
        if teacher_index not in self._identities:
            self._identities[teacher_index] = teacher_identity(teacher)
        identity = self._identities[teacher_index]
        if identity is None:
            return None
        if self._data_digest is None:
            self._data_digest = dataset_digest(self.data)
        view = PLAIN if slot == PLAIN else f"{self.recipe}-seed{self.batches.plan.seed}-epoch{slot}-{self._epoch_key(int(slot))}"
        key = {
            "version": STORE_VERSION,
            "teacher": identity,
            "data": self._data_digest,
            "input": list(self.data.images.shape[1:]),
            "view": view,
            "codec": self.codec.describe(),
            "precision": str(self.precision or torch.float32),
        }
        return self.store / f"{_digest(key)}.safetensors"

    def _load(self, path: Path, table: dict[str, Tensor]) -> bool:
        """Read a stored slot; a missing, torn or mismatched file is ignored (the slot is recomputed)."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device=str(self.device)) as handle:
                stored = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118  (safe_open has no iterator)
                error = StoreError.from_metadata(handle.metadata())
        except (OSError, RuntimeError, ValueError):
            return False
        if error is None or stored.keys() != table.keys() or any(stored[k].shape != table[k].shape or stored[k].dtype != table[k].dtype for k in table):
            return False
        for name, value in stored.items():
            table[name].copy_(value)
        self.error.add(error)
        self.loaded_rows += error.rows
        return True

    def _save(self, path: Path, table: dict[str, Tensor], error: StoreError) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({name: part.contiguous() for name, part in table.items()}, str(temp), metadata=error.metadata())
        os.replace(temp, path)


def reuse_refusal(augment: bool, needs_teacher_features: bool, storable: bool, store_bytes: int) -> str | None:
    """Why teacher outputs cannot be reused without changing training or gaining nothing; ``None`` when they can."""
    if needs_teacher_features:
        return "the method reads teacher features, which are computed live"
    if augment and not storable:
        return "each epoch's views are seen once, and a teacher not loaded from a file cannot be stored for later jobs"
    limit = int(os.environ.get(STORE_MAX_BYTES_ENV) or STORE_MAX_BYTES)
    if store_bytes > limit:
        return f"the run would store {store_bytes / 1e9:.1f} GB of teacher outputs, above {STORE_MAX_BYTES_ENV}={limit}"
    return None


def cache_for_run(
    spec: JobSpec,
    method: type,
    hparams: Any,
    data: ImageSet,
    batches: TrainingBatches,
    teachers: list[nn.Module],
    device: torch.device,
    precision: torch.dtype | None = None,
    check: Callable[[], None] | None = None,
) -> TeacherOutputCache:
    """The cache a job's distiller reads teacher logits through; switched off (with its reason) where reuse would not pay."""
    config = spec.training
    codec = choose_codec(method, hparams, data.num_classes)
    augmented = config.augment != "none"
    store_bytes = (config.epochs if augmented else 1) * len(data) * codec.row_bytes() * len(teachers)
    reason = "teacher_cache is off" if config.teacher_cache == "off" else None
    if reason is None:
        storable = all(loaded_from_file(t) for t in teachers)
        reason = reuse_refusal(augmented, bool(getattr(method, "needs_teacher_features", False)), storable, store_bytes)
    temperature = fixed_temperature(hparams) or 1.0
    store = teacher_store_dir(spec.work_dir)
    return TeacherOutputCache(data, batches, config.augment, len(teachers), codec, temperature, device, store, precision, check, reason)
