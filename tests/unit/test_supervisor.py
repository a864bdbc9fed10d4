"""core.supervisor on real child processes: a dying worker is restarted after a back-off that doubles up to
its cap, and a worker that stayed up past the stable time starts the back-off over.

The timings are scaled down (0.4 s doubling to 1.6 s, stable after 2 s) so the real loop runs in
about ten seconds. Each worker run appends its start and end times to a log; the "API" is a child
that ends once the log shows enough runs, which ends ``supervise`` as a real API exit would.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from core.supervisor import RestartTiming, supervise

TIMING = RestartTiming(first_backoff_s=0.4, max_backoff_s=1.6, stable_after_s=2.0, poll_s=0.02)
STAYS_UP_ON_RUN = 5  # this run outlives stable_after_s; the others exit at once
STAY_UP_S = 2.4
# between one run's end and the next run's start: the back-off, then at most a poll and a Python start-up
SLACK_S = 0.35

WORKER = """
import sys, time
log, stays_up_on_run, stay_up_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with open(log, "a") as out:
    out.write(f"start {time.time()}\\n")
with open(log) as lines:
    run = sum(line.startswith("start") for line in lines)
if run == stays_up_on_run:
    time.sleep(stay_up_s)
with open(log, "a") as out:
    out.write(f"end {time.time()}\\n")
sys.exit(1)
"""

API = """
import sys, time
log, runs = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 30
while time.time() < deadline:
    with open(log) as lines:
        if sum(line.startswith("start") for line in lines) >= runs:
            sys.exit(0)
    time.sleep(0.02)
sys.exit(3)
"""


def _times(log: Path, kind: str) -> list[float]:
    return [float(line.split()[1]) for line in log.read_text().splitlines() if line.startswith(kind)]


def test_a_dying_worker_is_restarted_with_a_doubling_back_off_that_resets_once_it_stayed_up(tmp_path: Path):
    log = tmp_path / "runs.log"
    log.touch()
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "api.py").write_text(API)
    runs = STAYS_UP_ON_RUN + 1
    # -S: no site imports, so a child starts in tens of milliseconds and the gaps measure the back-off
    api = [sys.executable, "-S", str(tmp_path / "api.py"), str(log), str(runs)]
    worker = [sys.executable, "-S", str(tmp_path / "worker.py"), str(log), str(STAYS_UP_ON_RUN), str(STAY_UP_S)]
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert supervise(api, [worker], TIMING) == 0
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    starts, ends = _times(log, "start"), _times(log, "end")
    assert len(starts) == runs and len(ends) >= runs - 1, log.read_text()
    gaps = [next_start - end for end, next_start in zip(ends, starts[1:], strict=False)]
    # runs 1-4 die at once: 0.4, 0.8, 1.6, then capped at 1.6; run 5 stayed up 2.4 s > 2 s, so back to 0.4
    expected = [0.4, 0.8, 1.6, 1.6, 0.4]
    assert len(gaps) == len(expected), gaps
    for gap, delay in zip(gaps, expected, strict=True):
        assert delay <= gap < delay + SLACK_S, (gaps, expected)
    assert ends[STAYS_UP_ON_RUN - 1] - starts[STAYS_UP_ON_RUN - 1] >= TIMING.stable_after_s
