"""The job report's HTML as a reader sees it: each phase with its time, and each latency as its median, spread and noise flag.

One real (tiny) kdcore run makes the metrics and phases the report is written from, so a metric
renamed in ``kdcore.finish`` or ``kdcore.profile`` shows up here as an empty cell of the report.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from factories import save_teacher
from PIL import Image

from kdcore.events import TrainCallbacks, TrainResult
from kdcore.phases import PhaseSpan
from kdcore.profile import Latency
from kdcore.report import write_report
from kdcore.spec import JobSpec
from kdcore.training import train

INPUT = (3, 8, 8)  # tiny images: the run and its latency timings stay cheap
CLASSES = 10
EMPTY = "—"
LATENCY_ROWS = {"CPU latency, batch 1": "latency_ms_b1", "CPU latency, batch 32": "latency_ms_b32"}


class _Tables(HTMLParser):
    """Every table's rows as lists of cell texts, under the heading (h2) that precedes the table."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._heading: str | None = None
        self._text: list[str] | None = None
        self._rows: list[list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h2", "td", "th"):
            self._text = []
        elif tag == "table":
            self._rows = self.tables.setdefault(self._heading or "", [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text or []).strip()
        if tag == "h2":
            self._heading = text
        elif tag in ("td", "th") and self._rows:
            self._rows[-1].append(text)
        elif tag == "table":
            self._rows = None
        if tag in ("h2", "td", "th"):
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def tables(report: Path) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(report.read_text())
    return parser.tables


def comparison(report_tables: dict[str, list[list[str]]]) -> dict[str, list[str]]:
    """The teacher-vs-student table by row label: [teacher, student, ratio]."""
    return {row[0]: row[1:] for row in report_tables["Teacher vs student (validation split)"][1:]}


def latency_text(metrics: dict[str, float], key: str) -> str:
    """What the report promises for one latency: median, its interquartile range, and the flag when not to be trusted."""
    flag = " ⚠ noisy" if metrics[f"{key}_noisy"] else ""
    return f"{metrics[key]:.2f} ms ({metrics[f'{key}_p25']:.2f}–{metrics[f'{key}_p75']:.2f}){flag}"


def noise_tree(root: Path, per_class: int = 2) -> Path:
    """An ImageFolder tree (train/ and val/) of random pictures: what the images show does not matter to the report."""
    pixels = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in range(CLASSES):
            (root / split / str(label)).mkdir(parents=True)
            for index in range(per_class):
                Image.fromarray(pixels.integers(0, 256, (INPUT[1], INPUT[2], 3), dtype=np.uint8)).save(root / split / str(label) / f"{index}.png")
    return root


def seconds(duration: str) -> float:
    """A phase's time as the report writes it: seconds to one decimal."""
    shown = re.fullmatch(r"(\d+\.\d) s", duration)
    assert shown, duration
    return float(shown.group(1))


@dataclass
class PhaseStarts(TrainCallbacks):
    """Each phase the run announces, with when it was announced."""

    starts: list[tuple[str, float]] = field(default_factory=list)

    def on_phase(self, name: str) -> None:
        self.starts.append((name, time.time()))


@dataclass
class FinishedRun:
    result: TrainResult
    phase_starts: list[tuple[str, float]]
    ended: float
    report: Path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> FinishedRun:
    work = tmp_path_factory.mktemp("report-run")
    spec = JobSpec(
        name="report of a tiny run",
        method="kd",
        teachers=[save_teacher(work, num_classes=CLASSES, input_size=INPUT)],
        student={"arch": "cifar_resnet8"},
        dataset={"root": noise_tree(work / "images")},
        training={"epochs": 1, "batch_size": 20, "input_size": list(INPUT), "augment": "none"},
        export=["safetensors"],
        work_dir=work / "run",
    )
    phases = PhaseStarts()
    result = train(spec, phases)
    ended = time.time()
    (report,) = [a.path for a in result.artifacts if a.kind == "report"]
    return FinishedRun(result, phases.starts, ended, report)


def test_every_cell_of_the_comparison_is_filled_from_the_metrics_the_run_wrote(finished_run):
    rows = comparison(tables(finished_run.report))
    assert list(rows) == ["top-1", "top-5", "parameters", "MACs per image", *LATENCY_ROWS, "weights file"]
    for label, (teacher, student, ratio) in rows.items():
        assert EMPTY not in (teacher, student, ratio), f"{label}: the report reads a metric the run did not write: {rows[label]}"
    metrics = finished_run.result.metrics
    for who in ("teacher", "student"):
        for key in LATENCY_ROWS.values():
            assert {f"{who}/{key}{part}" for part in ("", "_p25", "_p75", "_noisy")} <= metrics.keys()


def test_latency_rows_show_the_median_with_its_spread_and_the_noisy_flag_as_measured(finished_run):
    rows = comparison(tables(finished_run.report))
    metrics = finished_run.result.metrics
    for label, key in LATENCY_ROWS.items():
        teacher, student, _ = rows[label]
        assert teacher == latency_text(metrics, f"teacher/{key}")
        assert student == latency_text(metrics, f"student/{key}")


def test_the_phases_table_lists_each_phase_of_the_run_with_its_duration(finished_run):
    header, *rows = tables(finished_run.report)["Phases (this attempt)"]
    assert header == ["phase", "time", ""]
    announced = [name for name, _ in finished_run.phase_starts]
    assert [row[0] for row in rows] == announced
    assert announced[0] == "validating" and announced[-2:] == ["exporting", "evaluating"] and "training" in announced
    starts = [started for _, started in finished_run.phase_starts]
    for (name, took, note), started, next_started in zip(rows[:-1], starts[:-1], starts[1:], strict=True):  # a phase lasts until the next one starts
        assert note == "" and abs(seconds(took) - (next_started - started)) <= 0.051, (name, took, next_started - started)
    name, took, note = rows[-1]
    assert note == "" and seconds(took) <= finished_run.ended - starts[-1] + 0.05, (name, took)


def test_noisy_appears_exactly_beside_the_latency_that_is_flagged(tmp_path):
    steady = Latency.of([4.0, 5.0, 6.0] * 10)
    busy_machine = Latency.of([2.0, 2.0, 2.0, 300.0] * 10)
    assert not steady.noisy and busy_machine.noisy
    metrics = {**steady.metrics("student/latency_ms_b1"), **busy_machine.metrics("teacher/latency_ms_b1"), "student/latency_ms_b32": 7.5}
    spec = JobSpec(method="kd", student={"arch": "cifar_resnet8"}, training={"epochs": 1})
    still_running = PhaseSpan("evaluating", time.time() - 2.0)
    report = write_report(spec, metrics, [], [], tmp_path / "report.html", [PhaseSpan("training", 100.0, 112.34), still_running]).path

    report_tables = tables(report)
    rows = comparison(report_tables)
    assert rows["CPU latency, batch 1"][:2] == ["2.00 ms (2.00–76.50) ⚠ noisy", "5.00 ms (4.00–6.00)"]
    assert rows["CPU latency, batch 32"][:2] == [EMPTY, "7.50 ms"]  # a median measured without its spread is shown alone
    noisy_cells = [(label, column) for label, cells in rows.items() for column, text in enumerate(cells) if "noisy" in text]
    assert noisy_cells == [("CPU latency, batch 1", 0)]
    assert report_tables["Phases (this attempt)"][1] == ["training", "12.3 s", ""]
    evaluating, took, note = report_tables["Phases (this attempt)"][2]
    assert evaluating == "evaluating" and 2.0 <= seconds(took) < 10 and note == "still running when this report was written"
