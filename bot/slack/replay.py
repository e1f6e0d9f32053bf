"""Refuses a signed Slack request seen before.

Slack signs every delivery afresh (a retry carries a new timestamp and signature), so the same signature
twice is a replay by whoever captured the request. The signature check accepts a timestamp up to 5 minutes
either side of this machine's clock, so a signature can be valid for 10 minutes of wall time: it is
remembered that long from its arrival, whatever the clocks' skew. A request is claimed as it arrives (a
replay sent while the original is still being handled is refused too) and forgotten if its handling
failed, so that the same delivery may come again. Per process: effects are de-duplicated again inside the
workflow, whatever replica a replay reaches.
"""

from __future__ import annotations

import time
from collections import OrderedDict

WINDOW_SECONDS = 2 * 5 * 60


class ReplayGuard:
    def __init__(self, window_seconds: float = WINDOW_SECONDS, max_entries: int = 100_000):
        self._window = window_seconds
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def claim(self, signature: str) -> bool:
        """True for the first arrival of a signature within the window; False for a replay (or none)."""
        self._expire()
        if not signature or signature in self._seen:
            return False
        self._seen[signature] = time.monotonic()
        return True

    def forget(self, signature: str) -> None:
        """Its handling failed (a 5xx): the same delivery may come again."""
        self._seen.pop(signature, None)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._seen and (next(iter(self._seen.values())) < now - self._window or len(self._seen) > self._max):
            self._seen.popitem(last=False)
