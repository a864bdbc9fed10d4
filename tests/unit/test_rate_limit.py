"""The token bucket behind the per-tenant rate limit, on a clock the test moves."""

from __future__ import annotations

import pytest

from api.rate_limit import TokenBuckets


def test_a_burst_then_the_rate_and_the_wait_it_names():
    buckets = TokenBuckets()
    assert [buckets.take("a", rate=2, burst=3, now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", rate=2, burst=3, now=0.0) == pytest.approx(0.5)
    assert buckets.take("a", rate=2, burst=3, now=0.5) == 0.0
    assert buckets.take("a", rate=2, burst=3, now=0.6) == pytest.approx(0.4)


def test_tenants_have_buckets_of_their_own_and_refill_only_to_the_burst():
    buckets = TokenBuckets()
    for _ in range(3):
        buckets.take("a", rate=1, burst=3, now=0.0)
    assert buckets.take("a", rate=1, burst=3, now=0.0) > 0
    assert buckets.take("b", rate=1, burst=3, now=0.0) == 0.0
    assert [buckets.take("a", rate=1, burst=3, now=100.0) for _ in range(4)][-1] > 0
