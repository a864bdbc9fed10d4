"""From the ranks to the process that launched them: the callbacks' calls as JSON lines in one file.

Rank 0 appends a line for each call it makes (metric points, progress, a checkpoint written) and,
at the end, the run's result or its typed error; the launcher follows the file and makes the same
calls on its own callbacks (the worker's database callbacks), so a job on many ranks reports
exactly as one in a single process. A file works for ranks on one node and for Ray workers that
share the job's work folder, needs no port, and survives the death of any writer mid-run.

One file goes the other way: the launcher creates ``pause`` beside the relay when its caller asks
the job to pause, and rank 0 answers ``should_pause`` from it (the trainer has every rank agree).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kdcore import errors
from kdcore.events import MetricPoint, Progress, TrainCallbacks, TrainResult
from kdcore.export import ExportedFile

ERROR_TYPES: dict[str, type[errors.KdError]] = {
    cls.code: cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.KdError) and cls is not errors.KdError
}


PAUSE_FILE = "pause"


def request_pause(relay: Path) -> None:
    """The launcher's side: ask the ranks writing ``relay`` to stop at their next checkpoint."""
    (relay.parent / PAUSE_FILE).touch()


class RelayWriter(TrainCallbacks):
    """Rank 0's callbacks: each call becomes one flushed line; a pause is asked by the launcher's file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115  (open for the whole run)
        self.pause_file = path.parent / PAUSE_FILE

    def should_pause(self) -> bool:
        return self.pause_file.exists()

    def write(self, kind: str, **data: Any) -> None:
        self.file.write(json.dumps({"kind": kind, **data}) + "\n")
        self.file.flush()

    def on_progress(self, progress: Progress) -> None:
        self.write("progress", **asdict(progress))

    def on_metrics(self, points: list[MetricPoint]) -> None:
        self.write("metrics", points=[asdict(p) for p in points])

    def on_checkpoint(self, path: Path, global_step: int, epoch: int, epoch_end: bool) -> None:
        self.write("checkpoint", path=str(path), global_step=global_step, epoch=epoch, epoch_end=epoch_end)

    def on_phase(self, name: str) -> None:
        self.write("phase", name=name)

    def on_notice(self, name: str, message: str) -> None:
        self.write("notice", name=name, message=message)

    def result(self, result: TrainResult) -> None:
        artifacts = [{"kind": a.kind, "path": str(a.path), "metadata": a.metadata} for a in result.artifacts]
        self.write("result", metrics=result.metrics, artifacts=artifacts, resumed_from_step=result.resumed_from_step)

    def error(self, error: errors.KdError) -> None:
        self.write("error", code=error.code, message=error.message)

    def close(self) -> None:
        self.file.close()


class RelayReader:
    """Follows the file: each :meth:`read` returns the complete lines written since the last one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


def replay(event: dict[str, Any], callbacks: TrainCallbacks) -> None:
    """Make the call a progress, metrics, checkpoint, phase or notice line records."""
    kind = event["kind"]
    if kind == "progress":
        callbacks.on_progress(Progress(event["epoch"], event["epochs"], event["step"], event["steps"]))
    elif kind == "metrics":
        callbacks.on_metrics([MetricPoint(**p) for p in event["points"]])
    elif kind == "checkpoint":
        callbacks.on_checkpoint(Path(event["path"]), event["global_step"], event["epoch"], event["epoch_end"])
    elif kind == "phase":
        callbacks.on_phase(event["name"])
    elif kind == "notice":
        callbacks.on_notice(event["name"], event["message"])


def result_of(event: dict[str, Any]) -> TrainResult:
    artifacts = [ExportedFile(a["kind"], Path(a["path"]), a["metadata"]) for a in event["artifacts"]]
    return TrainResult(metrics=event["metrics"], artifacts=artifacts, resumed_from_step=event["resumed_from_step"])


def error_of(event: dict[str, Any]) -> errors.KdError:
    """The rank's typed error, rebuilt so the caller handles it as if raised in its own process."""
    return ERROR_TYPES.get(event["code"], errors.KdError)(event["message"])
