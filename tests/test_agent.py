"""The Agent over real HTTP against the fake OpenAI-compatible server on loopback.

The openai client is synchronous and the fake server runs on the test's event
loop, so every call goes through asyncio.to_thread.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import openai
import pytest

from tests.fakes.openai_server import FakeOpenAI
from workflows.agent import (
    SYSTEM_PROMPT,
    Agent,
    AgentOutputError,
    AgentReply,
    AgentUnavailableError,
    parse_reply,
)
from workflows.model import EmailDraft, Turn

PARIS = "Europe/Paris"
NOW_LOCAL = datetime(2026, 11, 25, 12, 0, tzinfo=ZoneInfo(PARIS))  # Wednesday


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_for(base_url: str, timeout: float = 2) -> openai.OpenAI:
    return openai.OpenAI(api_key="x", base_url=base_url, timeout=timeout, max_retries=0)


async def respond(
    agent: Agent,
    conversation: list[Turn],
    email: EmailDraft | None = None,
    now_local: datetime = NOW_LOCAL,
    timezone: str = PARIS,
) -> AgentReply:
    return await asyncio.to_thread(agent.respond, conversation, email or EmailDraft(), now_local, timezone)


def user(text: str) -> Turn:
    return Turn(role="user", text=text)


def assistant(text: str) -> Turn:
    return Turn(role="assistant", text=text)


def sent_messages(request: dict[str, Any]) -> list[dict[str, str]]:
    return list(request["messages"])


# --- normal replies ---------------------------------------------------------------------------


async def test_normal_request_returns_a_validated_reply(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="fake-model")
    got = await respond(agent, [user("to: ana@example.com; subject: Lunch; body: Hi Ana, lunch tomorrow?")])
    assert isinstance(got, AgentReply)
    assert got.action == "draft"
    assert got.to == ["ana@example.com"]
    assert got.subject == "Lunch"
    assert got.body == "Hi Ana, lunch tomorrow?"
    assert got.send_at_local is None
    assert len(fake.requests) == 1


async def test_send_time_is_worked_out_from_the_now_local_sent(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="fake-model")
    got = await respond(agent, [user("to: ana@example.com; tomorrow at 9am")])
    assert got.action == "schedule"
    assert got.send_at_local == "2026-11-26T09:00:00"


async def test_cancel_and_unicode_replies(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="fake-model")
    assert (await respond(agent, [user("cancel it please")])).action == "cancel"
    translated = await respond(agent, [user("translate to Japanese")])
    assert translated.subject == "ランチのお誘い"
    assert translated.reply == "翻訳しました。"


async def test_conversation_and_context_are_sent(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="fake-model")
    email = EmailDraft(
        to=["ana@example.com"],
        subject="Lunch",
        body="Hi Ana",
        send_at=datetime(2026, 11, 26, 8, 0, tzinfo=UTC),  # 09:00 in Paris (CET)
        revision=3,
    )
    conversation = [
        user("to: ana@example.com; subject: Lunch; body: Hi Ana"),
        assistant("Done."),
        user("hold it"),
    ]
    await respond(agent, conversation, email)

    request = fake.requests[-1]
    assert request["model"] == "fake-model"
    assert request["response_format"]["type"] == "json_schema"
    assert "temperature" not in request, "no sampling parameter unless set"
    messages = sent_messages(request)
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert messages[1]["role"] == "system"
    context = json.loads(messages[1]["content"])
    assert context == {
        "now_local": "2026-11-25T12:00:00",
        "utc_offset": "+01:00",
        "weekday": "Wednesday",
        "timezone": PARIS,
        "email": {
            "to": ["ana@example.com"],
            "subject": "Lunch",
            "body": "Hi Ana",
            "send_at_local": "2026-11-26T09:00:00",
        },
    }
    assert messages[2:] == [{"role": t.role, "content": t.text} for t in conversation]


async def test_context_of_an_unscheduled_email_has_no_send_time(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="fake-model")
    await respond(agent, [user("hello")])
    context = json.loads(sent_messages(fake.requests[-1])[1]["content"])
    assert context["email"] == {"to": [], "subject": "", "body": "", "send_at_local": None}


async def test_non_ascii_context_is_sent_as_is(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="fake-model")
    await respond(agent, [user("hello")], EmailDraft(subject="Déjeuner à 13 h"))
    raw = sent_messages(fake.requests[-1])[1]["content"]
    assert "Déjeuner à 13 h" in raw


async def test_conversation_longer_than_max_turns_is_trimmed_to_the_newest(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="fake-model", max_turns=3)
    conversation = [user(f"old message {i}") if i % 2 == 0 else assistant(f"answer {i}") for i in range(9)]
    conversation.append(user("to: ana@example.com; subject: Newest"))
    got = await respond(agent, conversation)
    assert got.subject == "Newest"
    messages = sent_messages(fake.requests[-1])
    assert [m["content"] for m in messages[2:]] == [
        "answer 7",
        "old message 8",
        "to: ana@example.com; subject: Newest",
    ]
    assert not any("old message 0" in m["content"] for m in messages)


async def test_conversation_within_max_turns_is_sent_whole(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="fake-model", max_turns=3)
    conversation = [user("a"), assistant("b"), user("c")]
    await respond(agent, conversation)
    assert [m["content"] for m in sent_messages(fake.requests[-1])[2:]] == ["a", "b", "c"]


# --- misbehaving providers -------------------------------------------------------------------


async def test_garbage_answer_is_an_output_error(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="fake-model")
    with pytest.raises(AgentOutputError) as caught:
        await respond(agent, [user("GARBAGE please")])
    assert "not usable" in caught.value.reason
    assert len(fake.requests) == 1


async def test_answer_outside_the_schema_is_an_output_error(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="fake-model")
    with pytest.raises(AgentOutputError) as caught:
        await respond(agent, [user("SCHEMA please")])
    assert "action" in caught.value.reason


async def test_server_error_is_unavailable_with_the_status(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="fake-model")
    with pytest.raises(AgentUnavailableError) as caught:
        await respond(agent, [user("FAIL500")])
    assert "500" in caught.value.reason
    assert len(fake.requests) == 1  # max_retries=0: one attempt


async def test_slow_server_is_unavailable_took_too_long(fake: FakeOpenAI) -> None:
    fake.slow_seconds = 6
    agent = Agent(client_for(fake.base_url, timeout=1), model="fake-model")
    answered = fake.answered
    with pytest.raises(AgentUnavailableError) as caught:
        await respond(agent, [user("SLOW")])
    assert "took too long" in caught.value.reason
    assert fake.answered == answered, "gave up at the client's timeout, before the server answered"


async def test_closed_port_is_unavailable() -> None:
    agent = Agent(client_for(f"http://127.0.0.1:{closed_port()}/v1", timeout=2), model="fake-model")
    with pytest.raises(AgentUnavailableError) as caught:
        await respond(agent, [user("hello")])
    assert "could not be reached" in caught.value.reason


# --- Structured Outputs, fallbacks and sampling ------------------------------------------------


async def test_the_reply_schema_is_sent_in_strict_mode(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="gpt-4o-mini")
    got = await respond(agent, [user("to: ana@example.com; subject: Lunch")])
    assert (got.to, got.subject, got.body) == (["ana@example.com"], "Lunch", None)
    response_format = fake.requests[-1]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert set(schema["required"]) == set(AgentReply.model_fields) == set(schema["properties"])
    assert schema["additionalProperties"] is False


async def test_a_reasoning_model_gets_no_temperature_and_answers(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="gpt-5-mini")
    got = await respond(agent, [user("to: ana@example.com; subject: Hi; body: Hello; tomorrow at 9am")])
    assert got.action == "schedule" and got.send_at_local == "2026-11-26T09:00:00"
    assert "temperature" not in fake.requests[-1]


async def test_a_temperature_is_sent_only_when_set(fake: FakeOpenAI) -> None:
    await respond(Agent(client_for(fake.base_url), model="gpt-4o-mini", temperature=0.3), [user("hello")])
    assert fake.requests[-1]["temperature"] == 0.3
    reasoning = Agent(client_for(fake.base_url), model="o4-mini", temperature=0.3)
    with pytest.raises(AgentUnavailableError) as caught:
        await respond(reasoning, [user("hello")])
    assert "400" in caught.value.reason and "temperature" in caught.value.reason
    assert reasoning.uses_structured_outputs, "a 400 about something else does not switch the response format"


async def test_a_server_without_structured_outputs_is_asked_for_json_once_refused(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="json-only-compat")
    got = await respond(agent, [user("to: ana@example.com; subject: Lunch")])
    assert got.subject == "Lunch"
    assert [r["response_format"]["type"] for r in fake.requests] == ["json_schema", "json_object"]
    again = await respond(agent, [user("subject: Dinner")])
    assert again.subject == "Dinner"
    assert [r["response_format"]["type"] for r in fake.requests[2:]] == ["json_object"], "remembered"


async def test_structured_outputs_on_never_falls_back(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="json-only-compat", structured="on")
    with pytest.raises(AgentUnavailableError) as caught:
        await respond(agent, [user("hello")])
    assert "400" in caught.value.reason and "json_schema" in caught.value.reason
    assert len(fake.requests) == 1


async def test_structured_outputs_off_asks_for_json_object(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="gpt-4o-mini", structured="off")
    got = await respond(agent, [user("to: ana@example.com")])
    assert got.to == ["ana@example.com"]
    assert fake.requests[-1]["response_format"] == {"type": "json_object"}


async def test_a_model_refusal_is_an_output_error_with_its_words(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="gpt-4o-mini")
    with pytest.raises(AgentOutputError) as caught:
        await respond(agent, [user("REFUSE this")])
    assert caught.value.reason == "the assistant declined to answer (I'm sorry, I can't assist with that request)"


async def test_limits_still_apply_to_a_structured_reply(fake: FakeOpenAI) -> None:
    agent = Agent(client_for(fake.base_url), model="gpt-4o-mini")
    with pytest.raises(AgentOutputError) as caught:
        await respond(agent, [user("subject: " + "x" * 1200)])
    assert "(subject:" in caught.value.reason


# --- parse_reply -------------------------------------------------------------------------------

PLAIN = '{"reply": "Done.", "action": "draft", "subject": "Lunch"}'


@pytest.mark.parametrize(
    "content",
    [
        PLAIN,
        f"```json\n{PLAIN}\n```",
        f"```\n{PLAIN}\n```",
        f"  ```json {PLAIN}```  \n",
    ],
)
def test_parse_reply_accepts_plain_and_fenced_json(content: str) -> None:
    got = parse_reply(content)
    assert got == AgentReply(reply="Done.", action="draft", subject="Lunch")


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("", "reply"),
        ("[]", "reply"),
        ("null", "reply"),
        ('{"action": "draft"}', "reply"),
        ('{"reply": "ok", "to": "ana@example.com"}', "to"),
        ('{"reply": "ok", "action": "send-now"}', "action"),
        (f"Here you go: {PLAIN}", "reply"),
    ],
)
def test_parse_reply_refuses_anything_else(content: str, where: str) -> None:
    with pytest.raises(AgentOutputError) as caught:
        parse_reply(content)
    assert f"({where}:" in caught.value.reason
    assert "your message is kept" in caught.value.reason
