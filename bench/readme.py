"""``python -m bench.readme``: copy measured reports from ``.bench/`` into README.md, between markers.

Kept apart from measuring, so a benchmark run never edits tracked files and a README update is
always a deliberate step: ``.bench/results.md`` (``make bench``) goes between the
``bench:start``/``bench:end`` markers, ``.bench/accuracy.md`` (``make bench-accuracy``) between
the ``bench-accuracy`` ones. A report that has not been written is left out.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = {"bench": ROOT / ".bench" / "results.md", "bench-accuracy": ROOT / ".bench" / "accuracy.md"}


def replace_block(text: str, marker: str, body: str) -> str:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {start} … {end} block; add the two markers where the table belongs")
    return pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for marker, source in BLOCKS.items():
        if source.exists():
            text = replace_block(text, marker, source.read_text())
            print(f"README.md: {marker} block from {source.relative_to(ROOT)}", file=sys.stderr)
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
