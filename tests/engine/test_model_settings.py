"""The model call on current models and on OpenAI-compatible servers (issue 9, item 9), through the app
process, the real engine and the fake model's server rules: reasoning models refuse `temperature`,
`json-only*` models refuse Structured Outputs."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Api, AppProcess, SmtpSink, unique, variant_of, wait_for_mail

pytestmark = pytest.mark.engine


async def test_a_reasoning_model_schedules_and_sends(
    app_process: AppProcess, fake_openai: FakeOpenAI, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    other = variant_of(app_process, tmp_path, OPENAI_MODEL="gpt-5-mini")
    other.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, other.base_url)
            wid = unique("gpt5")
            await api.start(wid)
            marker = f"Reasoning {wid}"
            await api.say(wid, f"to: rea@example.com; subject: {marker}; body: Hi; send in 1 seconds")
            view = await api.wait_for(wid, "sent", "waiting", timeout=30)
            assert view["status"] == "sent", view["last_error"]
            await wait_for_mail(smtp_sink, "rea@example.com")
    finally:
        other.stop()
    [request] = fake_openai.requests_for(marker)
    assert request["model"] == "gpt-5-mini" and "temperature" not in request
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["strict"] is True


async def test_a_server_without_structured_outputs_gets_json_object_from_then_on(
    app_process: AppProcess, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    model = f"json-only-{tmp_path.name}"
    other = variant_of(app_process, tmp_path, OPENAI_MODEL=model, OPENAI_TEMPERATURE="0.3")
    other.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, other.base_url)
            wid = unique("compat")
            await api.start(wid)
            await api.say(wid, "to: com@example.com; subject: First")
            first = await api.wait_for(wid, "waiting")
            await api.say(wid, "subject: Second")
            second = await api.wait_for(wid, "waiting")
    finally:
        other.stop()
    assert (first["subject"], second["subject"]) == ("First", "Second"), second["last_error"]
    asked = [r for r in fake_openai.requests if r["model"] == model]
    assert [r["response_format"]["type"] for r in asked] == ["json_schema", "json_object", "json_object"]
    assert all(r["temperature"] == 0.3 for r in asked), "OPENAI_TEMPERATURE is sent when set"


async def test_a_refused_recipient_reads_as_one_sentence(api: Api) -> None:
    wid = unique("sentence")
    await api.start(wid)
    await api.say(wid, "to: ana@example.com bob@example.com; subject: Hi; body: Hello; send in 30 seconds")
    view = await api.wait_for(wid, "waiting")
    reply = view["last_reply"]
    assert reply.startswith("'ana@example.com bob@example.com' is not a valid email address"), reply
    assert reply.endswith(".") and "Done." not in reply, "the problem alone, without the model's filler"
    assert view["last_error"] in reply
    assert not view["will_send"] and view["plan"].startswith("On hold (was planned for")
