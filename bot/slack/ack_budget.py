"""Slack's answer to a click within its 3 s, whatever the engine is doing.

A hand-off to a running email is an iWF RPC, a Temporal update, and its answer comes only when the workflow
task that took it ends. With the state APIs as local activities, that task can be running a model call or an
SMTP session for seconds (up to 7 s, when iWF turns the call into a normal activity). A click answered that
late shows the user a failed button, although the action then takes effect.

So a click's hand-off runs for at most `seconds`; then Slack gets its answer and the hand-off goes on in
this process, telling the user if it fails. The price: an update in flight is dropped if
this process dies before the engine takes it (tests/engine/test_slack_ack.py), and Slack never sends a click
again; the card then shows nothing changed, and the user clicks again. Messages are not answered early
(bot.slack.app.on_message): Slack re-delivers an unanswered message, so none is lost that way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class AckBudget:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self._running: set[asyncio.Task[Any]] = set()  # referenced until done, so none is collected early

    async def run(self, hand_off: Coroutine[Any, Any, None], what: str) -> None:
        """Runs `hand_off` (which tells the user about the failures it knows) until it ends or the budget is
        spent. Within the budget its exception propagates; after it, the exception is logged."""
        task: asyncio.Task[None] = asyncio.ensure_future(hand_off)
        if await self.within(task, what):
            task.result()
            return
        log.info("answered Slack before the engine took the %s; the hand-off goes on", what)

    async def within(self, task: asyncio.Task[Any], what: str, spent: float = 0.0) -> bool:
        """Waits for `task` at most the budget, less the `spent` seconds the handler already took (a describe
        before it); True if it ended (its outcome is then the caller's). Either way it is kept running to its
        end, and a failure after the budget is logged."""
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        done, _ = await asyncio.wait({task}, timeout=max(0.0, self.seconds - spent))
        if task in done:
            return True
        task.add_done_callback(lambda ended: self._log_failure(ended, what))
        return False

    @staticmethod
    def _log_failure(ended: asyncio.Task[Any], what: str) -> None:
        if not ended.cancelled() and (error := ended.exception()) is not None:
            log.error("the %s failed after Slack had its answer", what, exc_info=error)

    async def drain(self, seconds: float = 10.0) -> None:
        """At shutdown: let hand-offs under way finish (Slack will not send those clicks again)."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=seconds)
