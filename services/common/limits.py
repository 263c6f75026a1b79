"""Request rate limits (token buckets, per process): per API key, and failed
authentications per client address."""

from __future__ import annotations

import time

from services.common.problems import Problem


class RateLimiter:
    def __init__(self, per_second: float, burst: int) -> None:
        self.rate = per_second
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def refuse_if_empty(self, key: str) -> None:
        """429 when `key` has no token left, without taking one (for failures counted later)."""
        tokens, last = self._buckets.get(key, (float(self.burst), time.monotonic()))
        if min(self.burst, tokens + (time.monotonic() - last) * self.rate) < 1:
            self.check(key)

    def check(self, key: str) -> None:
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            retry = (1 - tokens) / self.rate
            raise Problem(
                429,
                "Too many requests",
                f"more than {self.rate:g} requests/s for this key; retry in {retry:.2f}s",
                retry_after=round(retry, 2),
            )
        self._buckets[key] = (tokens - 1, now)
