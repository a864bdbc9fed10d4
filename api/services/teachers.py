"""Teacher uploads: parse the form, load and run the model once, store it, record it.

Code-carrying formats (TorchScript, ``.pt2``) are loaded in a child process that has no network
(a fresh network namespace), an address-space and CPU-time cap, a wall-clock limit, no inherited
descriptors or credentials (a bare environment, a scratch working folder), and whose output is read
only as far as its last 64 KiB. If the host cannot give the child its own network namespace the
upload is refused (503) rather than loaded without that isolation.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.services.uploads import ensure_storage_quota
from core.config import Settings, get_settings
from core.ids import new_id
from core.models import TeacherRow
from core.storage import get_store, record_or_discard
from kdcore.errors import BadTeacher
from kdcore.spec import CODE_TEACHER_FORMATS, ArchKwargs, TeacherSource

FORMATS = ("safetensors", "state_dict", "onnx", "torchscript", "exported_program")
SUFFIX = {"safetensors": ".safetensors", "state_dict": ".pt", "onnx": ".onnx", "torchscript": ".pt", "exported_program": ".pt2"}
CODE_MODEL_TIMEOUT_S = 120
CODE_MODEL_ADDRESS_SPACE_BYTES = 12 * 1024**3  # importing torch alone maps ~3.6 GB; the rest is for the model
OUTPUT_TAIL_BYTES = 64 * 1024
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_LIBC = ctypes.CDLL(None, use_errno=True)
_ARCH_KWARGS = TypeAdapter(ArchKwargs)


def parse_floats(field: str, given: str | list[float] | None, count: int | None = None) -> list[float] | None:
    """Comma-separated numbers (a form field) or a JSON list."""
    if given is None or (isinstance(given, str) and given.strip() == ""):
        return None
    try:
        values = [float(v) for v in (given.replace(" ", "").split(",") if isinstance(given, str) else given)]
    except ValueError:
        raise ApiError(422, f"{field} must be comma-separated numbers such as 0.5,0.5,0.5; got {given!r}") from None
    if count is not None and len(values) != count:
        raise ApiError(422, f"{field} needs {count} values (one per input channel); got {len(values)}")
    return values


def parse_input_size(given: str | list[int]) -> tuple[int, int, int]:
    """``C,H,W`` (a form field) or a JSON list ``[C, H, W]``."""
    try:
        values = tuple(int(v) for v in (given.replace(" ", "").strip("[]()").split(",") if isinstance(given, str) else given))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 < v <= 4096 for v in values) or values[0] > 16:
        raise ApiError(422, f"input_size must be C,H,W such as 3,32,32 (C ≤ 16, H and W ≤ 4096); got {given!r}")
    return values


def check_format(fmt: str, arch: str | None, settings: Settings) -> None:
    if fmt not in FORMATS:
        raise ApiError(422, f"format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    if fmt in CODE_TEACHER_FORMATS and not settings.allow_code_models:
        raise ApiError(
            422,
            f"format {fmt!r} is a code-carrying model format (PyTorch treats it as a program) and this server refuses it; upload safetensors weights with an 'arch' name or an ONNX file, or ask the operator to set DISTILLERY_ALLOW_CODE_MODELS=1",
        )
    if fmt in ("safetensors", "state_dict") and not arch:
        raise ApiError(422, f"format {fmt!r} needs 'arch': a timm or torchvision model name or a kdcore one such as cifar_resnet32x4")


def checked_description(
    settings: Settings, fmt: str, arch: str | None, input_size: str | list[int], mean: str | list[float] | None, std: str | list[float] | None
) -> tuple[tuple[int, int, int], list[float] | None, list[float] | None]:
    """(input_size, mean, std) from an upload's form or a JSON body, checked before any byte of the model is read."""
    check_format(fmt, arch, settings)
    size_chw = parse_input_size(input_size)
    mean_v = parse_floats("mean", mean, size_chw[0])
    std_v = parse_floats("std", std, size_chw[0])
    if (mean_v is None) != (std_v is None):
        raise ApiError(422, "give both mean and std, or neither")
    if std_v is not None and any(v <= 0 for v in std_v):
        raise ApiError(422, "std values must be positive")
    return size_chw, mean_v, std_v


def checked_arch_kwargs(given: str | Mapping[str, Any] | None, fmt: str) -> dict[str, Any]:
    """The constructor arguments of a weights teacher's ``arch``: a JSON object (a form field) or a mapping, on the allow-list."""
    if given is None or (isinstance(given, str) and given.strip() == ""):
        return {}
    example = '{"img_size": 32, "patch_size": 4}'
    try:
        value = json.loads(given) if isinstance(given, str) else dict(given)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ApiError(422, f"arch_kwargs must be a JSON object such as {example}; got {given!r}")
    try:
        value = _ARCH_KWARGS.validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("arch_kwargs", *first["loc"]))
        raise ApiError(422, f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    if value and fmt not in ("safetensors", "state_dict"):
        raise ApiError(422, f"arch_kwargs build the 'arch' of a safetensors or state_dict teacher; a {fmt!r} file holds its own architecture")
    return value


class IsolationUnavailable(Exception):
    """The host refuses to give a child process its own network namespace."""


def _confine(address_space_bytes: int, cpu_seconds: int) -> None:
    """Runs in the child between fork and exec: caps first, then a private, empty network namespace."""
    resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if _LIBC.unshare(CLONE_NEWNET) != 0 and _LIBC.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) is not permitted")


def _tail(handle) -> str:  # noqa: ANN001
    handle.seek(max(0, os.fstat(handle.fileno()).st_size - OUTPUT_TAIL_BYTES))
    return handle.read().decode(errors="replace")


def run_isolated(argv: list[str], timeout_s: float, address_space_bytes: int = CODE_MODEL_ADDRESS_SPACE_BYTES) -> tuple[int, str, str]:
    """(returncode, stdout tail, stderr tail) of ``argv`` run confined; raises TimeoutExpired or IsolationUnavailable."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="isolated-") as scratch, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=scratch,
                env={**env, "HOME": scratch},
                timeout=timeout_s,
                preexec_fn=lambda: _confine(address_space_bytes, int(timeout_s) + 5),
                check=False,
            )
        except subprocess.SubprocessError as exc:
            if isinstance(exc, subprocess.TimeoutExpired):
                raise
            raise IsolationUnavailable(str(exc)) from exc
        return done.returncode, _tail(out), _tail(err)


def inspect_teacher(source: TeacherSource, timeout_s: float = CODE_MODEL_TIMEOUT_S) -> tuple[int, bool]:
    """(params, supports_features). Code formats are loaded and run once in a confined child process."""
    if source.format not in CODE_TEACHER_FORMATS:
        from kdcore.models.loading import check_teacher

        loaded = check_teacher(source)
        return loaded.params, loaded.supports_features
    source = source.model_copy(update={"path": Path(source.path).resolve()})
    try:
        code, stdout, stderr = run_isolated([sys.executable, "-m", "kdcore", "inspect-teacher", source.model_dump_json()], timeout_s)
    except subprocess.TimeoutExpired:
        raise BadTeacher(f"loading and running the model took longer than {timeout_s:.0f} s") from None
    except IsolationUnavailable as exc:
        raise ApiError(
            503,
            f"this server cannot load code-carrying models in isolation ({exc}); the operator must allow network namespaces (CAP_SYS_ADMIN or user namespaces) or unset DISTILLERY_ALLOW_CODE_MODELS",
        ) from None
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if code == 0 and isinstance(result.get("params"), int):
        return result["params"], False
    if code == 2 and isinstance(result.get("error"), dict):
        raise BadTeacher(str(result["error"].get("message", "the model could not be loaded"))[:500])
    if code < 0:
        raise BadTeacher(f"the model's loader was killed by signal {-code} (over the {CODE_MODEL_ADDRESS_SPACE_BYTES >> 30} GiB memory or CPU-time cap?)")
    raise BadTeacher(f"the model could not be loaded (exit status {code}): {stderr.strip()[-300:] or 'no message'}")


def create_teacher(
    session: Session,
    tenant: str,
    path: Path,
    size: int,
    digest: str,
    fmt: str,
    arch: str | None,
    num_classes: int,
    input_size: tuple[int, int, int],
    mean,
    std,
    name: str | None,
    uri: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
) -> TeacherRow:
    """Load and run the model once, store it, record it; a model that fails the checks is refused with 422 and the reason."""
    ensure_storage_quota(session, get_settings(), tenant, size)
    source = TeacherSource(
        path=path, format=fmt, arch=arch, arch_kwargs=dict(arch_kwargs or {}), num_classes=num_classes, input_size=input_size, mean=mean, std=std, name=name
    )
    try:
        params, supports_features = inspect_teacher(source)
    except BadTeacher as exc:
        raise ApiError(422, f"the teacher was refused: {exc.message}", type_="urn:distillery:bad_teacher") from exc
    teacher_id = new_id("tch")
    key = f"tenants/{tenant}/teachers/{teacher_id}/model{SUFFIX[fmt]}"
    store = get_store()
    store.put_file(key, path)
    row = TeacherRow(
        id=teacher_id,
        tenant_id=tenant,
        name=name,
        format=fmt,
        arch=arch,
        arch_kwargs=_ARCH_KWARGS.dump_python(source.arch_kwargs, mode="json") or None,
        num_classes=num_classes,
        input_size=list(input_size),
        mean=mean,
        std=std,
        params=params,
        sha256=digest,
        size_bytes=size,
        storage_key=key,
        supports_features=supports_features,
        uri=uri,
    )
    return record_or_discard(session, row, store, f"tenants/{tenant}/teachers/{teacher_id}")


def get_teacher(session: Session, tenant: str, teacher_id: str) -> TeacherRow | None:
    return session.scalar(select(TeacherRow).where(TeacherRow.id == teacher_id, TeacherRow.tenant_id == tenant))
