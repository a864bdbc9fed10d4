"""Small real objects for tests: teachers saved to disk and loaded the way the service loads them."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from kdcore.data.loader import Batch
from kdcore.methods import MethodContext
from kdcore.models import create_model
from kdcore.models.loading import Teacher
from kdcore.models.preprocess import PreprocessedModel
from kdcore.spec import TeacherSource


def save_teacher(tmp_path: Path, arch: str = "cifar_resnet8", num_classes: int = 10, input_size=(3, 16, 16), seed: int = 0) -> TeacherSource:
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=num_classes, in_chans=input_size[0])
    path = tmp_path / f"{arch}-{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return TeacherSource(path=path, format="safetensors", arch=arch, num_classes=num_classes, input_size=tuple(input_size))


def make_teacher(tmp_path: Path, arch: str = "cifar_resnet8", num_classes: int = 10, input_size=(3, 16, 16), seed: int = 0) -> Teacher:
    return Teacher(save_teacher(tmp_path, arch, num_classes, input_size, seed))


def make_student(arch: str = "cifar_resnet8", num_classes: int = 10, input_size=(3, 16, 16)) -> PreprocessedModel:
    return PreprocessedModel(create_model(arch, num_classes=num_classes, in_chans=input_size[0]), input_size)


def make_batch(n: int = 8, input_size=(3, 16, 16), num_classes: int = 10, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch(
        images=torch.rand(n, *input_size, generator=generator),
        labels=torch.randint(0, num_classes, (n,), generator=generator),
        indices=torch.arange(n),
    )


def make_context(num_classes: int = 10, input_size=(3, 16, 16), epochs: int = 2, steps_per_epoch: int = 4, batch_size: int = 8) -> MethodContext:
    return MethodContext(num_classes, tuple(input_size), epochs, steps_per_epoch, torch.device("cpu"), batch_size)
