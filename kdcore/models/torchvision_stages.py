"""Stage features of any torchvision CNN through ``torchvision.models.feature_extraction``.

torchvision models have no ``feature_info``, so the stages are found once per model by a dry run:
the trunk's modules (top-level children, and the children of a top-level ``Sequential`` such as
``features``) are watched with forward hooks, and the last module before each change of spatial
size is a stage, as timm's ``feature_info`` lists one module per stride. A leading group of bare
layers (ResNet's conv1/bn1/relu) is the stem and left out, as ``stage_indices`` does for timm.
Global pooling and the head (``avgpool``, ``classifier``, ``fc``, …; 1×1 maps) are not stages. Models whose maps are not
``[N,C,H,W]`` shrinking stage by stage (torchvision's ViT, Swin) expose none: use timm's versions.
The extractor then returns those nodes and the logits from one traced forward.
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor, nn

PROBE_SIZE = 128  # large enough that every stride up to 32 keeps a map of its own (≥ 4×4)
HEAD_NAMES = frozenset({"avgpool", "classifier", "fc", "head", "heads"})
_FOUND: weakref.WeakKeyDictionary[nn.Module, list[str] | None] = weakref.WeakKeyDictionary()


def _trunk(model: nn.Module) -> list[tuple[str, nn.Module]]:
    modules: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if name in HEAD_NAMES:
            continue
        if isinstance(child, nn.Sequential | nn.ModuleList) and len(child) > 1:
            modules += [(f"{name}.{inner}", grandchild) for inner, grandchild in child.named_children()]
        else:
            modules.append((name, child))
    return modules


def _probe(model: nn.Module, channels: int) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """(name, module, output shape) of the trunk's modules in the order they finish, for one probe input."""
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    handles = []
    for name, module in _trunk(model):

        def record(_: nn.Module, __: object, output: object, name: str = name, module: nn.Module = module) -> None:
            if isinstance(output, Tensor) and all(name != known for known, _, _ in seen):
                seen.append((name, module, tuple(output.shape)))

        handles.append(module.register_forward_hook(record))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, PROBE_SIZE, PROBE_SIZE))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return seen


def torchvision_stage_nodes(model: nn.Module, channels: int = 3) -> list[str] | None:
    """Names of ``model``'s stage outputs, shallow to deep; ``None`` where it has no stages of maps."""
    if model in _FOUND:
        return _FOUND[model]
    try:
        seen = _probe(model, channels)
    except Exception:  # a model that cannot run on the probe has no stages we can find
        seen = []
    groups: list[list[tuple[str, nn.Module, tuple[int, ...]]]] = []
    for entry in seen:
        shape = entry[2]
        if len(shape) != 4 or shape[-2:] == (1, 1):
            continue
        if groups and groups[-1][-1][2][-2:] == shape[-2:]:
            groups[-1].append(entry)
        else:
            groups.append([entry])
    if len(groups) > 1 and not any(True for _ in groups[0][-1][1].children()):
        groups = groups[1:]
    sizes = [group[-1][2][-2:] for group in groups]
    shrinking = all(b[0] < a[0] and b[1] < a[1] for a, b in zip(sizes, sizes[1:], strict=False))
    nodes = [group[-1][0] for group in groups] if len(groups) > 1 and shrinking else None
    _FOUND[model] = nodes
    return nodes


class TorchvisionFeatures(nn.Module):
    """``x`` → ``(logits, [stage maps])`` from one traced forward (train and eval graphs each end at their own logits)."""

    def __init__(self, model: nn.Module, nodes: list[str]) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

        train_nodes, eval_nodes = get_graph_node_names(model)
        stages = {node: node for node in nodes}
        self.extractor = create_feature_extractor(
            model, train_return_nodes={**stages, train_nodes[-1]: "logits"}, eval_return_nodes={**stages, eval_nodes[-1]: "logits"}
        )

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        out = self.extractor(x)
        logits = out.pop("logits")
        return logits, list(out.values())
