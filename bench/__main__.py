"""``python -m bench all|train|meal|api|cuda|ranks|streaming``: run benchmarks, print one markdown report, write ``.bench/results.md``.

Measuring only: ``python -m bench.readme`` copies the written reports into README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench import service, streaming_memory
from kdcore.bench import cuda, meal, ranks, streaming, train_loop
from kdcore.bench.results import RESULTS_FILE, Section, machine, report, write_report

# One thread by default: on a shared or small machine, several threads per process oversubscribe the
# cores (OpenMP barriers spin while another process holds the core) and timings swing by 5× or more.
DEFAULT_THREADS = 1
BENCHES = {
    "train": lambda work: [train_loop.run(work / "train")],
    "meal": lambda work: [meal.run(work / "meal")],
    "api": lambda work: service.run(work / "api"),
    "cuda": lambda work: cuda.run(work / "cuda"),
    "ranks": lambda work: [ranks.run(work / "ranks")],
    "streaming": lambda work: [*streaming.run(work / "streaming"), streaming_memory.run(work / "streaming-memory")],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("which", nargs="*", default=["all"], choices=["all", *BENCHES], help="benchmarks to run (default: all)")
    parser.add_argument("--output", type=Path, default=None, help=f"where to write the markdown (default {RESULTS_FILE})")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS", DEFAULT_THREADS)),
        help=f"CPU threads for torch here and in the service it starts (default: OMP_NUM_THREADS, else {DEFAULT_THREADS})",
    )
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    chosen = list(BENCHES) if "all" in args.which else list(dict.fromkeys(args.which))
    started, before = time.monotonic(), machine()
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="kdcore-bench-") as folder:
        for name in chosen:
            print(f"[bench] {name} ...", file=sys.stderr)
            sections += BENCHES[name](Path(folder))
    text = report(sections, started, before)
    print(text)
    path = write_report(text, args.output or RESULTS_FILE)
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
