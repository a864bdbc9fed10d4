"""A self-contained HTML report: training curves as inline SVG, the teacher-vs-student table and where the time went."""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from kdcore.events import MetricPoint
from kdcore.export import ExportedFile
from kdcore.phases import PhaseSpan
from kdcore.profile import MIN_RUNS, NOISY_IQR, WARMUP_RUNS
from kdcore.spec import JobSpec


def _svg_curve(title: str, points: list[tuple[float, float]], width: int = 420, height: int = 180) -> str:
    if len(points) < 2:
        return f"<p>{html.escape(title)}: not enough points</p>"
    xs, ys = zip(*points, strict=True)
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    span_x, span_y = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    pad = 30
    coords = " ".join(f"{pad + (x - x0) / span_x * (width - 2 * pad):.1f},{height - pad - (y - y0) / span_y * (height - 2 * pad):.1f}" for x, y in points)
    return (
        f'<figure><figcaption>{html.escape(title)}</figcaption><svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>'
        f'<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{coords}"/>'
        f'<text x="{pad}" y="{pad - 10}" font-size="11">{y1:.4g}</text><text x="{pad}" y="{height - 8}" font-size="11">{y0:.4g} (step {x0:.0f}–{x1:.0f})</text>'
        "</svg></figure>"
    )


def _phases_table(phases: list[PhaseSpan]) -> str:
    if not phases:
        return ""
    rows = "".join(
        f"<tr><th>{html.escape(p.name)}</th><td>{p.seconds:.1f} s</td><td>{'' if p.finished is not None else 'still running when this report was written'}</td></tr>"
        for p in phases
    )
    return f"<h2>Phases (this attempt)</h2><table><tr><th>phase</th><th>time</th><th></th></tr>{rows}</table>"


def write_report(
    spec: JobSpec, metrics: dict[str, float], history: list[MetricPoint], artifacts: list[ExportedFile], path: Path, phases: list[PhaseSpan]
) -> ExportedFile:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for point in history:
        series[point.name].append((point.step, point.value))
    curves = "".join(
        _svg_curve(name, pts) for name, pts in sorted(series.items()) if name in ("train/loss", "val/top1", "val/loss") or name.startswith("method/")
    )

    def cell(key: str, unit: str = "") -> str:
        if key not in metrics:
            return "—"
        value = metrics[key]
        if unit == "%":
            return f"{value * 100:.2f}%"
        if unit == "ms":
            spread = f" ({metrics[key + '_p25']:.2f}–{metrics[key + '_p75']:.2f})" if key + "_p25" in metrics else ""
            flag = " ⚠ noisy" if metrics.get(key + "_noisy") else ""
            return f"{value:.2f} ms{spread}{flag}"
        if unit == "MB":
            return f"{value / 1e6:.2f} MB"
        return f"{value:,.0f}"

    def ratio(student_key: str, teacher_key: str) -> str:
        if student_key in metrics and metrics.get(teacher_key):
            return f"{metrics[student_key] / metrics[teacher_key]:.2f}×"
        return "—"

    sizes = "".join(f"<li>{html.escape(a.kind)}: {a.path.stat().st_size:,} bytes</li>" for a in artifacts)
    table = [
        ("top-1", "val/top1", "%"),
        ("top-5", "val/top5", "%"),
        ("parameters", "params", ""),
        ("MACs per image", "macs", ""),
        ("CPU latency, batch 1", "latency_ms_b1", "ms"),
        ("CPU latency, batch 32", "latency_ms_b32", "ms"),
        ("weights file", "file_bytes", "MB"),
    ]
    rows = "".join(
        f"<tr><th>{label}</th><td>{cell('teacher/' + key, unit)}</td><td>{cell(key if key.startswith('val/') else 'student/' + key, unit)}</td>"
        f"<td>{ratio(key if key.startswith('val/') else 'student/' + key, 'teacher/' + key)}</td></tr>"
        for label, key, unit in table
    )
    document = f"""<!doctype html><html><head><meta charset="utf-8"><title>Distillery report — {html.escape(spec.name or spec.method)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .8rem;text-align:right}}figure{{display:inline-block;margin:.5rem}}</style></head>
<body><h1>{html.escape(spec.name or "Distillation job")}</h1>
<p>Method <b>{html.escape(spec.method)}</b>, student <b>{html.escape(spec.student.arch)}</b>, {spec.training.epochs} epochs, batch {spec.training.batch_size}, seed {spec.training.seed}.</p>
<h2>Teacher vs student (validation split)</h2><table><tr><th></th><th>teacher</th><th>student (exported)</th><th>student / teacher</th></tr>{rows}</table>
<p>Latency: median of {MIN_RUNS} or more timed CPU forward passes (after {WARMUP_RUNS} untimed ones) of the exported TorchScript student and the eager teacher(s), in this worker process; in brackets the interquartile range. ⚠ noisy marks a measurement not to trust: its interquartile range exceeds {NOISY_IQR:.0%} of its median (the machine was busy), or the model was too slow to time {MIN_RUNS} times.</p>
{_phases_table(phases)}
<h2>Exported files</h2><ul>{sizes}</ul>
<h2>Curves</h2>{curves}
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document)
    return ExportedFile("report", path, {})
