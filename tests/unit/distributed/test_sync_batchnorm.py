"""``training.sync_bn`` on CPU ranks: two halves normalised together equal one BatchNorm over the whole batch."""

import torch
from gloo_world import run_ranks
from torch import nn

from kdcore.distributed.sync_batchnorm import GlooSyncBatchNorm, convert_sync_batchnorm, revert_sync_batchnorm


def whole_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 5, 5, generator=generator) * 3 + 1, torch.randn(8, 3, 5, 5, generator=generator)


def reference() -> dict[str, torch.Tensor]:
    x, upstream = whole_batch()
    x.requires_grad_()
    norm = nn.BatchNorm2d(3)
    out = norm(x)
    (out * upstream).sum().backward()
    return {"out": out.detach(), "x_grad": x.grad, "w_grad": norm.weight.grad, "b_grad": norm.bias.grad, "mean": norm.running_mean, "var": norm.running_var}


def half_on_each_rank(world, expected: dict[str, torch.Tensor]) -> None:
    x, upstream = whole_batch()
    share = slice(world.rank * 4, (world.rank + 1) * 4)
    mine = x[share].clone().requires_grad_()
    norm = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), "cpu")[0]
    assert isinstance(norm, GlooSyncBatchNorm)
    out = norm(mine)
    (out * upstream[share]).sum().backward()
    torch.testing.assert_close(out.detach(), expected["out"][share])
    torch.testing.assert_close(mine.grad, expected["x_grad"][share])
    torch.distributed.all_reduce(norm.weight.grad)  # DDP sums then averages; the whole-batch loss is the sum of the ranks' sums
    torch.distributed.all_reduce(norm.bias.grad)
    torch.testing.assert_close(norm.weight.grad, expected["w_grad"])
    torch.testing.assert_close(norm.bias.grad, expected["b_grad"])
    torch.testing.assert_close(norm.running_mean, expected["mean"])
    torch.testing.assert_close(norm.running_var, expected["var"])


def test_two_cpu_ranks_match_one_batchnorm_over_the_whole_batch():
    run_ranks(half_on_each_rank, 2, reference())


def test_conversion_keeps_weights_statistics_and_mode_and_reverts_for_export():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    model[1].running_mean.fill_(0.5)
    model[1].weight.data.fill_(2.0)
    model.eval()
    converted = convert_sync_batchnorm(model, "cpu")
    assert isinstance(converted[1], GlooSyncBatchNorm) and isinstance(converted[2][0], GlooSyncBatchNorm)
    assert not converted[1].training
    torch.testing.assert_close(converted[1].running_mean, torch.full((4,), 0.5))
    torch.testing.assert_close(converted[1].weight.detach(), torch.full((4,), 2.0))
    plain = revert_sync_batchnorm(converted)
    assert type(plain[1]) is nn.BatchNorm2d and type(plain[2][0]) is nn.BatchNorm2d
    torch.testing.assert_close(plain[1].running_mean, torch.full((4,), 0.5))
