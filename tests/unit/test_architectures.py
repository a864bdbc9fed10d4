"""Any timm or torchvision architecture, with constructor arguments, as teacher or student of every feature method."""

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save_file

from kdcore.data.loader import Batch
from kdcore.errors import BadTeacher
from kdcore.export import export_student, load_student_safetensors
from kdcore.methods import MethodContext, StepInfo, list_methods
from kdcore.models import create_model, model_source
from kdcore.models.features import FeatureModel, arch_supports_features, supports_features
from kdcore.models.loading import Teacher, check_teacher
from kdcore.models.preprocess import PreprocessedModel
from kdcore.spec import StudentSpec, TeacherSource

INPUT = (3, 32, 32)
CLASSES = 10
VIT_32 = {"img_size": 32, "patch_size": 4}
# (arch, arch_kwargs), each the teacher of the next one (cyclically): timm and torchvision families meet both ways.
SAMPLE = [
    ("resnet18", {}),
    ("mobilenet_v3_small", {}),
    ("vit_tiny_patch16_224", VIT_32),
    ("torchvision.resnet18", {}),
    ("mobilenetv3_small_050", {"drop_path_rate": 0.1}),
]
PAIRS = [(SAMPLE[i], SAMPLE[(i + 1) % len(SAMPLE)]) for i in range(len(SAMPLE))]
FEATURE_METHODS = [m for m in list_methods() if m.needs_teacher_features or m.needs_student_features]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> dict[str, Teacher]:
    """One frozen teacher per sampled architecture, shared by the tests (nothing trains a teacher)."""
    folder = tmp_path_factory.mktemp("teachers")
    return {arch: _teacher(folder, arch, kwargs) for arch, kwargs in SAMPLE}


def _teacher(tmp_path, arch: str, arch_kwargs: dict) -> Teacher:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=CLASSES, arch_kwargs=arch_kwargs)
    path = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return Teacher(TeacherSource(path=path, format="safetensors", arch=arch, arch_kwargs=arch_kwargs, num_classes=CLASSES, input_size=INPUT))


def _student(arch: str, arch_kwargs: dict) -> PreprocessedModel:
    return PreprocessedModel(create_model(arch, num_classes=CLASSES, arch_kwargs=arch_kwargs), INPUT)


def test_the_sample_covers_every_feature_method_and_both_families():
    assert {m.name for m in FEATURE_METHODS} >= {"at", "fitnet"}
    assert {"timm", "torchvision"} <= {model_source(arch) for arch, _ in SAMPLE}


@pytest.mark.parametrize("method", FEATURE_METHODS, ids=lambda m: m.name)
@pytest.mark.parametrize(("teacher_arch", "student_arch"), PAIRS, ids=[f"{t[0]}->{s[0]}" for t, s in PAIRS])
def test_every_feature_method_trains_a_step_on_every_sampled_pair(teachers, method, teacher_arch, student_arch):
    teacher = teachers[teacher_arch[0]]
    student = _student(*student_arch)
    assert teacher.supports_features and supports_features(student)
    context = MethodContext(CLASSES, INPUT, 2, 4, torch.device("cpu"), 4)
    hparams = method.Hyperparams(**({"latent_dim": 16} if "latent_dim" in method.Hyperparams.model_fields else {}))
    distiller = method(student, [teacher] * method.teacher_count[0], hparams, context)
    distiller.train()
    generator = torch.Generator().manual_seed(0)
    batch = (
        Batch(torch.rand(4, *INPUT, generator=generator), torch.randint(0, CLASSES, (4,), generator=generator), torch.arange(4))
        if method.needs_dataset
        else None
    )
    out = distiller(batch, StepInfo(1, 0, 6, 4, 2))
    assert out["output"].shape == (4, CLASSES) and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_timm_resnet18_to_torchvision_mobilenet_gives_stage_maps_that_shrink():
    teacher, student = FeatureModel(_student("resnet18", {})), FeatureModel(_student("mobilenet_v3_small", {}))
    for model in (teacher, student):
        logits, stages = model(torch.rand(2, *INPUT))
        assert logits.shape == (2, CLASSES) and len(stages) >= 4
        sizes = [s.shape[-1] for s in stages]
        assert all(b < a for a, b in zip(sizes, sizes[1:], strict=False)) and all(s.dim() == 4 for s in stages)


def test_a_vit_teacher_at_32_px_loads_only_with_its_arch_kwargs(teachers):
    teacher = teachers["vit_tiny_patch16_224"]
    assert check_teacher(teacher.source).params == teacher.params and teacher.supports_features
    _, stages = FeatureModel(teacher.net)(torch.rand(1, *INPUT))
    assert stages[0].shape[-2:] == (8, 8)
    with pytest.raises(BadTeacher, match="do not fit"):
        Teacher(teacher.source.model_copy(update={"arch_kwargs": {}}))


def test_arch_kwargs_are_an_allow_list_and_a_builder_must_take_them():
    with pytest.raises(ValidationError, match="may not set 'pretrained'"):
        StudentSpec(arch="resnet18", arch_kwargs={"pretrained": True})
    with pytest.raises(ValueError, match="does not take arch_kwargs"):
        create_model("torchvision.resnet18", CLASSES, arch_kwargs={"patch_size": 4})
    with pytest.raises(ValueError, match="takes no arch_kwargs"):
        create_model("cifar_resnet8", CLASSES, arch_kwargs={"drop_rate": 0.1})
    assert arch_supports_features("vit_tiny_patch16_224", VIT_32)


def test_an_exported_student_with_arch_kwargs_loads_back(tmp_path):
    student = _student("vit_tiny_patch16_224", VIT_32).eval()
    files = export_student(student, "vit_tiny_patch16_224", CLASSES, INPUT, ["safetensors"], tmp_path, VIT_32)
    assert files[0].metadata["arch_kwargs"] == '{"img_size": 32, "patch_size": 4}'
    probe = torch.rand(2, *INPUT)
    with torch.inference_mode():
        torch.testing.assert_close(load_student_safetensors(files[0].path)(probe), student(probe))
