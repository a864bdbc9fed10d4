"""Teachers uploaded to a running service the way a user uploads them: the trained digits teacher, or an untrained one for tiny jobs."""

from __future__ import annotations

import io

import httpx
from safetensors.torch import save

from kdcore.models import create_model


def upload_trained_teacher(client: httpx.Client, trained_teacher: dict) -> dict:
    """The ``trained_teacher`` fixture's cifar_resnet8 on 3×32×32 digits, uploaded; the teacher as the API answers it."""
    with open(trained_teacher["path"], "rb") as handle:
        return client.post(
            "/v1/teachers",
            files={"file": ("t.safetensors", handle)},
            data={"format": "safetensors", "arch": "cifar_resnet8", "num_classes": "10", "input_size": "3,32,32"},
        ).json()


def upload_untrained_grey_teacher(client: httpx.Client) -> str:
    """An untrained cifar_resnet8 on 1×8×8 inputs, the input of ``e2e.test_faults.tiny_job``: enough to distil from, fast to run; its id."""
    weights = save({k: v.contiguous() for k, v in create_model("cifar_resnet8", num_classes=10, in_chans=1).state_dict().items()})
    response = client.post(
        "/v1/teachers",
        files={"file": ("t.safetensors", io.BytesIO(weights))},
        data={"format": "safetensors", "arch": "cifar_resnet8", "num_classes": "10", "input_size": "1,8,8"},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]
