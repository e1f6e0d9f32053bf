"""What a Slack Web API call can raise instead of an answer: Slack's own error answer (`SlackApiError`), or
no answer at all (a refused or dropped connection, a time-out), which slack_sdk raises as aiohttp's and
asyncio's own errors after its retries."""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError

SLACK_CALL_FAILED: tuple[type[Exception], ...] = (SlackApiError, aiohttp.ClientError, TimeoutError)


def reason(error: Exception) -> str:
    """Slack's error code (e.g. `user_not_found`), or the kind of failure when Slack did not answer."""
    if isinstance(error, SlackApiError):
        return str(error.response.get("error") or "error")
    return type(error).__name__
