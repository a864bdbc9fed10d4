"""Routes and validation through the real app in-process: every check here runs in milliseconds."""

from __future__ import annotations

import pytest

DIGITS_JOB = {"method": "supervised", "student": {"arch": "cifar_resnet8"}, "dataset": "builtin:digits", "training": {"epochs": 1}}


def problem(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    for word in words:
        assert word.lower() in body["detail"].lower(), body["detail"]
    return body


def test_health_needs_no_key(api):
    assert api.get("/healthz", headers={"Authorization": ""}).json() == {"status": "ok"}


def test_v1_routes_need_a_key(api):
    problem(api.get("/v1/jobs", headers={"Authorization": "Bearer dk_nope"}), 401)


def test_methods_list_every_registered_method_with_a_schema(api):
    from kdcore.methods import list_methods

    items = api.get("/v1/methods").json()["items"]
    assert {m["name"] for m in items} == {method.name for method in list_methods()}
    assert all(m["hyperparams_schema"]["type"] == "object" for m in items)


def test_builtin_datasets_are_listed(api):
    ids = {d["id"] for d in api.get("/v1/datasets").json()["items"]}
    assert "builtin:digits" in ids


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"method": "nope"}, ["unknown method", "/v1/methods"]),
        ({"hyperparams": {"label_smoothing": 5}}, ["hyperparams", "label_smoothing"]),
        ({"hyperparams": {"bogus": 1}}, ["bogus"]),
        ({"student": {"arch": "no_such_net"}}, ["unknown student architecture"]),
        ({"dataset": "builtin:nope"}, ["unknown built-in dataset"]),
        ({"dataset": "ds_0000"}, ["does not exist"]),
        ({"method": "kd"}, ["teacher"]),
        ({"registry": {"model_name": "m"}}, ["MLFLOW_TRACKING_URI"]),
    ],
)
def test_submission_refusals_say_what_to_fix(api, change, words):
    before = api.get("/v1/jobs").json()["items"]
    problem(api.post("/v1/jobs", json={**DIGITS_JOB, **change}), 422, *words)
    assert api.get("/v1/jobs").json()["items"] == before


def test_a_submitted_job_stores_its_resolved_spec_and_lists_and_cancels(api, other_tenant):
    created = api.post("/v1/jobs", json=DIGITS_JOB)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "queued" and job["spec"]["hyperparams"] == {"preset": None, "label_smoothing": 0.0}
    assert job["spec"]["training"]["batch_size"] == 64 and job["created_at"].endswith("Z")
    assert api.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
    assert job["id"] in [j["id"] for j in api.get("/v1/jobs?status=queued").json()["items"]]
    problem(api.get(f"/v1/jobs/{job['id']}", headers=other_tenant), 404)
    events = api.get(f"/v1/jobs/{job['id']}/events/list").json()["items"]
    assert [(e["type"], e["status"]) for e in events] == [("status", "queued")]
    cancelled = api.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"


def test_idempotency_key_returns_the_same_job_and_refuses_another_body(api):
    headers = {"Idempotency-Key": "route-test-1"}
    first = api.post("/v1/jobs", json=DIGITS_JOB, headers=headers)
    again = api.post("/v1/jobs", json=DIGITS_JOB, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]
    problem(api.post("/v1/jobs", json={**DIGITS_JOB, "name": "other"}, headers=headers), 422, "Idempotency-Key")


def test_list_pages_follow_the_cursor(api):
    for _ in range(3):
        api.post("/v1/jobs", json=DIGITS_JOB)
    first = api.get("/v1/jobs?limit=2").json()
    second = api.get(f"/v1/jobs?limit=2&cursor={first['next_cursor']}").json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    assert not {j["id"] for j in first["items"]} & {j["id"] for j in second["items"]}


def test_teacher_upload_that_is_not_a_model_is_refused(api):
    response = api.post(
        "/v1/teachers",
        files={"file": ("model.safetensors", b"hello, I am text")},
        data={"format": "safetensors", "arch": "cifar_resnet8", "num_classes": "10", "input_size": "3,32,32"},
    )
    assert response.status_code == 422, response.text
    assert api.get("/v1/teachers").json()["items"] == []
