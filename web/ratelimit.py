"""Per-client token buckets: how many followed links one IP may record, so `/r/{code}` cannot
be used to flood the log. In memory, per server process; idle buckets are dropped."""

from __future__ import annotations

from dataclasses import dataclass

_PRUNE_AT = 100_000  # buckets kept before full (refilled) ones are dropped


@dataclass
class _Bucket:
    tokens: float
    at_ms: int


class RateLimiter:
    def __init__(self, per_second: float, burst: int) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.per_ms = per_second / 1000.0
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, client: str, now_ms: int) -> bool:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now_ms)
            bucket = self._buckets[client] = _Bucket(self.burst, now_ms)
        else:
            elapsed = max(0, now_ms - bucket.at_ms)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.per_ms)
            bucket.at_ms = now_ms
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def retry_after_s(self, client: str) -> int:
        bucket = self._buckets.get(client)
        missing = 1.0 - (bucket.tokens if bucket else 1.0)
        return max(1, int(missing / self.per_ms / 1000.0 + 0.999))

    def _prune(self, now_ms: int) -> None:
        full_after = self.burst / self.per_ms
        self._buckets = {k: b for k, b in self._buckets.items() if now_ms - b.at_ms < full_after}
