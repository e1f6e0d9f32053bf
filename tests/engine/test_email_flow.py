"""The email's whole life, through the app process, the real iWF server and Temporal, SMTP on loopback."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Api, SmtpSink, unique, wait_for_mail
from tests.fakes.openai_server import JAPANESE_BODY, JAPANESE_SUBJECT

pytestmark = pytest.mark.engine


async def test_draft_schedule_and_send_once(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("lunch")
    await api.start(wid, timezone="Europe/Paris")
    await api.say(wid, "to: ana@example.com; subject: Lunch; body: Shall we have lunch tomorrow?; send in 3 seconds")
    view = await api.wait_for(wid, "scheduled")
    assert view["to"] == ["ana@example.com"] and view["subject"] == "Lunch"
    assert view["send_at_local"] and ("CET" in view["send_at_local"] or "CEST" in view["send_at_local"])

    view = await api.wait_for(wid, "sent", timeout=30)
    [mail] = await wait_for_mail(smtp_sink, "ana@example.com")
    assert mail.message["Subject"] == "Lunch"
    assert mail.message["To"] == "ana@example.com"
    assert mail.message["From"] == "assistant@example.org"
    assert mail.message["Message-ID"] == view["sent_message_id"]
    assert mail.message["Date"]
    assert mail.message.get_content().strip() == "Shall we have lunch tomorrow?"
    await asyncio.sleep(2)
    assert len(smtp_sink.to("ana@example.com")) == 1, "sent more than once"
