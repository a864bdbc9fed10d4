"""The client half of the ``distillery`` command: upload, submit, watch, pause, resume, retry, cancel, delete and download over HTTP.

Configured by ``DISTILLERY_URL`` (default http://127.0.0.1:8000) and ``DISTILLERY_API_KEY``. What a
script needs (IDs, a status word, file paths) goes alone on stdout, one per line; everything meant
for a person goes to stderr. ``submit --wait`` and ``events`` exit 0 only when the job succeeded (a paused job ends the watch too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from client.client import DistilleryClient, DistilleryError
from client.models import Job, JobEvent, JobStatus, iso_utc

TEACHER_FORMATS = ("safetensors", "state_dict", "onnx", "torchscript", "exported_program")
JOB_STATUSES = typing.get_args(JobStatus)
human = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


def add_client_commands(commands: argparse._SubParsersAction) -> None:
    teachers = commands.add_parser("teachers", help="upload teacher models").add_subparsers(dest="teachers_command", required=True)
    upload = teachers.add_parser("upload", help="upload a teacher; prints its ID")
    upload.add_argument("file", type=Path)
    upload.add_argument("--format", required=True, choices=TEACHER_FORMATS)
    upload.add_argument("--arch", help="architecture name, needed for safetensors and state_dict (e.g. cifar_resnet32x4, resnet50)")
    upload.add_argument("--num-classes", type=int, required=True)
    upload.add_argument("--input-size", required=True, help="C,H,W such as 3,32,32")
    upload.add_argument("--mean", help="per-channel mean such as 0.5,0.5,0.5")
    upload.add_argument("--std", help="per-channel std such as 0.5,0.5,0.5")
    upload.add_argument("--name")
    upload.add_argument("--arch-kwargs", help='constructor arguments for --arch, a JSON object such as \'{"img_size":32,"patch_size":4}\'')
    upload.set_defaults(client_command=_teacher_upload)

    datasets = commands.add_parser("datasets", help="upload datasets").add_subparsers(dest="datasets_command", required=True)
    upload = datasets.add_parser("upload", help="upload an ImageFolder .zip or .tar.gz; prints its ID")
    upload.add_argument("file", type=Path)
    upload.add_argument("--name")
    upload.set_defaults(client_command=_dataset_upload)

    submit = commands.add_parser("submit", help="submit a job from a JSON file ('-' reads stdin); prints its ID")
    submit.add_argument("spec", help="job.json, the body of POST /v1/jobs")
    submit.add_argument("--wait", action="store_true", help="follow the job with a progress bar; exit 0 only if it succeeds")
    submit.add_argument("--idempotency-key", help="resubmitting with the same key returns the same job")
    submit.add_argument("--teacher", action="append", help="a teacher ID to use instead of the file's 'teachers' (repeat for several)")
    submit.add_argument("--dataset", help="a dataset ID (or builtin:NAME) to use instead of the file's 'dataset'")
    submit.set_defaults(client_command=_submit)

    status = commands.add_parser("status", help="print a job's status (details on stderr)")
    status.add_argument("job")
    status.add_argument("--json", action="store_true", help="print the whole job object on stdout")
    status.set_defaults(client_command=_status)

    listing = commands.add_parser("list", help="list jobs, newest first: IDs on stdout, a table on stderr")
    listing.add_argument("--status", choices=JOB_STATUSES)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="one job object per line on stdout")
    listing.set_defaults(client_command=_list)

    cancel = commands.add_parser("cancel", help="cancel a queued, running, pausing or paused job")
    cancel.add_argument("job")
    cancel.set_defaults(client_command=_cancel)

    delete = commands.add_parser("delete", help="delete an ended job with its events, artifacts and checkpoints")
    delete.add_argument("job")
    delete.set_defaults(client_command=_delete)

    for name, summary in (
        ("pause", "pause a job: it stops after writing a checkpoint and frees its worker"),
        ("resume", "resume a paused job from the checkpoint it paused at"),
        ("retry", "run a failed job again as a new attempt, from its newest checkpoint"),
    ):
        lifecycle = commands.add_parser(name, help=summary)
        lifecycle.add_argument("job")
        lifecycle.set_defaults(client_command=_lifecycle, action=name)

    checkpoints = commands.add_parser("checkpoints", help="list a job's checkpoints (IDs on stdout, a table on stderr), or download one's student")
    checkpoints.add_argument("job")
    checkpoints.add_argument("--student", metavar="CKPT", help="download the student of this checkpoint (ckpt_…) as safetensors; prints the path")
    checkpoints.add_argument("-o", "--output", type=Path, default=Path("."), help="folder to write the student into")
    checkpoints.add_argument("--json", action="store_true", help="one checkpoint object per line on stdout")
    checkpoints.set_defaults(client_command=_checkpoints)

    events = commands.add_parser("events", aliases=["logs"], help="stream a job's status changes and metrics until it ends")
    events.add_argument("job")
    events.add_argument("--after", type=int, default=0, help="start after this event seq")
    events.add_argument("--json", action="store_true", help="one event object per line")
    events.set_defaults(client_command=_events)

    download = commands.add_parser("download", help="download a job's artifacts; prints the file paths")
    download.add_argument("job")
    download.add_argument("--kind", help="student_safetensors, student_torchscript, student_onnx or report (default: all)")
    download.add_argument("-o", "--output", type=Path, default=Path("."), help="folder to write into")
    download.set_defaults(client_command=_download)


def run_client_command(args: argparse.Namespace) -> int:
    client = DistilleryClient()
    try:
        return args.client_command(client, args)
    except DistilleryError as exc:
        hint = " (set DISTILLERY_API_KEY to a key from 'distillery keys create --tenant NAME')" if exc.status == 401 else ""
        human.print(f"error: {exc.detail}{hint}", markup=False)
        return 1
    except httpx.TransportError as exc:
        human.print(f"error: cannot reach Distillery at {client.url} ({type(exc).__name__}); start it with 'distillery up' or set DISTILLERY_URL", markup=False)
        return 1
    except BrokenPipeError:  # `distillery events JOB | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, ValueError) as exc:
        human.print(f"error: {exc}", markup=False)
        return 2
    finally:
        client.close()


def _teacher_upload(client: DistilleryClient, args: argparse.Namespace) -> int:
    teacher = client.upload_teacher(
        args.file,
        format=args.format,
        num_classes=args.num_classes,
        input_size=args.input_size,
        arch=args.arch,
        mean=args.mean,
        std=args.std,
        name=args.name,
        arch_kwargs=args.arch_kwargs,
    )
    human.print(
        f"uploaded teacher {teacher.id}: {teacher.arch or teacher.format}, {teacher.params:,} parameters, {teacher.num_classes} classes, input {teacher.input_size}",
        markup=False,
    )
    print(teacher.id)
    return 0


def _dataset_upload(client: DistilleryClient, args: argparse.Namespace) -> int:
    dataset = client.upload_dataset(args.file, name=args.name)
    human.print(f"uploaded dataset {dataset.id}: {dataset.num_classes} classes, splits {dataset.splits}", markup=False)
    print(dataset.id)
    return 0


def _read_spec(source: str) -> dict[str, Any]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{source} must hold a JSON object, the body of POST /v1/jobs")
    return spec


def _submit(client: DistilleryClient, args: argparse.Namespace) -> int:
    spec = _read_spec(args.spec)
    if args.teacher:
        spec["teachers"] = args.teacher
    if args.dataset:
        spec["dataset"] = args.dataset
    job = client.submit_job(spec, idempotency_key=args.idempotency_key)
    print(job.id, flush=True)
    human.print(f"submitted {job.id} ({job.method}); status {job.status}", markup=False)
    if not args.wait:
        return 0
    return _report_end(_follow(client, job))


def _status(client: DistilleryClient, args: argparse.Namespace) -> int:
    job = client.get_job(args.job)
    if args.json:
        print(job.model_dump_json(indent=2))
        return 0
    progress = job.progress
    phase = f" phase={job.phase}" if job.phase else ""
    human.print(
        f"{job.id} {job.name or ''} method={job.method} status={job.status}{phase} attempts={job.attempts} epoch {progress.epoch}/{progress.epochs} ({progress.fraction:.0%})",
        markup=False,
    )
    for span in job.phases:
        ended = span.finished_at or datetime.now(UTC)
        human.print(f"  {span.name:<16} {(ended - span.started_at).total_seconds():8.1f} s{'' if span.finished_at else '  (now)'}", markup=False)
    for name in ("train/loss", "val/top1", "val/top5", "teacher/val/top1", "time/samples_per_second"):
        if name in job.metrics:
            human.print(f"  {name} = {job.metrics[name]:.4g}", markup=False)
    if job.error:
        human.print(f"  error {job.error.code}: {job.error.message}", markup=False)
    print(job.status)
    return 0


def _list(client: DistilleryClient, args: argparse.Namespace) -> int:
    jobs = []
    for job in client.list_jobs(status=args.status, limit=min(args.limit, 500)):
        jobs.append(job)
        if len(jobs) >= args.limit:
            break
    if args.json:
        for job in jobs:
            print(job.model_dump_json())
        return 0
    table = Table("id", "status", "method", "name", "epoch", "val top-1", "created")
    for job in jobs:
        top1 = job.metrics.get("val/top1")
        table.add_row(
            job.id,
            job.status,
            job.method,
            job.name or "",
            f"{job.progress.epoch}/{job.progress.epochs}",
            f"{top1:.1%}" if top1 is not None else "",
            iso_utc(job.created_at),
        )
    human.print(table)
    for job in jobs:
        print(job.id)
    return 0


def _cancel(client: DistilleryClient, args: argparse.Namespace) -> int:
    job = client.cancel_job(args.job)
    human.print(
        f"{job.id}: {'cancelled' if job.status == 'cancelled' else 'cancellation requested; it stops within seconds'} (status {job.status})", markup=False
    )
    print(job.id)
    return 0


def _delete(client: DistilleryClient, args: argparse.Namespace) -> int:
    client.delete_job(args.job)
    human.print(f"{args.job}: deleted, with its events, artifacts and checkpoints", markup=False)
    return 0


def _lifecycle(client: DistilleryClient, args: argparse.Namespace) -> int:
    job = {"pause": client.pause_job, "resume": client.resume_job, "retry": client.retry_job}[args.action](args.job)
    then = {
        "pausing": "it stops after its next checkpoint; 'distillery resume' continues it",
        "paused": "'distillery resume' continues it",
        "queued": "a worker picks it up from its newest checkpoint",
    }
    human.print(f"{job.id}: status {job.status}; {then.get(job.status, '')}".rstrip("; "), markup=False)
    print(job.id)
    return 0


def _checkpoints(client: DistilleryClient, args: argparse.Namespace) -> int:
    if args.student:
        path = client.download_checkpoint_student(args.student, args.output)
        human.print(f"downloaded {path} ({path.stat().st_size:,} bytes)", markup=False)
        print(path)
        return 0
    items = client.checkpoints(args.job)
    if args.json:
        for item in items:
            print(item.model_dump_json())
        return 0
    table = Table("id", "step", "epoch", "val top-1", "size", "created")
    for item in items:
        top1 = item.metrics.get("val/top1")
        size = f"{item.size_bytes / 1e6:.1f} MB" if item.size_bytes is not None else ""
        table.add_row(item.id, str(item.step), str(item.epoch or ""), f"{top1:.1%}" if top1 is not None else "", size, iso_utc(item.created_at))
    human.print(table)
    for item in items:
        print(item.id)
    return 0


def _event_line(event: JobEvent) -> str:
    if event.type == "status":
        return f"{event.time} status {event.status}" + (f" {json.dumps(event.detail)}" if event.detail else "")
    if event.type == "phase":
        return f"{event.time} phase {event.name}"
    if event.type == "metric":
        epoch = f" epoch {event.epoch}" if event.epoch is not None else ""
        return f"{event.time} metric {event.name}={event.value:.6g} step {event.step}{epoch}"
    if event.type == "registry":
        return f"{event.time} registry {event.name} {json.dumps(event.detail)}"
    if event.type == "notice":
        return f"{event.time} notice {event.name}: {(event.detail or {}).get('message', '')}"
    return f"end: the job {event.status}"


def _events(client: DistilleryClient, args: argparse.Namespace) -> int:
    final = None
    for event in client.events(args.job, after=args.after):
        print(event.model_dump_json(exclude_none=True) if args.json else _event_line(event), flush=True)
        if event.type == "end":
            final = event.status
    return 0 if final == "succeeded" else 1


def _download(client: DistilleryClient, args: argparse.Namespace) -> int:
    for path in client.download(args.job, args.output, kind=args.kind):
        human.print(f"downloaded {path} ({path.stat().st_size:,} bytes, sha256 checked)", markup=False)
        print(path)
    return 0


@dataclass
class _Watch:
    """What the progress display shows, updated event by event."""

    status: str
    epochs: int
    phase: str | None = None
    epoch: int = 0
    step: int = 0
    steps: int | None = None
    loss: float | None = None
    top1: float | None = None

    def update(self, event: JobEvent) -> bool:
        """Apply one event; True when it closes an epoch or changes the status (worth a line in a log)."""
        if event.type in ("status", "end"):
            changed = event.status != self.status
            self.status = event.status or self.status
            return changed
        if event.type == "phase":
            self.phase = event.name
            return True
        if event.type != "metric":
            return False
        self.epoch = event.epoch or self.epoch
        if event.name == "train/loss":
            self.loss, self.step = event.value, event.step or self.step
        elif event.name == "val/top1":
            self.top1 = event.value
            return True
        return False

    def summary(self) -> str:
        loss = f"loss {self.loss:.4f}" if self.loss is not None else "loss -"
        top1 = f"val top-1 {self.top1:.1%}" if self.top1 is not None else "val top-1 -"
        phase = f" ({self.phase})" if self.phase and self.status in ("running", "pausing") else ""
        return f"{self.status}{phase}  epoch {self.epoch}/{self.epochs}  {loss}  {top1}"


def _follow(client: DistilleryClient, job: Job) -> Job:
    """Follow the job's event stream: a live bar on a terminal, one line per epoch in a log."""
    watch = _Watch(job.status, int(job.spec.get("training", {}).get("epochs", 0)))
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=human, disable=not human.is_terminal) as bar:
        task = bar.add_task(job.id, total=None, info=watch.summary())
        for event in client.events(job.id):
            if watch.update(event) and not human.is_terminal:
                human.print(f"{job.id}  {watch.summary()}", markup=False)
            if watch.steps is None and watch.step:
                watch.steps = client.get_job(job.id).progress.steps or None
            bar.update(task, total=watch.steps, completed=watch.step, info=watch.summary())
        final = client.get_job(job.id)
        bar.update(task, total=max(final.progress.steps, 1), completed=final.progress.step if final.status != "succeeded" else max(final.progress.steps, 1))
    return final


def _report_end(job: Job) -> int:
    if job.status == "succeeded":
        top1 = job.metrics.get("val/top1")
        human.print(
            f"{job.id} succeeded" + (f": val top-1 {top1:.1%}" if top1 is not None else "") + f"; download with 'distillery download {job.id} -o DIR'",
            markup=False,
        )
        return 0
    if job.status == "paused":
        human.print(f"{job.id} paused; continue it with 'distillery resume {job.id}'", markup=False)
        return 1
    reason = f" ({job.error.code}): {job.error.message}" if job.error else ""
    retry = f"; 'distillery retry {job.id}' runs it again from its newest checkpoint" if job.status == "failed" else ""
    human.print(f"{job.id} {job.status}{reason}{retry}", markup=False)
    return 1


def main(argv: list[str] | None = None) -> int:
    """``distillery``: the user commands here, plus whatever installed packages add (the service adds its operator commands)."""
    parser = argparse.ArgumentParser(prog="distillery", description="Distillery: distillation as a service")
    commands = parser.add_subparsers(dest="command", required=True)
    add_client_commands(commands)
    for plugin in entry_points(group="distillery.commands"):
        plugin.load()(commands)
    args = parser.parse_args(argv)
    if getattr(args, "client_command", None):
        return run_client_command(args)
    return int(args.operator_command(args))


if __name__ == "__main__":
    sys.exit(main())
