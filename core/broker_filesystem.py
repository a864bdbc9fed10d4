"""kombu's filesystem transport, made safe for a producer and a consumer working at the same time.

The stock transport opens the message file under its final name and then writes it, while the
consumer lists the folder, moves the file and reads it with no lock: a message caught in between
reads as empty, ``json.loads`` raises, and the worker dies with the job left ``queued``. Here a
message is written under a hidden temporary name, flushed, and ``os.replace``d into place, so a
``*.msg`` file is always whole; the consumer claims it with one ``os.rename`` into the processed
folder (same file system, so exactly one consumer wins), and a message that still cannot be read
(a disk fault, a file dropped in by hand) is moved to the ``bad`` folder with a log line instead
of raising. The exchange table in the control folder is created the same way, whole or not at all.

Celery selects it with ``broker_transport="core.broker_filesystem:Transport"`` (``core.celery_app``).
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.json import dumps, loads

log = logging.getLogger("distillery.broker")


def _write_whole(path: Path, data: bytes) -> Path:
    """Write ``data`` beside ``path`` under a name no reader looks at, flushed to disk; return that name."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return temp


class Channel(filesystem.Channel):
    # kombu's own classes disagree on the second name (AbstractChannel: message, filesystem.Channel:
    # payload), so no name satisfies both; kombu passes it by position.
    def _put(self, queue: str, payload: dict, **kwargs: object) -> None:  # type: ignore[override]
        name = f"{int(round(monotonic() * 1000)):015d}_{uuid.uuid4()}.{queue}.msg"  # padded: name order is arrival order
        final = Path(self.data_folder_out) / name
        try:
            os.replace(_write_whole(final, dumps(payload).encode()), final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add message {name!r} to {self.data_folder_out}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> dict:
        wanted = f"{queue}.msg"
        inbox, claimed_dir = Path(self.data_folder_in), Path(self.processed_folder)
        claimed_dir.mkdir(parents=True, exist_ok=True)
        for name in sorted(os.listdir(inbox)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = claimed_dir / name
            try:
                os.rename(inbox / name, claimed)
            except FileNotFoundError:  # another consumer claimed it first
                continue
            try:
                payload = loads(claimed.read_bytes())
            except (OSError, ValueError) as exc:
                self._set_aside(claimed, exc)
                continue
            if not self.store_processed:
                claimed.unlink(missing_ok=True)
            return payload
        raise Empty()

    def _set_aside(self, claimed: Path, reason: Exception) -> None:
        bad = Path(self.bad_folder)
        bad.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(claimed, bad / claimed.name)
        except OSError:
            claimed.unlink(missing_ok=True)
        log.error("broker message %s cannot be read (%s: %s); moved it to %s and carried on", claimed.name, type(reason).__name__, reason, bad)

    @property
    def bad_folder(self) -> str:
        return self.transport_options.get("bad_folder") or str(Path(self.data_folder_in).parent / "bad")

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        file = self._exchange_file(exchange)
        if not file.exists():
            self.control_folder.mkdir(exist_ok=True)
            temp = _write_whole(file, dumps([]).encode())
            try:
                os.link(temp, file)  # only if nobody created it meanwhile: an existing table is never replaced
            except FileExistsError:
                pass
            finally:
                temp.unlink()
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    Channel = Channel
