"""Per-tenant request rate limit: a token bucket per tenant in each API process (``DISTILLERY_RATE_LIMIT_RPS``).

A bucket holds up to ``DISTILLERY_RATE_LIMIT_BURST`` tokens (default twice the rate, at least 1)
and refills at the rate; each authenticated request takes one, and a request that finds none is
answered 429 with ``Retry-After``. The buckets are a plain dict touched only on the event loop, so a
check costs a dictionary lookup and a little arithmetic, with no lock, no database and no network.
The price: each API process counts on its own, so with ``DISTILLERY_API_PROCESSES=N`` a tenant may
reach N times the rate (a limit shared across processes and machines belongs in the proxy in front).
A rate of 0, the default, turns the limit off.
"""

from __future__ import annotations

import math
import time

from api.errors import ApiError
from core.config import get_settings


class TokenBuckets:
    MAX_TENANTS = 100_000  # far more than a deployment has; bounds memory should keys be made in bulk

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant → (tokens, when they were counted)

    def take(self, tenant: str, rate: float, burst: float, now: float | None = None) -> float:
        """Take a token; returns 0 when there was one, else the seconds until there will be."""
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.get(tenant, (burst, now))
        tokens = min(burst, tokens + (now - then) * rate)
        if tokens >= 1:
            if len(self._buckets) >= self.MAX_TENANTS and tenant not in self._buckets:
                self._buckets.clear()
            self._buckets[tenant] = (tokens - 1, now)
            return 0.0
        self._buckets[tenant] = (tokens, now)
        return (1 - tokens) / rate


RATE_LIMITS = TokenBuckets()


def enforce_rate_limit(tenant: str) -> None:
    settings = get_settings()
    rate = settings.rate_limit_rps
    if rate <= 0:
        return
    burst = settings.rate_limit_burst or max(1, math.ceil(2 * rate))
    wait = RATE_LIMITS.take(tenant, rate, burst)
    if wait > 0:
        raise ApiError(
            429,
            f"this tenant sent more than {rate:g} requests a second (bursts of {burst}), the limit of this API process; retry in {wait:.1f} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
