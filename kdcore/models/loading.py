"""Load uploaded teachers without running uploaded code.

* ``safetensors``: a state dict in a format that cannot hold code, into a registered architecture.
* ``state_dict``: ``torch.load(weights_only=True)`` only — the restricted unpickler refuses any
  pickle that would import or call something.
* ``onnx``: a graph run by onnxruntime (logits only); a tensor anywhere in the model (initializers,
  node attributes, subgraphs, functions) that points at external data is refused.
* ``torchscript`` / ``exported_program``: PyTorch treats these as code; callers decide whether the
  operator allowed them (``DISTILLERY_ALLOW_CODE_MODELS``) and isolate the load. Even then no
  Python pickle inside them runs: a TorchScript archive's pickles may only name TorchScript/torch
  types (its C++ unpickler never calls Python), and ``torch.export.load`` — which falls back to the
  full unpickler for sample inputs and pickled constants — runs with weights-only loading forced.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kdcore.errors import BadTeacher
from kdcore.models.features import supports_features
from kdcore.models.preprocess import Preprocess, PreprocessedModel
from kdcore.models.registry import create_model, is_model
from kdcore.spec import TeacherSource

MAX_SAFETENSORS_HEADER_BYTES = 64 * 1024 * 1024
TORCHSCRIPT_PICKLE_GLOBALS = ("__torch__.", "torch.", "collections.OrderedDict")


def _first_line(exc: BaseException) -> str:
    """The line of an exception's message that says what went wrong (the last one for a TorchScript traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return (lines[-1] if lines[0].startswith("The following operation failed in the TorchScript interpreter") else lines[0])[:300]


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` block of a safetensors file, after checking its header is sane."""
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise BadTeacher("the file is too short to be safetensors")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > MAX_SAFETENSORS_HEADER_BYTES or header_len > path.stat().st_size - 8:
            raise BadTeacher(
                "the file is not a safetensors file (its first 8 bytes should give the length of its JSON header, and do not); "
                "upload what safetensors.torch.save_file wrote, or set 'format' to what the file is"
            )
        try:
            header = json.loads(handle.read(header_len))
        except ValueError as exc:
            raise BadTeacher(f"the safetensors header is not valid JSON ({exc}); is the file really safetensors?") from exc
    return dict(header.get("__metadata__") or {})


def _looks_like_torch_save(path: Path) -> bool:
    """A zip archive (torch.save's format since 1.6) or a pickle (its legacy format starts with the PROTO opcode)."""
    with open(path, "rb") as handle:
        first = handle.read(1)
    return zipfile.is_zipfile(path) or first == pickle.PROTO


def _read_state_dict(path: Path, fmt: str) -> dict[str, Tensor]:
    if fmt == "safetensors":
        from safetensors.torch import load_file

        read_safetensors_metadata(path)
        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises several error types for malformed files
            raise BadTeacher(f"the file is not a readable safetensors state dict: {exc}") from exc
    else:
        if not _looks_like_torch_save(path):
            raise BadTeacher(
                "the file is not a PyTorch .pt/.pth file (torch.save writes a zip archive or a pickle, and this is neither); "
                "save the weights with torch.save(model.state_dict(), path), or set 'format' to what the file is"
            )
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BadTeacher(
                "the file could not be read as a weights-only state dict (code-carrying pickles are refused; "
                f"save with torch.save(model.state_dict(), path)): {_first_line(exc)}"
            ) from exc
        held = loaded
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(held, dict) and key in held and isinstance(held[key], dict):
                held = held[key]
        if not isinstance(held, dict) or not all(isinstance(v, Tensor) for v in held.values()):
            raise BadTeacher("the .pt file does not hold a state dict (a mapping of parameter names to tensors)")
        state = held
    return {k.removeprefix("module."): v for k, v in state.items()}


def build_from_state_dict(arch: str, state: dict[str, Tensor], num_classes: int, in_chans: int, arch_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    if not is_model(arch):
        raise BadTeacher(f"unknown architecture {arch!r}: give a timm or torchvision model name or a kdcore one such as cifar_resnet32x4")
    try:
        model = create_model(arch, num_classes=num_classes, in_chans=in_chans, arch_kwargs=arch_kwargs)
    except ValueError as exc:
        raise BadTeacher(str(exc)) from exc
    built_with = f"architecture {arch!r} with num_classes={num_classes}" + (f" and arch_kwargs {dict(arch_kwargs)}" if arch_kwargs else "")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        mismatch = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line][:2]
        raise BadTeacher(f"the weights do not fit {built_with} and {in_chans} input channels: {'; '.join(mismatch) or str(exc)[:300]}") from exc
    problems = []
    if result.missing_keys:
        problems.append(f"missing keys {result.missing_keys[:5]}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {result.unexpected_keys[:5]}")
    if problems:
        raise BadTeacher(f"the weights do not fit {built_with}: " + "; ".join(problems))
    return model


class OnnxLogits(nn.Module):
    """An onnxruntime session behind an ``nn.Module`` face: no gradients, no features."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        import onnx
        import onnxruntime as ort

        try:
            graph = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise BadTeacher(f"the file is not a readable ONNX model: {exc}") from exc
        if any(tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) for tensor in _onnx_tensors(graph)):
            raise BadTeacher("ONNX models with external data are refused; export with all weights inside the file")
        self.params = int(sum(int(np.prod(t.dims)) for t in graph.graph.initializer))
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        try:
            self.session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BadTeacher(f"onnxruntime cannot run the model: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: Tensor) -> Tensor:
        out = self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(np.asarray(out)).to(x.device)


def _onnx_tensors(model) -> Iterator:  # noqa: ANN001  (an onnx.ModelProto)
    """Every TensorProto a model holds: initializers, node attributes, subgraphs and functions."""

    def graph_tensors(graph) -> Iterator:  # noqa: ANN001
        yield from graph.initializer
        yield from (t for sparse in graph.sparse_initializer for t in (sparse.values, sparse.indices))
        yield from (t for node in graph.node for t in node_tensors(node))

    def node_tensors(node) -> Iterator:  # noqa: ANN001
        for attribute in node.attribute:
            yield from [attribute.t, *attribute.tensors] if attribute.HasField("t") else attribute.tensors
            sparse = [attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []
            yield from (t for item in [*sparse, *attribute.sparse_tensors] for t in (item.values, item.indices))
            for graph in [attribute.g, *attribute.graphs] if attribute.HasField("g") else attribute.graphs:
                yield from graph_tensors(graph)

    yield from graph_tensors(model.graph)
    yield from (t for function in model.functions for node in function.node for t in node_tensors(node))


def pickle_globals(data: bytes) -> set[str]:
    """The ``module.name`` of every global a pickle would import, read without unpickling it."""
    found: set[str] = set()
    strings: list[str] = []
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name in ("GLOBAL", "INST"):
            found.add(str(argument).replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL":
            found.add(".".join(strings[-2:]))
        if isinstance(argument, str):
            strings.append(argument)
    return found


def _check_torchscript_pickles(path: Path) -> None:
    """Refuse a TorchScript archive whose pickles name anything but TorchScript and torch types."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".pkl"):
                    continue
                try:
                    names = pickle_globals(archive.read(info))
                except Exception as exc:
                    raise BadTeacher(f"{info.filename} in the TorchScript archive is not a readable pickle ({_first_line(exc)})") from None
                foreign = sorted(n for n in names if not n.startswith(TORCHSCRIPT_PICKLE_GLOBALS))
                if foreign:
                    raise BadTeacher(f"{info.filename} in the TorchScript archive imports {foreign[0]!r}, which TorchScript never does; refused")
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadTeacher(f"the file is not a TorchScript archive (a zip written by torch.jit.save): {_first_line(exc)}") from None


@contextmanager
def _weights_only_unpickling() -> Iterator[None]:
    """Make every ``torch.load`` weights-only and every plain ``pickle.loads`` fail while torch.export reads a .pt2."""
    from torch.export.pt2_archive import _package

    def refuse(*_: object, **__: object) -> None:
        raise BadTeacher("the .pt2 holds a pickled Python object, which could run code; export the model without opaque objects")

    previous_env = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    previous_pickle = _package.pickle
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    _package.pickle = SimpleNamespace(loads=refuse, load=refuse, dumps=previous_pickle.dumps)  # type: ignore[assignment]  # a duck-typed stand-in for the pickle module while the read lasts
    try:
        yield
    finally:
        _package.pickle = previous_pickle
        if previous_env is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous_env


@dataclass
class LoadedTeacher:
    module: nn.Module
    params: int
    supports_features: bool


def _load_module(source: TeacherSource) -> tuple[nn.Module, int]:
    in_chans = source.input_size[0]
    path = Path(source.path)
    if source.format in ("safetensors", "state_dict"):
        if not source.arch:
            raise BadTeacher(f"format {source.format!r} needs an architecture name ('arch')")
        model = build_from_state_dict(source.arch, _read_state_dict(path, source.format), source.num_classes, in_chans, source.arch_kwargs)
        return model, sum(p.numel() for p in model.parameters())
    if source.format == "onnx":
        module = OnnxLogits(path)
        return module, module.params
    if source.format == "torchscript":
        _check_torchscript_pickles(path)
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise BadTeacher(f"the file is not a TorchScript archive: {_first_line(exc)}") from exc
        return model, sum(p.numel() for p in model.parameters())
    if source.format == "exported_program":
        try:
            with _weights_only_unpickling():
                program = torch.export.load(str(path))
        except BadTeacher:
            raise
        except pickle.UnpicklingError as exc:
            raise BadTeacher("the .pt2 holds a pickle that is not plain tensors (it could run code when loaded); refused") from exc
        except Exception as exc:
            raise BadTeacher(f"the file is not a torch.export program (.pt2): {_first_line(exc)}") from exc
        model = program.module()
        for frozen_mode_switch in ("train", "eval"):  # torch raises on these; the graph keeps the mode it was exported in
            model.__dict__.pop(frozen_mode_switch, None)
        return model, sum(p.numel() for p in program.state_dict.values())
    raise BadTeacher(f"unknown format {source.format!r}")


class Teacher(nn.Module):
    """A frozen teacher: always in eval mode, never trained, takes [0,1] inputs of any size."""

    def __init__(self, source: TeacherSource) -> None:
        super().__init__()
        module, params = _load_module(source)
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        self.source = source
        self.params = params
        self.logits_only = source.format != "safetensors" and source.format != "state_dict"
        self.net = PreprocessedModel(module, source.input_size, source.mean, source.std)
        self.supports_features = not self.logits_only and supports_features(self.net)
        self.eval()

    @property
    def preprocess(self) -> Preprocess:
        return self.net.preprocess

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def check_teacher(source: TeacherSource, batch: int = 2) -> LoadedTeacher:
    """Load the teacher and run it once; refuse anything that does not produce ``[N, num_classes]``."""
    teacher = Teacher(source)
    sample = torch.rand(batch, *source.input_size)
    try:
        with torch.inference_mode():
            out = teacher(sample)
    except Exception as exc:
        raise BadTeacher(f"the model failed on a [{batch}, {', '.join(map(str, source.input_size))}] input: {_first_line(exc)}") from exc
    if not isinstance(out, Tensor) or tuple(out.shape) != (batch, source.num_classes):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise BadTeacher(
            f"the model returned {shape} for a batch of {batch}, expected [{batch}, {source.num_classes}] logits; check num_classes and input_size"
        )
    if not torch.isfinite(out).all():
        raise BadTeacher("the model returned NaN or infinite logits on a random input")
    return LoadedTeacher(module=teacher, params=teacher.params, supports_features=teacher.supports_features)
