"""What the iWF client raises when the engine answers with something that is not iWF's answer (a proxy's
page or JSON of another shape, in front of the iWF server): the engine was not reached as itself, so the
API says 503 (engine unavailable), never 500. The project's own errors of the same kinds still surface."""

from __future__ import annotations

from typing import Any

import pytest
from iwf.errors import parse_unexpected_error
from iwf.registry import Registry

from bot.engine import EmailEngine, EngineUnavailable


class Answer:
    status_code = 502

    def __init__(self, content: bytes):
        self.content = content


@pytest.fixture
def engine() -> EmailEngine:
    return EmailEngine(Registry(), "http://127.0.0.1:9", "http://127.0.0.1:9")


@pytest.mark.parametrize("content", [b'"bad gateway"', b"null", b"<html>502</html>"])
async def test_an_answer_that_is_not_iwfs_is_the_engine_unavailable(engine: EmailEngine, content: bytes) -> None:
    with pytest.raises(EngineUnavailable):
        await engine._run(lambda: parse_unexpected_error(Answer(content)))


async def test_the_projects_own_value_errors_are_not_taken_for_the_engines(engine: EmailEngine) -> None:
    def ours() -> Any:
        raise ValueError("a bug of ours")

    with pytest.raises(ValueError, match="a bug of ours"):
        await engine._run(ours)
