"""The cost model at submit: a job that cannot finish within its time limit is refused, saying what to change."""

import pytest

from kdcore.estimate import arch_flops, estimate_job

DIGITS_JOB = {"method": "supervised", "student": {"arch": "cifar_resnet8"}, "dataset": "builtin:digits", "training": {"epochs": 6, "input_size": [3, 32, 32]}}


def _seconds(method: str, hyperparams: dict, train_samples: int | None, teachers: int = 0) -> float:
    student, teacher = arch_flops("cifar_resnet8", 10, (3, 32, 32)), arch_flops("cifar_resnet20", 10, (3, 32, 32))
    return estimate_job(method, hyperparams, 6, 64, student, [teacher] * teachers, train_samples).seconds


def test_a_job_whose_estimate_exceeds_its_time_limit_is_refused_with_what_to_change(api):
    seconds = _seconds("supervised", {}, 1437)
    before = api.get("/v1/jobs").json()["items"]
    refused = {**DIGITS_JOB, "training": {**DIGITS_JOB["training"], "time_limit_s": seconds / 2}}
    response = api.post("/v1/jobs", json=refused)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert all(words in detail for words in ("time_limit_s", "fewer epochs", "one CPU core")), detail
    assert api.get("/v1/jobs").json()["items"] == before
    allowed = {**DIGITS_JOB, "training": {**DIGITS_JOB["training"], "time_limit_s": seconds * 2}}
    assert api.post("/v1/jobs", json=allowed).status_code == 201


def test_the_estimate_counts_epochs_data_teachers_and_the_synthesis_budget():
    one = _seconds("supervised", {}, 1280)
    assert _seconds("supervised", {}, 2560) == pytest.approx(2 * one)  # twice the images per epoch
    assert _seconds("kd", {}, 1280, teachers=1) > one  # the teacher's forward passes
    default = _seconds("deepinversion", {}, None, teachers=1)
    paper = _seconds("deepinversion", {"preset": "paper"}, None, teachers=1)
    assert paper > 100 * default  # the paper's 50,000 images × 2,000 iterations against 1,024 × 150
    assert _seconds("deepinversion", {"pool_size": 2048}, None, teachers=1) > default
