"""MAIL_FROM with a display name: the app started with it sends well-formed mail (issue 9, item 4)."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from tests.harness import Api, AppProcess, SmtpSink, unique, variant_of, wait_for_mail

pytestmark = pytest.mark.engine

MESSAGE_ID = re.compile(r"<[A-Za-z0-9.]+@example\.com>", re.ASCII)


async def test_mail_from_with_a_unicode_display_name_sends_well_formed_mail(
    app_process: AppProcess, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    other = variant_of(app_process, tmp_path, MAIL_FROM="Assistant Ünïcode <agent@example.com>")
    other.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, other.base_url)
            wid = unique("mail-from")
            await api.start(wid)
            await api.say(wid, "to: uma@example.com; subject: Named; body: From a name; send in 1 seconds")
            view = await api.wait_for(wid, "sent", "failed", timeout=30)
            assert view["status"] == "sent", view["last_error"]
            [mail] = await wait_for_mail(smtp_sink, "uma@example.com")
    finally:
        other.stop()
    assert MESSAGE_ID.fullmatch(mail.message["Message-ID"]), mail.message["Message-ID"]
    assert mail.message["Message-ID"] == view["sent_message_id"]
    [sender] = mail.message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Assistant Ünïcode", "agent@example.com")
    assert mail.mail_from == "agent@example.com", "the envelope sender is the bare address"
    raw_from = dict(mail.message.raw_items())["From"]
    assert raw_from.isascii() and "=?utf-8?" in raw_from.lower(), raw_from
