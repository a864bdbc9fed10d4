"""Latency as the report shows it: the median of many timed calls after a warm-up, its spread, and a flag when it is not to be trusted."""

from __future__ import annotations

import itertools
import time

import torch

from kdcore.profile import FLOOR_RUNS, MIN_RUNS, WARMUP_RUNS, Latency, cpu_latency


def test_quantiles_and_noise_flag_from_timings():
    steady = Latency.of([10.0] * 20 + [11.0] * 10)
    assert (steady.median_ms, steady.p25_ms, steady.p75_ms, steady.runs) == (10.0, 10.0, 11.0, 30)
    assert not steady.noisy
    assert Latency.of([2.0, 2.0, 2.0, 300.0] * 10).noisy  # a busy machine: the spread dwarfs the median
    assert Latency.of([5.0] * (MIN_RUNS - 1)).noisy  # too few calls to trust
    assert Latency.of([4.0, 5.0, 6.0] * 10).metrics("student/latency_ms_b1") == {
        "student/latency_ms_b1": 5.0,
        "student/latency_ms_b1_p25": 4.0,
        "student/latency_ms_b1_p75": 6.0,
        "student/latency_ms_b1_noisy": 0.0,
    }


def test_a_steady_model_is_timed_often_enough_after_its_warm_up():
    calls = []
    model = torch.nn.Linear(8, 4)

    def forward(x):
        calls.append(x.shape)
        return model(x.flatten(1)[:, :8])

    latency = cpu_latency(forward, (3, 4, 4), batch=2)
    assert latency.runs >= MIN_RUNS and len(calls) == latency.runs + WARMUP_RUNS
    assert calls[0] == (2, 3, 4, 4)
    assert 0 < latency.p25_ms <= latency.median_ms <= latency.p75_ms


def test_a_model_whose_calls_swing_widely_is_flagged():
    pauses = itertools.cycle([0.0005, 0.0005, 0.008, 0.008])

    def erratic(_):
        time.sleep(next(pauses))

    latency = cpu_latency(erratic, (1, 1, 1), batch=1)
    assert latency.noisy, latency
    assert latency.p75_ms - latency.p25_ms > latency.median_ms / 2


def test_a_slow_model_stops_at_the_time_cap_and_is_flagged():
    latency = cpu_latency(lambda _: time.sleep(0.25), (1, 1, 1), batch=1)
    assert FLOOR_RUNS <= latency.runs < MIN_RUNS and latency.noisy
