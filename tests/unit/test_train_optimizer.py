"""The trainer's optimizer is what the official code trains with: plain momentum SGD, no Nesterov."""

import torch
from factories import make_context, make_student

from kdcore.build import build_optimizer
from kdcore.methods import get_method
from kdcore.spec import TrainingConfig


def test_sgd_is_plain_momentum_by_hand():
    distiller = get_method("supervised")(make_student(), [], get_method("supervised").Hyperparams(), make_context())
    optimizer = build_optimizer(TrainingConfig(epochs=1, lr=0.1, momentum=0.9, weight_decay=0.0), distiller)
    assert optimizer.param_groups[0]["nesterov"] is False
    weight = distiller.student.model.fc.bias
    start = weight.detach().clone()
    grads = [torch.full_like(weight, 1.0), torch.full_like(weight, 2.0)]
    for grad in grads:
        optimizer.zero_grad()
        weight.grad = grad.clone()
        optimizer.step()
    # buffer b1 = g1, b2 = 0.9·b1 + g2; w = w0 − lr·(b1 + b2); Nesterov would step by g + 0.9·b instead.
    expected = start - 0.1 * (grads[0] + (0.9 * grads[0] + grads[1]))
    torch.testing.assert_close(weight.detach(), expected)
