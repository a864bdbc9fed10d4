"""Start a job's ranks and stand over them until they end: the one entry that picks how a job runs.

A job of one rank trains in this process (:func:`kdcore.training.train`). A job on several devices of
this node starts ``python -m kdcore.distributed.node``, which runs torch's elastic launcher (what
``torchrun --standalone`` runs) with one process per device; a job on several nodes starts
``python -m kdcore.distributed.ray_driver``, which submits it to the Ray cluster as a Ray Train
``TorchTrainer``. Either way that child leads a new process group holding every rank (or the Ray
driver, whose death ends its Ray workers), and this process:

* relays what rank 0 reports (:mod:`kdcore.distributed.relay`) to the caller's callbacks;
* polls ``callbacks.should_cancel()`` and the time limit, and on either ends the whole group;
* on ``callbacks.should_pause()`` asks the ranks to pause (:func:`kdcore.distributed.relay.request_pause`):
  they agree at their next checkpoint (every ``checkpoint_every_steps`` and at each epoch end),
  stop there together, and rank 0's ``Paused`` is raised here, naming the step the run resumes at;
* ends the whole group when the launcher exits, for whatever reason, so no rank outlives the
  attempt. torch's launcher already stops every rank when one fails; the group kill is the backstop
  for a launcher that was itself killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kdcore.distributed.relay import PAUSE_FILE, RelayReader, error_of, replay, request_pause, result_of
from kdcore.distributed.world import world_size_of
from kdcore.errors import BadSpec, Cancelled, RankFailed, TimeLimitExceeded
from kdcore.events import TrainCallbacks, TrainResult
from kdcore.spec import JobSpec, TrainingConfig

POLL_S = 0.2
STOP_GRACE_S = 5.0
LOG_TAIL_CHARS = 1500


def ranks_dir(spec: JobSpec) -> Path:
    """Where a multi-rank run keeps its spec, relay file, launcher log and the ranks' pid files."""
    return Path(spec.work_dir) / "ranks"


def launch(spec: JobSpec, callbacks: TrainCallbacks | None = None, ray_address: str | None = None) -> TrainResult:
    """Train ``spec`` on as many ranks as it asks for, reporting through ``callbacks`` as :func:`kdcore.training.train` does."""
    callbacks = callbacks or TrainCallbacks()
    config = spec.training
    if config.nodes > 1:
        if not ray_address:
            raise BadSpec("training.nodes > 1 runs on a Ray cluster, and none is configured; set DISTILLERY_RAY_ADDRESS (or pass ray_address)")
        return supervise(spec, callbacks, ["-m", "kdcore.distributed.ray_driver", "--address", ray_address])
    if world_size_of(config) > 1:
        return supervise(spec, callbacks, ["-m", "kdcore.distributed.node"])
    from kdcore.training import train

    return train(spec, callbacks)


def supervise(spec: JobSpec, callbacks: TrainCallbacks, command: list[str]) -> TrainResult:
    folder = ranks_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(spec.model_dump_json())
    relay = folder / "events.jsonl"
    relay.unlink(missing_ok=True)
    (folder / PAUSE_FILE).unlink(missing_ok=True)
    log_path = folder / "launcher.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, *command, str(folder)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return follow(process, RelayReader(relay), callbacks, spec.training, log_path)
    finally:
        end_group(process)


def follow(process: subprocess.Popen, reader: RelayReader, callbacks: TrainCallbacks, config: TrainingConfig, log_path: Path) -> TrainResult:
    """Relay rank 0's reports until the launcher exits; stop it on cancel or at the time limit, ask the ranks to pause when the caller does."""
    started = time.monotonic()
    outcome: dict | None = None
    step = 0
    pausing = False
    while True:
        exited = process.poll() is not None
        for event in reader.read():
            if event["kind"] in ("result", "error"):
                outcome = event
                continue
            replay(event, callbacks)
            step = event.get("step", step) if event["kind"] == "progress" else step
        if exited:
            break
        if callbacks.should_cancel():
            raise Cancelled("the job was cancelled")
        if not pausing and callbacks.should_pause():
            request_pause(reader.path)
            pausing = True
        if config.time_limit_s is not None and time.monotonic() - started > config.time_limit_s:
            limit = config.time_limit_s
            raise TimeLimitExceeded(f"the job ran past its time limit of {limit:.0f} s near step {step}; raise training.time_limit_s or lower epochs")
        time.sleep(POLL_S)
    if outcome is not None and outcome["kind"] == "result":
        return result_of(outcome)
    if outcome is not None:
        raise error_of(outcome)
    tail = log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    raise RankFailed(f"a rank of the job died (launcher exit status {process.returncode}) before the run finished; last output:\n{tail}")


def end_group(process: subprocess.Popen) -> None:
    """SIGTERM the launcher's whole process group, SIGKILL whatever is left after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            process.poll()  # reap the launcher, or the group looks alive through its zombie
            if not group_alive(process.pid):
                return
            time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
