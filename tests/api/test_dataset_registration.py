"""``POST /v1/datasets`` with a JSON body, in-process on the embedded store: registration by ``file://`` reference
under the tenant's own prefix, the refusals, and large uploads converted into WebDataset shards."""

from __future__ import annotations

import io
import shutil

import pytest
from image_trees import digits_tree, zip_tree
from sqlalchemy import select
from test_routes import problem

from kdcore.data.index import DatasetIndex
from kdcore.data.shards import write_shards


@pytest.fixture(scope="module")
def prefix(app_settings, api):
    """The acme tenant's own dataset folder in the embedded store: the one prefix it may register under by default."""
    from core.db import session_scope
    from core.models import Tenant

    with session_scope() as session:
        tenant = session.scalar(select(Tenant.id).where(Tenant.name == "acme"))
    folder = app_settings.resolved_data_dir / "objects" / "tenants" / tenant / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def tree(prefix):
    return digits_tree(prefix / "digits", size=12, per_class=6)


def test_an_imagefolder_is_registered_where_it_lies_and_deleting_it_keeps_the_files(api, tree):
    created = api.post("/v1/datasets", json={"name": "digits", "uri": tree.as_uri(), "format": "imagefolder"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["uri"] == tree.as_uri() + "/" and body["format"] == "imagefolder" and body["shards"] == 0
    assert body["num_classes"] == 10 and body["splits"]["train"] == 60 and 0 < body["verified"] <= 64
    assert api.get(f"/v1/datasets/{body['id']}").json() == body
    job = api.post("/v1/jobs", json={"method": "supervised", "student": {"arch": "cifar_resnet8"}, "dataset": body["id"], "training": {"epochs": 1}})
    assert job.status_code == 201, job.text
    problem(api.delete(f"/v1/datasets/{body['id']}"), 409, job.json()["id"], "queued or running")
    assert api.post(f"/v1/jobs/{job.json()['id']}/cancel").json()["status"] == "cancelled"
    assert api.delete(f"/v1/datasets/{body['id']}").status_code == 204
    assert (tree / "train").is_dir()


def test_webdataset_shards_are_indexed_and_counted(api, prefix, tree):
    write_shards(tree, prefix / "wds", shard_bytes=4_000)
    body = api.post("/v1/datasets", json={"uri": (prefix / "wds").as_uri() + "/", "format": "webdataset"}).json()
    assert body["format"] == "webdataset" and body["shards"] >= 4 and body["splits"] == {"train": 60, "val": 60}


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("file:///etc/", ["outside the prefixes", "DISTILLERY_DATASET_URI_PREFIXES"]),
        ("{prefix}/digits/../../../../other/datasets/x", ["outside the prefixes"]),
        ("{prefix}", ["outside the prefixes"]),
        ("s3://another-bucket/tenants/x/datasets/y/", ["outside the prefixes"]),
        ("{prefix}/nothing-here/", ["nothing lies under"]),
    ],
)
def test_uris_outside_the_tenants_prefixes_are_refused_naming_the_rule(api, prefix, uri, words):
    problem(api.post("/v1/datasets", json={"uri": uri.format(prefix=prefix.as_uri()), "format": "imagefolder"}), 422, *words)


def test_another_tenants_folder_is_refused(api, other_tenant, tree):
    problem(api.post("/v1/datasets", json={"uri": tree.as_uri(), "format": "imagefolder"}, headers=other_tenant), 422, "outside the prefixes")


def test_broken_sets_are_refused_early(api, prefix, tree):
    broken = prefix / "broken"
    shutil.copytree(tree, broken)
    (broken / "train" / "empty").mkdir()
    (broken / "val" / "empty").mkdir()
    problem(api.post("/v1/datasets", json={"uri": broken.as_uri(), "format": "imagefolder"}), 422, "empty")
    for folder in ("train/empty", "val/empty"):
        (broken / folder).rmdir()
    problem(api.post("/v1/datasets", json={"uri": broken.as_uri(), "format": "webdataset"}), 422, "no .tar shards")
    first = sorted((broken / "val").rglob("*.png"))[0]
    first.write_bytes(b"not an image")
    problem(api.post("/v1/datasets", json={"uri": broken.as_uri(), "format": "imagefolder"}), 422, "does not decode", first.name)
    shutil.rmtree(broken / "val")
    problem(api.post("/v1/datasets", json={"uri": broken.as_uri(), "format": "imagefolder"}), 422, "val/")
    problem(api.post("/v1/datasets", json={"uri": broken.as_uri(), "format": "parquet"}), 422)


def test_an_upload_over_the_memory_budget_becomes_shards_in_the_store(api, app_settings, tree, tmp_path, monkeypatch):
    archive = zip_tree(tree, tmp_path / "d.zip")
    monkeypatch.setattr(app_settings, "inmemory_max_bytes", 60 * 12 * 12 * 3)
    monkeypatch.setattr(app_settings, "shard_bytes", 8_000)
    body = api.post("/v1/datasets", files={"file": ("d.zip", io.BytesIO(archive.read_bytes()))}).json()
    assert body["format"] == "webdataset" and body["shards"] >= 2 and body["uri"] is None and body["verified"] == 120
    folder = app_settings.resolved_data_dir / "objects" / "tenants"
    index = DatasetIndex.read(next(folder.glob(f"*/datasets/{body['id']}/index.json")))
    assert index.counts() == body["splits"] and index.shard_count() == body["shards"]
    assert all((folder.parent / index.base_uri.split("/objects/", 1)[1] / s.name).is_file() for s in index.splits["train"].shards)
    monkeypatch.setattr(app_settings, "inmemory_max_bytes", 10**12)
    small = api.post("/v1/datasets", files={"file": ("d.zip", io.BytesIO(archive.read_bytes()))}).json()
    assert small["shards"] == 0 and small["format"] == "imagefolder" and small["verified"] == 120
