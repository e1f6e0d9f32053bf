"""What a Slack Web API call can raise instead of an answer: Slack's own error answer (`SlackApiError`), or
no answer at all (a refused or dropped connection, a time-out), which slack_sdk raises as aiohttp's and
asyncio's own errors after its retries."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler

SLACK_CALL_FAILED: tuple[type[Exception], ...] = (SlackApiError, aiohttp.ClientError, TimeoutError)


def reason(error: Exception) -> str:
    """Slack's error code (e.g. `user_not_found`), or the kind of failure when Slack did not answer."""
    if isinstance(error, SlackApiError):
        return str(error.response.get("error") or "error")
    return type(error).__name__


class ShortRateLimitWaits(AsyncRateLimitErrorRetryHandler):
    """Waits out a 429 only when Slack asks for a short wait (Retry-After at most `max_wait_seconds`): the
    handlers using this client must answer Slack within 3 s, and a longer wait would only make Slack deliver
    the event again (more calls while rate-limited) or show the user a time-out although the work goes on.
    Longer limits fail at once: a message is then delivered again later, a command says so."""

    def __init__(self, max_retry_count: int = 2, max_wait_seconds: float = 1.0):
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_seconds = max_wait_seconds

    async def _can_retry_async(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        if response is None or response.status_code != 429:
            return False
        waits = [v for k, v in response.headers.items() if k.lower() == "retry-after"]
        try:
            wait = float(waits[0][0] if isinstance(waits[0], list) else waits[0]) if waits else 1.0
        except (TypeError, ValueError):
            wait = 1.0
        return wait <= self.max_wait_seconds
