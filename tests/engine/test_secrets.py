"""Secrets never reach the logs or describe output, after a run that used every one of them."""

from __future__ import annotations

import json

import pytest

from tests.harness import (
    API_TOKEN,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    WORKER_SECRET,
    Api,
    AppProcess,
    Engine,
    Slack,
    unique,
)

pytestmark = pytest.mark.engine


async def test_no_secret_in_logs_or_describe(api: Api, app_process: AppProcess, slack: Slack, engine: Engine) -> None:
    wid = unique("secrets")
    status, issued = await api.call("POST", "/api/tokens", {"user": "ivan"})
    assert status == 201
    await api.call("POST", f"/api/emails/{wid}", {}, token=issued["token"])
    status, _ = await api.call(
        "POST", f"/api/emails/{wid}/messages", {"text": "to: ivan@example.com; subject: S; body: B"}, issued["token"]
    )
    assert status == 202
    await api.call("GET", "/api/emails/x", token="wrong-token")
    await api.call("GET", f"/api/emails/{wid}", token=issued["token"][:-2] + "xx")
    channel, ts = await slack.dm("USECRET", "to: jo@example.com; subject: S; body: B")
    await slack.card(channel, ts)
    view = await api.wait_for(wid, "waiting")
    secrets = [
        API_TOKEN,
        SLACK_BOT_TOKEN,
        SLACK_SIGNING_SECRET,
        app_process.env["OPENAI_API_KEY"],
        WORKER_SECRET,
        issued["token"],
    ]
    log = app_process.log_path.read_text()
    assert log, "the app logged nothing at all?"
    engine_logs = "".join(p.read_text(errors="replace") for p in engine.stack.settings.state_dir.glob("logs/*.log"))
    for secret in secrets:
        assert secret not in log
        assert secret not in json.dumps(view)
        assert secret not in engine_logs, "nor in the iWF server's or Temporal's logs"
