"""kdcore's CIFAR ResNets and WRNs: the stage outputs timm's way, consistent with the plain forward."""

import pytest
import torch

from kdcore.models import create_model, list_models

CIFAR_MODELS = [name for name in list_models("kdcore") if name.startswith("cifar_")]


def test_the_literatures_architectures_are_registered():
    assert {"cifar_resnet8x4", "cifar_resnet32x4", "cifar_resnet20", "cifar_resnet56", "cifar_wrn_16_2", "cifar_wrn_40_2"} <= set(CIFAR_MODELS)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_intermediates_match_feature_info_and_the_forward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_chans=1).eval()
    x = torch.rand(2, 1, 16, 16)
    final, features = model.forward_intermediates(x)
    assert [(f.shape[1], 16 // f.shape[-1]) for f in features] == [(i["num_chs"], i["reduction"]) for i in model.feature_info]
    assert final is features[-1] and model.forward_head(final, pre_logits=True).shape == (2, model.num_features)
    torch.testing.assert_close(model.forward_head(final), model(x), rtol=0, atol=0)
    (middle,) = model.forward_intermediates(x, indices=[1], intermediates_only=True)
    torch.testing.assert_close(middle, features[1], rtol=0, atol=0)
