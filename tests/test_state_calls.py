"""One answer per state execution (iWF asks again after a local activity's 7 s, or after a restart), kept
within a count and a byte budget."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.state_calls import StateCallCache


def body(execution: str) -> dict[str, Any]:
    return {"context": {"workflowId": "wf", "workflowRunId": "run", "stateExecutionId": execution}}


async def test_a_call_asked_again_gets_the_first_answer_and_a_failure_is_computed_afresh() -> None:
    cache, computed = StateCallCache(), []

    async def compute() -> dict[str, Any]:
        computed.append(1)
        await asyncio.sleep(0.01)
        return {"n": len(computed)}

    key = StateCallCache.key("/decide", body("S-1"))
    first, again = await asyncio.gather(cache.answer(key, compute), cache.answer(key, compute))
    assert first == again == {"n": 1} and len(computed) == 1, "joined the running call"
    assert await cache.answer(key, compute) == {"n": 1} and len(computed) == 1, "answered from the kept one"

    async def fail() -> dict[str, Any]:
        raise RuntimeError("boom")

    failing = StateCallCache.key("/decide", body("S-2"))
    for _ in range(2):
        try:
            await cache.answer(failing, fail)
        except RuntimeError:
            pass
    assert await cache.answer(failing, compute) == {"n": 2}, "a failure is not kept"


async def test_answers_are_kept_within_a_count_and_a_byte_budget_oldest_first() -> None:
    big = {"upsertDataObjects": [{"key": "conversation", "value": "x" * 10_000}]}

    async def large() -> dict[str, Any]:
        return big

    cache = StateCallCache(remember=100, max_bytes=50_000)
    for n in range(20):
        await cache.answer(StateCallCache.key("/decide", body(f"S-{n}")), large)
    count, size = cache.size
    assert count == 4 and size <= 50_000, (count, size)
    recomputed: list[int] = []

    async def again() -> dict[str, Any]:
        recomputed.append(1)
        return big

    await cache.answer(StateCallCache.key("/decide", body("S-19")), again)
    await cache.answer(StateCallCache.key("/decide", body("S-0")), again)
    assert recomputed == [1], "the newest kept, the oldest dropped"
    small = StateCallCache(remember=3)
    for n in range(10):
        await small.answer(StateCallCache.key("/decide", body(f"S-{n}")), large)
    assert small.size[0] == 3
