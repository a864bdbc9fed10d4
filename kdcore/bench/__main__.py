"""``python -m kdcore.bench all|train|meal|api``: run benchmarks, print one markdown report, write ``.bench/results.md``."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from kdcore.bench import meal, service, train_loop
from kdcore.bench.results import Section, machine, report, write_report

BENCHES = {
    "train": lambda work: [train_loop.run(work / "train")],
    "meal": lambda work: [meal.run(work / "meal")],
    "api": lambda work: service.run(work / "api"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdcore.bench", description=__doc__)
    parser.add_argument("which", nargs="*", default=["all"], choices=["all", *BENCHES], help="benchmarks to run (default: all)")
    parser.add_argument("--output", type=Path, default=None, help="where to write the markdown (default .bench/results.md)")
    args = parser.parse_args(argv)
    chosen = list(BENCHES) if "all" in args.which else list(dict.fromkeys(args.which))
    started, before = time.monotonic(), machine()
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="kdcore-bench-") as folder:
        for name in chosen:
            print(f"[bench] {name} ...", file=sys.stderr)
            sections += BENCHES[name](Path(folder))
    text = report(sections, started, before)
    print(text)
    path = write_report(text, args.output) if args.output else write_report(text)
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
