"""Teacher uploads: parse the form, load and run the model once, store it, record it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.core.config import Settings
from api.errors import ApiError
from api.ids import new_id
from api.models import TeacherRow
from api.storage import get_store
from kdcore.errors import BadTeacher
from kdcore.spec import CODE_TEACHER_FORMATS, TeacherSource

FORMATS = ("safetensors", "state_dict", "onnx", "torchscript", "exported_program")
SUFFIX = {"safetensors": ".safetensors", "state_dict": ".pt", "onnx": ".onnx", "torchscript": ".pt", "exported_program": ".pt2"}
CODE_MODEL_TIMEOUT_S = 120


def parse_floats(field: str, text: str | None, count: int | None = None) -> list[float] | None:
    if text is None or text.strip() == "":
        return None
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise ApiError(422, f"{field} must be comma-separated numbers such as 0.5,0.5,0.5; got {text!r}") from None
    if count is not None and len(values) != count:
        raise ApiError(422, f"{field} needs {count} values (one per input channel); got {len(values)}")
    return values


def parse_input_size(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").strip("[]()").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 < v <= 4096 for v in values) or values[0] > 16:
        raise ApiError(422, f"input_size must be C,H,W such as 3,32,32 (C ≤ 16, H and W ≤ 4096); got {text!r}")
    return values  # type: ignore[return-value]


def check_format(fmt: str, arch: str | None, settings: Settings) -> None:
    if fmt not in FORMATS:
        raise ApiError(422, f"format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    if fmt in CODE_TEACHER_FORMATS and not settings.allow_code_models:
        raise ApiError(422, f"format {fmt!r} is a code-carrying model format (PyTorch treats it as a program) and this server refuses it; upload safetensors weights with an 'arch' name or an ONNX file, or ask the operator to set DISTILLERY_ALLOW_CODE_MODELS=1")
    if fmt in ("safetensors", "state_dict") and not arch:
        raise ApiError(422, f"format {fmt!r} needs 'arch': a timm or torchvision model name or a kdcore one such as cifar_resnet32x4")


def inspect_teacher(source: TeacherSource) -> tuple[int, bool]:
    """(params, supports_features). Code formats are loaded in a separate, time-limited process."""
    if source.format not in CODE_TEACHER_FORMATS:
        from kdcore.models.loading import check_teacher

        loaded = check_teacher(source)
        return loaded.params, loaded.supports_features
    try:
        done = subprocess.run([sys.executable, "-m", "kdcore", "inspect-teacher", source.model_dump_json()], capture_output=True, text=True, timeout=CODE_MODEL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BadTeacher(f"loading the model took longer than {CODE_MODEL_TIMEOUT_S} s") from None
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {"error": {"message": done.stderr.strip()[-300:] or "the model could not be loaded"}}
    if "error" in result:
        raise BadTeacher(result["error"]["message"])
    return int(result["params"]), False


def create_teacher(session: Session, tenant: str, path: Path, size: int, digest: str, fmt: str, arch: str | None, num_classes: int, input_size: tuple[int, int, int], mean, std, name: str | None) -> TeacherRow:
    source = TeacherSource(path=path, format=fmt, arch=arch, num_classes=num_classes, input_size=input_size, mean=mean, std=std, name=name)
    params, supports_features = inspect_teacher(source)
    teacher_id = new_id("tch")
    key = f"tenants/{tenant}/teachers/{teacher_id}/model{SUFFIX[fmt]}"
    store = get_store()
    store.put_file(key, path)
    row = TeacherRow(id=teacher_id, tenant_id=tenant, name=name, format=fmt, arch=arch, num_classes=num_classes, input_size=list(input_size),
                     mean=mean, std=std, params=params, sha256=digest, size_bytes=size, storage_key=key, supports_features=supports_features)
    try:
        session.add(row)
        session.commit()
    except Exception:
        session.rollback()
        store.delete_prefix(f"tenants/{tenant}/teachers/{teacher_id}")
        raise
    return row


def get_teacher(session: Session, tenant: str, teacher_id: str) -> TeacherRow | None:
    return session.scalar(select(TeacherRow).where(TeacherRow.id == teacher_id, TeacherRow.tenant_id == tenant))
