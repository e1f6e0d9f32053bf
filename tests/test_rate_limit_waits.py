"""Which Slack 429s are waited out in the process: only short ones, on paths that must answer in seconds (a
Slack handler's 3 s, a card step's 7 s as a local activity). Longer ones fail at once and are retried by
Slack's re-delivery or iWF's back-off."""

from __future__ import annotations

import asyncio
import time

import pytest
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.slack.web_errors import ShortRateLimitWaits, ShortRateLimitWaitsInSteps, retry_after


def answer(status: int, headers: dict[str, list[str]]) -> HttpResponse:
    return HttpResponse(status_code=status, headers=headers)


REQUEST = HttpRequest(method="POST", url="https://slack.test/api/chat.update", headers={})


@pytest.mark.parametrize(
    ("status", "headers", "in_handler", "in_step"),
    [
        (429, {"Retry-After": ["1"]}, True, True),
        (429, {"retry-after": ["2"]}, False, True),
        (429, {"Retry-After": ["30"]}, False, False),
        (429, {}, True, True),  # no header: slack_sdk's own assumption, one second
        (500, {"Retry-After": ["1"]}, False, False),  # not a rate limit: not this handler's
    ],
)
def test_only_short_rate_limits_are_waited_out(
    status: int, headers: dict[str, list[str]], in_handler: bool, in_step: bool
) -> None:
    response = answer(status, headers)
    handler = ShortRateLimitWaits()
    waited = asyncio.run(handler._can_retry_async(state=RetryState(), request=REQUEST, response=response))
    assert waited is in_handler
    assert ShortRateLimitWaitsInSteps()._can_retry(state=RetryState(), request=REQUEST, response=response) is in_step


def test_retry_after_reads_what_slack_sends_and_defaults_to_a_second() -> None:
    assert retry_after(answer(429, {"Retry-After": ["30"]})) == 30
    assert retry_after(answer(429, {"Retry-After": ["soon"]})) == 1
    assert retry_after(answer(429, {})) == 1


def test_the_wait_is_the_retry_after_not_a_second_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack_sdk sleeps Retry-After plus up to a second: twice that, and a handler's 3 s are gone."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    monkeypatch.setattr(time, "sleep", slept.append)
    response = answer(429, {"Retry-After": ["1"]})
    for handler in (ShortRateLimitWaits(), ShortRateLimitWaitsInSteps()):
        state = RetryState()
        if isinstance(handler, ShortRateLimitWaits):
            asyncio.run(handler.prepare_for_next_attempt_async(state=state, request=REQUEST, response=response))
        else:
            handler.prepare_for_next_attempt(state=state, request=REQUEST, response=response)
        assert state.next_attempt_requested and state.current_attempt == 1
    assert len(slept) == 2 and all(1.0 <= s <= 1.1 for s in slept), slept
    assert ShortRateLimitWaits().max_retry_count == 1, "waited once: two waits would not fit in Slack's 3 s"
