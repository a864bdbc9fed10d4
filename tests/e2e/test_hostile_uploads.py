"""Hostile uploads and greedy tenants against a live server that accepts code models.

Each payload that would run code touches a marker file; each archive that would escape names a
marker path. After every upload is refused (4xx with a reason), no marker exists anywhere and
nothing inflated. A tenant over its storage quota or its active-job limit gets 429 with Retry-After.
"""

from __future__ import annotations

import io
import os
import pickle
import secrets
import socket
import struct
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save

from api.services.teachers import CODE_MODEL_ADDRESS_SPACE_BYTES, inspect_teacher, run_isolated
from e2e.conftest import running_service
from e2e.test_faults import tiny_job
from kdcore.errors import BadTeacher
from kdcore.models import create_model
from kdcore.spec import TeacherSource

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
GiB = 1 << 30
CRC32_OF_10_GIB_OF_ZEROS = 0xF41D912F  # zlib.crc32(bytes(10 * GiB)), precomputed: it takes seconds


class RunsCommand:
    """Unpickling this runs ``os.system(command)``: the GLOBAL opcode names posix.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    with running_service("postgres", root, workers=0, DISTILLERY_ALLOW_CODE_MODELS="1") as service:
        service.markers = root / "markers"  # type: ignore[attr-defined]
        service.markers.mkdir()
        yield service


def _refused(response, *words: str) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    for word in words:
        assert word.lower() in response.json()["detail"].lower(), response.json()["detail"]


def _teacher(client, content: bytes, fmt: str, **form):
    data = {"format": fmt, "num_classes": "10", "input_size": "3,32,32", **form}
    if fmt in ("safetensors", "state_dict"):
        data.setdefault("arch", "cifar_resnet8")
    return client.post("/v1/teachers", files={"file": ("model.bin", content)}, data=data)


def _splice(archive: bytes, member_suffix: str, payload: bytes) -> bytes:
    """A copy of a torch zip archive with one member's bytes replaced."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, payload if info.filename.endswith(member_suffix) else source.read(info))
    return out.getvalue()


def _scripted(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def _exported() -> bytes:
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(torch.nn.Linear(4, 10).eval(), (torch.rand(2, 4),)), buffer)
    return buffer.getvalue()


@pytest.mark.slow
def test_no_pickle_runs_whatever_the_format_says(hostile):
    """Pickle RCE as a raw .pt, inside a torch zip, dressed as TorchScript and as a .pt2: all 422, no marker."""
    client, marker = hostile.client(), hostile.markers / "pickle-ran"
    evil = pickle.dumps(RunsCommand(f"touch {marker}"), protocol=2)
    saved = io.BytesIO()
    torch.save({"conv.weight": torch.zeros(1), "evil": RunsCommand(f"touch {marker}")}, saved)
    state_zip = io.BytesIO()
    torch.save(create_model("cifar_resnet8", num_classes=10).state_dict(), state_zip)
    torchscript = _scripted(create_model("cifar_resnet8", num_classes=10).eval())
    before = client.get("/v1/teachers").json()["items"]
    _refused(_teacher(client, evil, "state_dict"), "weights-only")
    _refused(_teacher(client, saved.getvalue(), "state_dict"), "weights-only")
    _refused(_teacher(client, _splice(state_zip.getvalue(), "data.pkl", evil), "state_dict"), "weights-only")
    _refused(_teacher(client, evil, "torchscript"), "torchscript")
    _refused(_teacher(client, saved.getvalue(), "torchscript"), "posix.system")
    _refused(_teacher(client, _splice(torchscript, "data.pkl", evil), "torchscript"), "posix.system")
    _refused(_teacher(client, _splice(torchscript, "constants.pkl", evil), "torchscript"), "posix.system")
    _refused(_teacher(client, _splice(_exported(), "sample_inputs/model.pt", saved.getvalue()), "exported_program", input_size="1,1,4"), "pickle")
    _refused(_teacher(client, evil, "exported_program"), ".pt2")
    _refused(_teacher(client, evil, "safetensors"), "safetensors")
    _refused(_teacher(client, evil, "onnx", arch=""), "onnx")
    assert not marker.exists()
    assert client.get("/v1/teachers").json()["items"] == before


@pytest.mark.slow
def test_a_real_torchscript_teacher_is_accepted_in_isolation(hostile):
    response = _teacher(hostile.client(), _scripted(create_model("cifar_resnet8", num_classes=10).eval()), "torchscript")
    assert response.status_code == 201, response.text
    assert response.json()["supports_features"] is False and response.json()["params"] > 0


def test_safetensors_with_a_huge_header_is_refused(hostile):
    client, weights = hostile.client(), _weights()
    _refused(_teacher(client, struct.pack("<Q", 1 << 62) + weights[8:], "safetensors"), "header")
    _refused(_teacher(client, struct.pack("<Q", len(weights) - 16) + weights[8:], "safetensors"), "header")


def _onnx_model(external: str) -> bytes:
    """x·W + b where W (an initializer) or b (a Constant node's tensor) points at a file outside the upload."""
    weight, bias = numpy_helper.from_array(torch.ones(3 * 32 * 32, 10).numpy(), "w"), numpy_helper.from_array(torch.zeros(10).numpy(), "b_value")
    target = weight if external == "initializer" else bias
    target.ClearField("raw_data")
    target.data_location = TensorProto.EXTERNAL
    target.external_data.add(key="location", value="../../../../etc/passwd")
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("Constant", [], ["b"], value=bias),
        helper.make_node("Add", ["logits", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


@pytest.mark.parametrize("external", ["initializer", "constant node"])
def test_onnx_with_external_data_is_refused(hostile, external):
    _refused(_teacher(hostile.client(), _onnx_model(external), "onnx", arch=""), "external data")


@pytest.mark.slow
def test_code_model_loader_has_no_network_no_memory_and_a_deadline(hostile, tmp_path):
    """The confinement itself: a connection to the live API fails, a 12 GiB allocation fails, a spinning model is stopped."""
    connect = f"import socket\ntry:\n socket.create_connection(('127.0.0.1', {hostile.port}), timeout=5); print('connected')\nexcept OSError as e: print('refused', e.errno)"
    with socket.create_connection(("127.0.0.1", hostile.port), timeout=5):
        pass  # reachable from here
    assert run_isolated([sys.executable, "-c", connect], timeout_s=30)[1].startswith("refused")

    class Hog(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.size = CODE_MODEL_ADDRESS_SPACE_BYTES

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :10] + torch.empty([self.size], dtype=torch.uint8)[:1].float()

    class Spin(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            while bool(x.sum() > -1.0):
                x = x + 1.0
            return x.flatten(1)[:, :10]

    _refused(_teacher(hostile.client(), _scripted(Hog()), "torchscript"), "can't allocate memory")
    (tmp_path / "spin.pt").write_bytes(_scripted(Spin()))
    with pytest.raises(BadTeacher, match="longer than 5 s"):
        inspect_teacher(TeacherSource(path=tmp_path / "spin.pt", format="torchscript", num_classes=10, input_size=(3, 32, 32)), timeout_s=5)


def zip64_bomb(uncompressed: int = 10 * GiB, name: str = "train/a/zeros.png") -> bytes:
    """A real ZIP64 deflate bomb: ``uncompressed`` bytes of zeros in about a thousandth of that.

    1 MiB of zeros deflated and full-flushed is a self-contained, byte-aligned block; repeating it
    and closing with an empty final block is a valid stream. CRC is only right for the 10 GiB default.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = block * (uncompressed >> 20) + b"\x03\x00"
    crc, raw_name = CRC32_OF_10_GIB_OF_ZEROS, name.encode()
    sizes = struct.pack("<HHQQ", 1, 16, uncompressed, len(data))
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(raw_name), len(sizes)) + raw_name + sizes
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 0x032D, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(raw_name), len(sizes), 0, 0, 0, 0o100644 << 16, 0
        )
        + raw_name
        + sizes
    )
    offset = len(local) + len(data)
    end64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1, 1, len(central), offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, offset + len(central), 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), offset, 0)
    return local + data + central + end64 + locator + end


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, content in members:
            archive.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def tar_member(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", content: bytes | None = None, claimed_size: int | None = None
) -> tuple[tarfile.TarInfo, bytes | None]:
    """One tar member; ``claimed_size`` writes a header for that many bytes and no data (refused at the header)."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(content or b"") if claimed_size is None else claimed_size
    return info, content


def test_archives_that_inflate_or_escape_are_refused_before_extraction(hostile):
    client, token = hostile.client(), secrets.token_hex(4)
    bomb = zip64_bomb()
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:  # a real archive that a naive server would inflate to 10 GiB
        assert archive.infolist()[0].file_size == 10 * GiB and archive.open(archive.infolist()[0]).read(1 << 20) == bytes(1 << 20)
    _refused(client.post("/v1/datasets", files={"file": ("bomb.zip", bomb)}), "unpack to")
    _refused(client.post("/v1/datasets", files={"file": ("bomb.tar.gz", tar_gz([tar_member("train/a/huge.png", claimed_size=10 * GiB)]))}), "unpack to")
    _refused(client.post("/v1/datasets", files={"file": ("lying.zip", lying_zip())}), "corrupt")
    escapes = [
        zip_entry(f"../../escaped-{token}.png"),
        zip_entry(f"/tmp/escaped-{token}.png"),
        zip_entry("train/a/link.png", symlink_to=f"/tmp/escaped-{token}"),
        tar_gz([tar_member(f"../escaped-{token}.png", content=b"x")]),
        tar_gz([tar_member("train/a/hard.png", tarfile.LNKTYPE, f"/tmp/escaped-{token}")]),
        tar_gz([tar_member("train/a/dev.png", tarfile.CHRTYPE)]),
        tar_gz([tar_member("train/a/fifo.png", tarfile.FIFOTYPE)]),
    ]
    for archive in escapes:
        response = client.post("/v1/datasets", files={"file": ("escape.bin", archive)})
        assert response.status_code == 422, response.text
    data_dir = Path(hostile.env["DISTILLERY_DATA_DIR"])
    assert not list(data_dir.parent.rglob(f"*escaped-{token}*")) and not list(Path("/tmp").glob(f"escaped-{token}*"))
    largest = max((p.stat().st_size for p in data_dir.rglob("*") if p.is_file()), default=0)
    assert largest < 32 << 20, "something inflated inside the data folder"
    assert all(item["builtin"] for item in client.get("/v1/datasets").json()["items"])


def zip_entry(name: str, symlink_to: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name)
        if symlink_to:
            info.external_attr = 0o120777 << 16
        archive.writestr(info, symlink_to or b"x")
    return buffer.getvalue()


def lying_zip() -> bytes:
    """64 MiB of zeros whose local and central headers claim 1 KiB: reading stops at 1 KiB and the CRC fails."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train/a/1.png", bytes(64 << 20))
    data = bytearray(buffer.getvalue())
    central = data.rindex(struct.pack("<I", 0x02014B50))
    for field in (22, central + 24):  # uncompressed size in the local header and in the central directory entry
        data[field : field + 4] = struct.pack("<I", 1024)
    return bytes(data)


def _weights() -> bytes:
    return save({k: v.contiguous() for k, v in create_model("cifar_resnet8", num_classes=10).state_dict().items()})


@pytest.fixture(scope="module")
def frugal(tmp_path_factory):
    """Room for two teachers and two active jobs per tenant; no worker, so jobs stay queued."""
    with running_service(
        "postgres",
        tmp_path_factory.mktemp("frugal"),
        workers=0,
        DISTILLERY_TENANT_MAX_STORAGE_BYTES=str(2 * len(_weights()) + 4096),
        DISTILLERY_TENANT_MAX_ACTIVE_JOBS="2",
    ) as service:
        yield service


def _too_many(response, *words: str) -> None:
    _refused(response, *words)
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 0


def test_storage_quota_answers_429_until_something_is_deleted(frugal):
    client, other = frugal.client(), frugal.client(frugal.cli("keys", "create", "--tenant", "other-storage"))
    first, second = (_teacher(client, _weights(), "safetensors") for _ in range(2))
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    _too_many(_teacher(client, _weights(), "safetensors"), "quota")
    _too_many(client.post("/v1/datasets", files={"file": ("d.zip", bytes(8192))}), "quota")  # refused before it is even opened
    assert _teacher(other, _weights(), "safetensors").status_code == 201
    assert client.delete(f"/v1/teachers/{first.json()['id']}").status_code == 204
    assert _teacher(client, _weights(), "safetensors").status_code == 201


def test_active_job_limit_answers_429_until_a_job_ends(frugal):
    client, other = frugal.client(), frugal.client(frugal.cli("keys", "create", "--tenant", "other-jobs"))
    jobs = [client.post("/v1/jobs", json=tiny_job(seed=n)) for n in range(2)]
    assert [j.status_code for j in jobs] == [201, 201], [j.text for j in jobs]
    _too_many(client.post("/v1/jobs", json=tiny_job(seed=2)), "queued or running")
    assert other.post("/v1/jobs", json=tiny_job(seed=2)).status_code == 201
    assert client.post(f"/v1/jobs/{jobs[0].json()['id']}/cancel").status_code == 202
    assert client.post("/v1/jobs", json=tiny_job(seed=2)).status_code == 201
