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
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

Answer = dict[str, Any]


class StateCallCache:
    def __init__(self, remember: int = 4096):
        self._remember = remember
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
        self._answers[key] = future
        self._answers.move_to_end(key)
        while len(self._answers) > self._remember:
            self._answers.popitem(last=False)
        future.add_done_callback(lambda done: self._forget_failure(key, done))
        # Shielded: if iWF gives up on this call (and its request is cancelled), the work still finishes,
        # so the call that comes next gets its answer.
        return await asyncio.shield(future)

    def _forget_failure(self, key: tuple[str, ...], done: asyncio.Future[Answer]) -> None:
        if done.cancelled() or done.exception() is not None:
            if self._answers.get(key) is done:
                del self._answers[key]
