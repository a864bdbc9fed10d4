"""``training.sync_bn``: BatchNorm statistics over the global batch instead of each rank's share.

On CUDA the layers become torch's ``SyncBatchNorm``. Its kernels exist for GPUs only (and DDP refuses
it in a CPU module), so on CPU ranks (gloo) they become :class:`GlooSyncBatchNorm`, which computes
the same statistics with ``torch.distributed.nn``'s differentiable ``all_reduce``: the global mean
first, then the global biased variance around it (two passes, as exact as one BatchNorm over the
whole batch). The backward of those reductions sums every rank's gradient of the shared
statistics, as torch's SyncBatchNorm backward does on GPUs. Both go back to the plain BatchNorm
class they replaced before the student is evaluated for good and exported.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

PLAIN_CLASS = "plain_class"

# Its suggested successor (``_functional_collectives.all_reduce``) has no backward; this one has.
warnings.filterwarnings("ignore", message="torch.distributed.nn.functional.all_reduce is deprecated", category=FutureWarning)


class GlooSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the batch of every rank together (CPU ranks)."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()
        count = torch.tensor([float(x.numel() // x.shape[1])])
        totals = dist_nn.all_reduce(torch.cat([x.sum(dims), count]))
        total_count = totals[-1]
        mean = totals[:-1] / total_count
        centred = x - mean.view(shape)
        var = dist_nn.all_reduce(centred.pow(2).sum(dims)) / total_count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(total_count.detach()))
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: float) -> None:
        tracked, running_mean, running_var = self.num_batches_tracked, self.running_mean, self.running_var
        assert tracked is not None and running_mean is not None and running_var is not None  # called with track_running_stats alone
        tracked.add_(1)
        momentum = 1.0 / float(tracked) if self.momentum is None else self.momentum
        running_mean.lerp_(mean.to(running_mean.dtype), momentum)
        running_var.lerp_((var * count / max(count - 1.0, 1.0)).to(running_var.dtype), momentum)


def _replaced(module: _BatchNorm, kind: type[_BatchNorm]) -> _BatchNorm:
    """A ``kind`` layer with ``module``'s settings, weights, statistics, trainability and mode."""
    layer = kind(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
    state = module.state_dict()
    if state:
        layer.to(next(iter(state.values())).device)
        layer.load_state_dict(state)
    for name, parameter in module.named_parameters():
        layer.get_parameter(name).requires_grad_(parameter.requires_grad)
    return layer.train(module.training)


def _plain_class(layer: _BatchNorm) -> type[_BatchNorm] | None:
    """The BatchNorm class a synchronised layer replaced (kept as a plain attribute, which ``nn.Module`` does not type)."""
    return getattr(layer, PLAIN_CLASS, None)


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """``module`` with every BatchNorm layer synchronised across ranks (torch's on CUDA, :class:`GlooSyncBatchNorm` on CPU)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, (nn.SyncBatchNorm, GlooSyncBatchNorm)):
        synced = _replaced(module, nn.SyncBatchNorm if device_type == "cuda" else GlooSyncBatchNorm)
        setattr(synced, PLAIN_CLASS, type(module))
        return synced
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device_type))
    return module


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_sync_batchnorm`: each synchronised layer back to the BatchNorm class it replaced."""
    if isinstance(module, _BatchNorm) and (plain := _plain_class(module)) is not None:
        return _replaced(module, plain)
    for name, child in module.named_children():
        module.add_module(name, revert_sync_batchnorm(child))
    return module
