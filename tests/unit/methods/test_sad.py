import pytest
import torch
from factories import make_batch, make_context, make_student
from torch.nn import functional as F

from kdcore.errors import BadSpec
from kdcore.methods import StepInfo, get_method
from kdcore.methods.sad import sad_attention, sad_loss


def _distiller(**hparams):
    method = get_method("sad")
    return method(make_student(), [], method.Hyperparams(**hparams), make_context(epochs=2, steps_per_epoch=4))


def test_sad_defaults_are_the_papers():
    method = get_method("sad")
    hp = method.Hyperparams()
    assert (hp.weight, hp.start_fraction, hp.detach_target) == (0.1, 0.5, False)
    assert method.teacher_count == (0, 0) and not method.needs_teacher_features


def test_sad_attention_is_a_spatial_softmax_of_the_channel_sum_of_squares():
    feature = torch.tensor([[[[1.0, 0.0], [2.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]]]])
    energy = torch.tensor([2.0, 1.0, 4.0, 1.0])
    torch.testing.assert_close(sad_attention(feature), torch.softmax(energy, 0)[None])


def test_sad_loss_resizes_the_deeper_map_to_the_shallower_and_sums_pairs():
    generator = torch.Generator().manual_seed(0)
    f1, f2, f3 = (torch.randn(2, c, s, s, generator=generator) for c, s in ((3, 8), (4, 4), (5, 2)))

    def psi(f, size):
        energy = f.pow(2).sum(1, keepdim=True)
        energy = F.interpolate(energy, size=size, mode="bilinear", align_corners=False)
        return torch.softmax(energy.flatten(1), 1)

    expected = F.mse_loss(psi(f1, (8, 8)), psi(f2, (8, 8))) + F.mse_loss(psi(f2, (4, 4)), psi(f3, (4, 4)))
    torch.testing.assert_close(sad_loss([f1, f2, f3]), expected)
    torch.testing.assert_close(sad_loss([f1, f2, f3], skip_shallow_pairs=1), F.mse_loss(psi(f2, (4, 4)), psi(f3, (4, 4))))


def test_paper_ablation_preset_starts_at_two_thirds_without_the_shallowest_pair():
    distiller = _distiller(preset="paper_ablation").train()
    assert (distiller.hparams.start_fraction, distiller.hparams.skip_shallow_pairs) == (2 / 3, 1)
    batch = make_batch()
    assert distiller(batch, StepInfo(1, 1, 5, 4, 2))["loss/sad"].item() == 0.0  # 5/8 of training
    late = distiller(batch, StepInfo(1, 2, 6, 4, 2))
    with torch.no_grad():
        _, features = distiller._student_features[0](batch.images)
        torch.testing.assert_close(late["loss/sad"], 0.1 * sad_loss(features[1:]))
        assert not torch.allclose(late["loss/sad"], 0.1 * sad_loss(features))


def test_sad_refuses_a_student_with_no_pair_left():
    with pytest.raises(BadSpec, match="needs a pair"):
        _distiller(skip_shallow_pairs=2)


def test_sad_is_off_before_start_fraction_and_on_after():
    distiller = _distiller()
    distiller.train()
    batch = make_batch()
    early = distiller(batch, StepInfo(0, 3, 3, 4, 2))
    assert early["loss/sad"].item() == 0.0
    torch.testing.assert_close(early["loss"], early["loss/ce"])
    late = distiller(batch, StepInfo(1, 0, 4, 4, 2))
    assert late["loss/sad"].item() > 0.0
    torch.testing.assert_close(late["loss"], late["loss/ce"] + late["loss/sad"])
    late["loss/sad"].backward()
    assert all(p.grad is not None for p in distiller.student.model.stages[0].parameters())
    assert all(p.grad is not None for p in distiller.student.model.stages[2].parameters())


def test_sad_detach_target_stops_the_gradient_at_the_deepest_stage():
    distiller = _distiller(start_fraction=0.0, detach_target=True)
    distiller.train()
    out = distiller(make_batch(), StepInfo(0, 0, 0, 4, 2))
    out["loss/sad"].backward()
    assert all(p.grad is not None for p in distiller.student.model.stages[0].parameters())
    assert all(p.grad is None for p in distiller.student.model.stages[2].parameters())


def test_sad_adds_no_modules_to_the_student():
    distiller = _distiller()
    plain = make_student()
    assert set(distiller.state_dict()) == {f"student.{k}" for k in plain.state_dict()}
    assert sum(p.numel() for p in distiller.trainable_parameters()) == sum(p.numel() for p in plain.parameters())
