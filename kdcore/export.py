"""Export the student as safetensors, TorchScript and ONNX, each checked against the eager model.

Every exported file takes float32 ``[N,C,H,W]`` in [0,1] at the job's input size and returns logits:
preprocessing (normalisation) is inside. A file whose outputs drift from the eager model's beyond
tolerance is not published.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdcore.checkpoint import sha256_file
from kdcore.errors import ExportMismatch
from kdcore.models.preprocess import PreprocessedModel
from kdcore.models.registry import create_model

KIND_BY_FORMAT = {"safetensors": "student_safetensors", "torchscript": "student_torchscript", "onnx": "student_onnx"}
TOLERANCE = 1e-3


@dataclass
class ExportedFile:
    kind: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)


def _relative_error(reference: torch.Tensor, other: torch.Tensor) -> float:
    return float((reference - other).abs().max() / reference.abs().max().clamp_min(1e-6))


def student_metadata(
    arch: str, num_classes: int, input_size: tuple[int, int, int], mean: Any, std: Any, arch_kwargs: Mapping[str, Any] | None = None
) -> dict[str, str]:
    meta = {
        "arch": arch,
        "num_classes": str(num_classes),
        "input_size": json.dumps(list(input_size)),
        "mean": json.dumps(list(mean) if mean is not None else None),
        "std": json.dumps(list(std) if std is not None else None),
        "input_range": "[0,1]",
    }
    if arch_kwargs:
        meta["arch_kwargs"] = json.dumps(dict(arch_kwargs), sort_keys=True)
    return meta


def describe_student(
    student: PreprocessedModel, arch: str, num_classes: int, input_size: tuple[int, int, int], arch_kwargs: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The metadata every exported student file carries (and every checkpoint, so its student can be exported later)."""
    normalize = student.preprocess.normalize
    mean = student.preprocess.mean.flatten().tolist() if normalize else None
    std = student.preprocess.std.flatten().tolist() if normalize else None
    return student_metadata(arch, num_classes, input_size, mean, std, arch_kwargs)


@contextmanager
def torchscript_quietly() -> Iterator[None]:
    """Tracing, saving and loading TorchScript without the warnings that say nothing about the job.

    TorchScript is how a student ships without Python code, and PyTorch 2.x marks ``torch.jit``
    deprecated (a FutureWarning on every trace, save and load). While tracing, the student's own
    ``Preprocess`` warns that its input-shape checks become constants: that is the contract (an
    exported student takes the job's input size), so those are dropped, while a TracerWarning
    from the architecture itself (data-dependent control flow) still shows. The ONNX export uses
    the TorchScript-based exporter on purpose (``dynamo=False``), whose deprecation notice goes too.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"kdcore\.models\.preprocess")
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning, module=r"torch\.onnx")
        yield


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with torchscript_quietly():
        return torch.jit.load(str(path)).eval()


def load_student_safetensors(path: Path) -> PreprocessedModel:
    """Rebuild an exported student (architecture + preprocessing) from its safetensors file alone."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    input_size = tuple(json.loads(meta["input_size"]))
    arch_kwargs = json.loads(meta.get("arch_kwargs", "{}"))
    model = create_model(meta["arch"], num_classes=int(meta["num_classes"]), in_chans=input_size[0], arch_kwargs=arch_kwargs)
    model.load_state_dict(load_file(str(path)))
    wrapped = PreprocessedModel(model, input_size, json.loads(meta["mean"]), json.loads(meta["std"]))
    return wrapped.eval()


def export_student(
    student: PreprocessedModel,
    arch: str,
    num_classes: int,
    input_size: tuple[int, int, int],
    formats: list[str],
    out_dir: Path,
    arch_kwargs: Mapping[str, Any] | None = None,
) -> list[ExportedFile]:
    out_dir.mkdir(parents=True, exist_ok=True)
    student = student.cpu().float().eval()
    probe = torch.rand(4, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = student(probe)
    meta = describe_student(student, arch, num_classes, input_size, arch_kwargs)
    files: list[ExportedFile] = []
    for fmt in formats:
        if fmt == "safetensors":
            files.append(_export_safetensors(student, meta, probe, reference, out_dir / "student.safetensors"))
        elif fmt == "torchscript":
            files.append(_export_torchscript(student, meta, probe, reference, out_dir / "student.torchscript.pt"))
        elif fmt == "onnx":
            files.append(_export_onnx(student, meta, probe, reference, out_dir / "student.onnx"))
    return files


def _checked(kind: str, path: Path, meta: dict[str, str], error: float) -> ExportedFile:
    if not error <= TOLERANCE:
        raise ExportMismatch(f"the {kind} export differs from the trained model by {error:.2e} (relative), above {TOLERANCE}")
    return ExportedFile(kind, path, {**meta, "max_relative_error": f"{error:.3e}"})


def _export_safetensors(student: PreprocessedModel, meta: dict[str, str], probe, reference, path: Path) -> ExportedFile:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in student.model.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    with torch.inference_mode():
        error = _relative_error(reference, load_student_safetensors(path)(probe))
    return _checked("student_safetensors", path, meta, error)


def _export_torchscript(student: nn.Module, meta: dict[str, str], probe, reference, path: Path) -> ExportedFile:
    with torch.inference_mode(False), torch.no_grad(), torchscript_quietly():
        traced = torch.jit.trace(student, probe, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"distillery.json": json.dumps(meta)})
        loaded = torch.jit.load(str(path))
        error = _relative_error(reference, loaded(probe))
    return _checked("student_torchscript", path, meta, error)


def _export_onnx(student: nn.Module, meta: dict[str, str], probe, reference, path: Path) -> ExportedFile:
    import onnx
    import onnxruntime as ort

    with torch.no_grad(), torchscript_quietly():
        torch.onnx.export(
            student,
            (probe,),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
            opset_version=17,
        )
    graph = onnx.load(str(path))
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"images": probe.numpy().astype(np.float32)})[0]
    error = _relative_error(reference, torch.from_numpy(out))
    return _checked("student_onnx", path, meta, error)
