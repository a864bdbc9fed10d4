"""Every registered method, tested the moment it is registered: a step on tiny inputs, an export
without training-only parts, and a checkpoint round trip that resumes to the same next step.

Method-specific behaviour (losses against the official formulas, defaults) stays in ``tests/unit/methods/``.
"""

import io

import pytest
import torch
from factories import make_batch, make_context, make_student, make_teacher

from kdcore.methods import StepInfo, get_method, list_methods

FAST = {"deepinversion": {"inversion_iterations": 2, "pool_size": 16}, "dafl": {"latent_dim": 16}}
METHODS = [method.name for method in list_methods()]


def build(name: str, teachers: list, seed: int = 0):
    method = get_method(name)
    torch.manual_seed(seed)
    return method(make_student(), teachers, method.Hyperparams(**FAST.get(name, {})), make_context())


def teachers_for(name: str, tmp_path) -> list:
    """As many teachers as the method takes, two where it takes any number."""
    low, high = get_method(name).teacher_count
    count = 2 if high is None else high
    return [make_teacher(tmp_path, seed=seed) for seed in range(max(low, count))]


def batch_for(name: str):
    return make_batch() if get_method(name).needs_dataset else None


def own_state(distiller) -> dict[str, torch.Tensor]:
    """What the trainer checkpoints of the distiller's modules: all but the teachers."""
    return {k: v for k, v in distiller.state_dict().items() if not k.startswith("teachers.")}


def assert_same(a, b, where: str = "method_state") -> None:
    """Equal to the bit, through nested dicts and lists (optimizer state dicts included)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{index}]")
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=where)
    else:
        assert a == b, where


def test_every_method_of_the_design_is_registered():
    assert set(METHODS) >= {
        "supervised",
        "kd",
        "dkd",
        "ctkd",
        "meal_v2",
        "at",
        "fitnet",
        "sad",
        "byot",
        "frskd",
        "bake",
        "datafree_generative",
        "deepinversion",
        "dafl",
    }
    for name in METHODS:
        described = get_method(name).describe()
        assert described["name"] == name and described["hyperparams_schema"]["type"] == "object"
        assert described["presets"] == get_method(name).Hyperparams.presets


@pytest.mark.parametrize("name", METHODS)
def test_every_preset_validates_and_given_values_override_it(name):
    model = get_method(name).Hyperparams
    with pytest.raises(ValueError, match="unknown preset"):
        model(preset="no-such-preset")
    for preset, bundle in model.presets.items():
        chosen = model(preset=preset)
        assert chosen.preset == preset
        assert chosen.model_dump(include=set(bundle)) == model(**bundle).model_dump(include=set(bundle))
        key, value = next(iter(bundle.items()))
        if isinstance(value, float) and value:
            assert getattr(model(preset=preset, **{key: value / 2}), key) == value / 2


def test_a_preset_merges_nested_settings_key_by_key():
    from kdcore.methods.base import merge_settings

    assert merge_settings({"a": 1, "curriculum": {"mode": "global", "t_end": 20}}, {"curriculum": {"t_end": 10}}) == {
        "a": 1,
        "curriculum": {"mode": "global", "t_end": 10},
    }


@pytest.mark.parametrize("name", METHODS)
def test_a_step_trains_the_student_and_never_a_teacher(name, tmp_path):
    teachers = teachers_for(name, tmp_path)
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    distiller = build(name, teachers).train()
    assert not any(t.training for t in distiller.teachers)
    out = distiller(batch_for(name), StepInfo(0, 0, 0, 4, 2))
    parts = [v for k, v in out.items() if k.startswith("loss/")]
    assert parts and out["output"].shape[1] == 10 and torch.isfinite(out["loss"])
    torch.testing.assert_close(out["loss"], torch.stack(parts).sum())
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.student.parameters())
    trainable = {id(p) for p in distiller.trainable_parameters()}
    assert {id(p) for p in distiller.student.parameters()} <= trainable
    for teacher, saved in zip(teachers, before, strict=True):
        assert all(p.grad is None and id(p) not in trainable for p in teacher.parameters())
        for key, value in teacher.state_dict().items():
            torch.testing.assert_close(value, saved[key], rtol=0, atol=0)


@pytest.mark.parametrize("name", METHODS)
def test_the_export_is_the_plain_student(name, tmp_path):
    distiller = build(name, teachers_for(name, tmp_path)).train()
    distiller(batch_for(name), StepInfo(0, 0, 0, 4, 2))
    exported = distiller.export_student()
    plain = make_student()
    assert list(exported.state_dict()) == list(plain.state_dict())
    assert sum(p.numel() for p in exported.parameters()) == sum(p.numel() for p in plain.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in exported.modules())
    assert exported.eval()(make_batch().images).shape == (8, 10)


@pytest.mark.parametrize("name", METHODS)
def test_checkpointed_state_resumes_to_the_same_next_step(name, tmp_path):
    teachers = teachers_for(name, tmp_path)
    batch = batch_for(name)
    distiller = build(name, teachers).train()
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.1, momentum=0.9)
    for step in range(2):
        optimizer.zero_grad()
        distiller(batch, StepInfo(0, step, step, 4, 2))["loss"].backward()
        optimizer.step()
    file = io.BytesIO()
    torch.save({"weights": own_state(distiller), "method_state": distiller.method_state()}, file)
    file.seek(0)
    saved = torch.load(file, weights_only=True)

    restored = build(name, teachers, seed=1).train()
    result = restored.load_state_dict(saved["weights"], strict=False)
    assert not result.unexpected_keys and all(k.startswith("teachers.") for k in result.missing_keys)
    restored.load_method_state(saved["method_state"])
    assert_same(own_state(distiller), own_state(restored), "state_dict")
    assert_same(distiller.method_state(), restored.method_state())
    for step in (2, 3):  # two steps: a method's inner optimizer shows in the step after it is used
        torch.manual_seed(step)
        expected = distiller(batch, StepInfo(0, step, step, 4, 2))["loss"]
        torch.manual_seed(step)
        torch.testing.assert_close(restored(batch, StepInfo(0, step, step, 4, 2))["loss"], expected, rtol=0, atol=0)
