"""Data parallel as the papers' official code runs it: frozen teachers replicated, everything trained in DDP.

Every rank holds the whole distiller. The teachers are frozen, identical on every rank (each loads
the same file) and never wrapped: :class:`DistributedDataParallel` ignores their parameters and
buffers, so they are neither broadcast nor reduced. The rest of the distiller (the student and the
method's trainable modules: discriminator, temperature, regressors, auxiliary heads) is one DDP
module whose ``forward(batch, info)`` is the method's training step, so its gradients are averaged
over the ranks by DDP's bucketed all-reduce during the trainer's backward. A module the method
steps itself inside ``forward`` (a data-free generator, named in ``Distiller.self_stepped``) gets
its own DDP wrapper, which the method calls through :meth:`Distiller.data_parallel`; buffers that
must differ per rank (``Distiller.rank_local_buffers``, such as a pool of synthesised images) are
left out of the broadcast.

Each rank's loss is the mean over its equal share of the global batch, so DDP's average of the
ranks' gradients is the gradient of the mean over the global batch: the learning rate means the
same at any world size (no linear scaling rule is applied).
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from kdcore.distributed.sync_batchnorm import convert_sync_batchnorm
from kdcore.distributed.world import World
from kdcore.methods import Distiller


def tensors_of(modules: list[nn.Module]) -> set[int]:
    return {id(t) for module in modules for t in [*module.parameters(), *module.buffers()]}


def names_to_ignore(distiller: Distiller, excluded: set[int]) -> list[str]:
    """Fully qualified names, as DDP lists them, of the parameters and buffers in ``excluded`` (by identity)."""
    named: list[tuple[str, Tensor]] = [*distiller.named_parameters(), *distiller.named_buffers()]
    return [name for name, tensor in named if id(tensor) in excluded]


def wrap_for_data_parallel(distiller: Distiller, world: World, sync_bn: bool) -> nn.Module:
    """The module the trainer calls: ``distiller`` itself for one rank, else its DDP wrapper.

    Call before the optimizer is built: ``sync_bn`` replaces BatchNorm layers (teachers excepted).
    """
    if not world.distributed:
        return distiller
    if sync_bn:
        device_type = next(distiller.student.parameters()).device.type
        for name, child in distiller.named_children():
            if child is not distiller.teachers:
                distiller.add_module(name, convert_sync_batchnorm(child, device_type))
    own_steps = [getattr(distiller, name) for name in distiller.self_stepped]
    for module in own_steps:
        distiller.use_data_parallel(module, DistributedDataParallel(module, find_unused_parameters=True))
    rank_local = {id(getattr(distiller, name)) for name in distiller.rank_local_buffers}
    excluded = tensors_of([distiller.teachers, *own_steps]) | rank_local
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(distiller, names_to_ignore(distiller, excluded))
    return DistributedDataParallel(distiller)
