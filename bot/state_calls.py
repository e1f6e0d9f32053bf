"""One answer per state execution, computed once per process.

The iWF server may call a state API again for an execution it already asked about: with local activities
(WorkflowConfig.optimize_activity) a call still running after 7 s is given up and made again as a normal
activity, and a workflow task replayed after an iWF restart makes its local activities again. Computing the
answer again would call the model twice or repeat a side effect; instead the later call joins the first (if
it is still running) or gets its answer (if it finished). Failures are not kept: a failed call is retried
afresh.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

Answer = dict[str, Any]


class StateCallCache:
    """Bounded by count and by the answers' size: an answer that writes the conversation carries it whole (up
    to about 300 KB), so a count alone could hold gigabytes. What must be kept is the last few seconds' worth
    (iWF asks again within 7 s, or after a restart within a task time-out): 4,096 answers is some 20 s of
    calls at this machine's saturation, 64 MiB some hundreds of long conversations."""

    def __init__(self, remember: int = 4096, max_bytes: int = 64 * 1024 * 1024):
        self._remember = remember
        self._max_bytes = max_bytes
        self._bytes = 0
        self._sizes: dict[tuple[str, ...], int] = {}
        self._answers: OrderedDict[tuple[str, ...], asyncio.Future[Answer]] = OrderedDict()

    @staticmethod
    def key(path: str, body: dict[str, Any]) -> tuple[str, ...] | None:
        context = body.get("context") or {}
        execution = context.get("stateExecutionId")
        if not execution:
            return None
        return (path, str(context.get("workflowId")), str(context.get("workflowRunId")), str(execution))

    async def answer(self, key: tuple[str, ...] | None, compute: Callable[[], Awaitable[Answer]]) -> Answer:
        if key is None:
            return await compute()
        known = self._answers.get(key)
        if known is not None and not (known.done() and known.exception() is not None):
            return await asyncio.shield(known)
        future: asyncio.Future[Answer] = asyncio.ensure_future(compute())
        self._drop(key)
        self._answers[key] = future
        while len(self._answers) > self._remember:
            self._drop(next(iter(self._answers)))
        future.add_done_callback(lambda done: self._settled(key, done))
        # Shielded: if iWF gives up on this call (and its request is cancelled), the work still finishes,
        # so the call that comes next gets its answer.
        return await asyncio.shield(future)

    @property
    def size(self) -> tuple[int, int]:
        """(answers kept, their bytes as JSON)."""
        return len(self._answers), self._bytes

    def _settled(self, key: tuple[str, ...], done: asyncio.Future[Answer]) -> None:
        if self._answers.get(key) is not done:
            return  # dropped meanwhile
        if done.cancelled() or done.exception() is not None:
            self._drop(key)  # failures are not kept: the next call computes afresh
            return
        size = len(json.dumps(done.result(), default=str))
        self._sizes[key] = size
        self._bytes += size
        while self._bytes > self._max_bytes and len(self._answers) > 1:
            self._drop(next(iter(self._answers)))

    def _drop(self, key: tuple[str, ...]) -> None:
        if self._answers.pop(key, None) is not None:
            self._bytes -= self._sizes.pop(key, 0)
