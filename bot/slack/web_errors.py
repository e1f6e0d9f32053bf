"""What a Slack Web API call can raise instead of an answer: Slack's own error answer (`SlackApiError`), or
no answer at all (a refused or dropped connection, a time-out), which slack_sdk raises as aiohttp's and
asyncio's own errors after its retries."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

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

    def __init__(self, max_retry_count: int = 1, max_wait_seconds: float = 1.0):
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_seconds = max_wait_seconds

    async def _can_retry_async(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        return response is not None and response.status_code == 429 and retry_after(response) <= self.max_wait_seconds

    async def prepare_for_next_attempt_async(
        self, *, state: Any, request: Any, response: Any = None, error: Any = None
    ) -> None:
        # Retry-After itself, not slack_sdk's Retry-After + up to a second: the wait is what the budget allows.
        state.next_attempt_requested = True
        await asyncio.sleep(waited(response))
        state.increment_current_attempt()


class ShortRateLimitWaitsInSteps(RateLimitErrorRetryHandler):
    """The same for the workflow's card step (a sync client in the worker): a step is a local activity that
    iWF gives 7 s before running it again as an activity, possibly on another replica (which would post a
    second card). A longer Retry-After fails the step instead; iWF retries it after a back-off, and a retried
    step looks for its card before posting."""

    def __init__(self, max_retry_count: int = 1, max_wait_seconds: float = 2.0):
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_seconds = max_wait_seconds

    def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        return response is not None and response.status_code == 429 and retry_after(response) <= self.max_wait_seconds

    def prepare_for_next_attempt(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> None:
        state.next_attempt_requested = True
        time.sleep(waited(response))
        state.increment_current_attempt()


def waited(response: Any) -> float:
    """How long to wait before the retry of a 429: its Retry-After and a little jitter (not a whole second)."""
    return retry_after(response) + random.uniform(0, 0.1)  # noqa: S311 - jitter, not crypto


def retry_after(response: Any) -> float:
    """A 429's Retry-After in seconds (1 if absent or unreadable, as slack_sdk assumes)."""
    waits = [v for k, v in response.headers.items() if k.lower() == "retry-after"]
    try:
        return float(waits[0][0] if isinstance(waits[0], list) else waits[0]) if waits else 1.0
    except (TypeError, ValueError, IndexError):
        return 1.0
