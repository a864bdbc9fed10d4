"""``python -m kdcore train spec.json``: run a job with no server; ``inspect-teacher`` checks one file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from kdcore.errors import KdError
from kdcore.events import MetricPoint, Progress, TrainCallbacks


class _PrintProgress(TrainCallbacks):
    def on_progress(self, progress: Progress) -> None:
        print(f"epoch {progress.epoch}/{progress.epochs} step {progress.step}/{progress.steps} ({progress.fraction:.0%})", file=sys.stderr)

    def on_phase(self, name: str) -> None:
        print(f"phase {name}", file=sys.stderr)

    def on_metrics(self, points: list[MetricPoint]) -> None:
        shown = {p.name: p.value for p in points if p.name in ("train/loss", "val/top1")}
        if shown:
            print("  " + "  ".join(f"{k}={v:.4f}" for k, v in shown.items()), file=sys.stderr)


def _invalid(what: str, exc: ValidationError) -> str:
    """One line naming the first wrong field and what is wrong with it."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{what} is not a valid {exc.title}: {where + ': ' if where else ''}{first['msg']}" + (
        f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    )


def _read_spec(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise SystemExit(f"error: {path}: no such file; give the path of a JSON job spec") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"error: cannot read {path} ({exc.strerror if isinstance(exc, OSError) else 'not UTF-8 text'}); give a JSON job spec") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdcore")
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train from a JSON job spec")
    train_cmd.add_argument("spec", type=Path)
    train_cmd.add_argument("--work-dir", type=Path, help="checkpoints and exports go here (overrides the spec)")
    inspect_cmd = commands.add_parser("inspect-teacher", help="load a teacher file and run it once; prints JSON")
    inspect_cmd.add_argument("source", help="a TeacherSource as JSON")
    commands.add_parser("methods", help="list the registered methods as JSON")
    shard_cmd = commands.add_parser("shard", help="write an ImageFolder tree as WebDataset shards plus index.json (upload the folder, register it by URI)")
    shard_cmd.add_argument("tree", type=Path, help="the folder holding train/<class>/<image> and val/<class>/<image>")
    shard_cmd.add_argument("out", type=Path)
    shard_cmd.add_argument("--shard-mb", type=int, default=256, help="about this many MB per shard (default 256)")
    args = parser.parse_args(argv)

    from kdcore.spec import JobSpec, TeacherSource

    try:
        if args.command == "train":
            from kdcore.distributed.launch import launch

            spec = JobSpec.model_validate_json(_read_spec(args.spec))
            if args.work_dir:
                spec = spec.model_copy(update={"work_dir": args.work_dir})
            result = launch(spec, _PrintProgress())
            print(json.dumps({"metrics": result.metrics, "artifacts": [{"kind": a.kind, "path": str(a.path)} for a in result.artifacts]}, indent=2))
        elif args.command == "inspect-teacher":
            from kdcore.models.loading import check_teacher

            loaded = check_teacher(TeacherSource.model_validate_json(args.source))
            print(json.dumps({"params": loaded.params, "supports_features": loaded.supports_features}))
        elif args.command == "shard":
            from kdcore.data.shards import write_shards

            index = write_shards(args.tree, args.out, args.shard_mb * 1024**2)
            print(json.dumps({"shards": index.shard_count(), "splits": index.counts(), "classes": len(index.classes), "bytes": index.size_bytes()}))
        else:
            from kdcore.methods import list_methods

            print(json.dumps([m.describe() for m in list_methods()], indent=2))
    except KdError as exc:
        print(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
        return 2
    except ValidationError as exc:
        print(f"error: {_invalid(str(getattr(args, 'spec', None) or 'the teacher source'), exc)}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        print(exc.code, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
