"""The embedded broker's transport: a consumer racing a producer process only ever reads whole messages,
and a message that cannot be read is set aside instead of killing the consumer."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

from kombu import Connection

TRANSPORT = "core.broker_filesystem:Transport"
ROOT = Path(__file__).resolve().parents[2]
PRODUCER = """
import sys
from kombu import Connection
folder, count = sys.argv[1], int(sys.argv[2])
options = {"data_folder_in": folder + "/queue", "data_folder_out": folder + "/queue", "processed_folder": folder + "/processed",
           "control_folder": folder + "/control", "bad_folder": folder + "/bad"}
with Connection("filesystem://", transport=sys.argv[3], transport_options=options) as connection:
    queue = connection.SimpleQueue("jobs")
    for index in range(count):
        queue.put({"index": index, "padding": "x" * 200_000})
"""


def _options(folder: Path) -> dict[str, str]:
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "bad_folder": str(folder / "bad"),
    }


def test_a_consumer_racing_a_producer_process_reads_every_message_whole(tmp_path):
    count = 300
    options = _options(tmp_path)
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, str(tmp_path), str(count), TRANSPORT], cwd=ROOT)
    received: list[int] = []
    try:
        with Connection("filesystem://", transport=TRANSPORT, transport_options=options) as connection:
            queue = connection.SimpleQueue("jobs")
            deadline = time.monotonic() + 120
            while len(received) < count and time.monotonic() < deadline:
                try:
                    message = queue.get(block=True, timeout=0.05)
                except queue.Empty:
                    assert producer.poll() in (None, 0), "the producer failed"
                    continue
                body = message.payload
                assert len(body["padding"]) == 200_000
                received.append(body["index"])
                message.ack()
    finally:
        producer.wait(timeout=60)
    assert producer.returncode == 0
    assert sorted(received) == list(range(count))
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
    assert not list((tmp_path / "queue").iterdir()), "temporary or unconsumed files were left behind"


def test_an_unreadable_message_is_set_aside_and_the_next_one_delivered(tmp_path, caplog):
    options = _options(tmp_path)
    with Connection("filesystem://", transport=TRANSPORT, transport_options=options) as connection:
        queue = connection.SimpleQueue("aside")  # kombu keeps bindings per process: a queue name of its own
        torn, empty = "000000000000000_0torn.aside.msg", "000000000000000_1empty.aside.msg"  # named to be read first
        (tmp_path / "queue" / torn).write_bytes(b'{"body": "eyJ')
        (tmp_path / "queue" / empty).write_bytes(b"")
        queue.put({"index": 7})
        with caplog.at_level(logging.ERROR, logger="distillery.broker"):
            message = queue.get(block=True, timeout=5)
        assert message.payload == {"index": 7}
        message.ack()
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == [torn, empty]
    assert sum("cannot be read" in r.getMessage() for r in caplog.records) == 2
