"""Secrets never reach the logs or describe output, after a run that used every one of them."""

from __future__ import annotations

import json

import pytest

from tests.harness import API_TOKEN, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, Api, AppProcess, Slack, unique

pytestmark = pytest.mark.engine


async def test_no_secret_in_logs_or_describe(api: Api, app_process: AppProcess, slack: Slack) -> None:
    wid = unique("secrets")
    await api.start(wid)
    await api.say(wid, "to: ivan@example.com; subject: S; body: B")
    await api.call("GET", "/api/emails/x", token="wrong-token")
    channel, ts = await slack.dm("USECRET", "to: jo@example.com; subject: S; body: B")
    await slack.card(channel, ts)
    view = await api.wait_for(wid, "waiting")
    secrets = [API_TOKEN, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, app_process.env["OPENAI_API_KEY"]]
    log = app_process.log_path.read_text()
    assert log, "the app logged nothing at all?"
    for secret in secrets:
        assert secret not in log
        assert secret not in json.dumps(view)
