"""Refuses a signed Slack request seen before.

Slack signs every delivery afresh (a retry carries a new timestamp and signature), so the same signature
twice is a replay by whoever captured the request. Signatures older than Slack's own 5-minute window are
refused by the signature check anyway, so they only need remembering that long. Per process: effects are
de-duplicated again inside the workflow, whatever replica a replay reaches.
"""

from __future__ import annotations

import time
from collections import OrderedDict

WINDOW_SECONDS = 5 * 60


class ReplayGuard:
    def __init__(self, window_seconds: float = WINDOW_SECONDS, max_entries: int = 100_000):
        self._window = window_seconds
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen(self, signature: str) -> bool:
        """True if this signature was already handled within the window (or is empty)."""
        self._expire()
        return not signature or signature in self._seen

    def remember(self, signature: str) -> None:
        """Called once a request was handled (not on a 5xx: a failed delivery may come again)."""
        self._seen[signature] = time.monotonic()
        self._expire()

    def _expire(self) -> None:
        now = time.monotonic()
        while self._seen and (next(iter(self._seen.values())) < now - self._window or len(self._seen) > self._max):
            self._seen.popitem(last=False)
