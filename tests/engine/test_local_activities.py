"""State calls run as Temporal local activities (iWF optimize_activity), which iWF gives up after 7 seconds
and makes again as a normal activity. A slow step must still run once: the worker answers the second call
with the first call's answer (bot/state_calls.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from temporalio.client import Client as TemporalClient

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Api, AppProcess, Engine, SmtpSink, unique, variant_of

pytestmark = pytest.mark.engine


@pytest.fixture
async def patient(app_process: AppProcess, tmp_path: Path) -> AsyncIterator[Api]:
    """An app that waits up to 30 s for the model (the suite's app gives up after 2 s)."""
    app = variant_of(app_process, tmp_path, OPENAI_TIMEOUT_SECONDS="30")
    await asyncio.to_thread(app.start)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield Api(session, app.base_url)
    app.stop()


async def test_a_model_call_longer_than_a_local_activity_runs_once(
    patient: Api, fake_openai: FakeOpenAI, smtp_sink: SmtpSink, engine: Engine
) -> None:
    marker = unique("slow-words")
    fake_openai.slow_seconds = 9.0  # past the 7 s after which iWF abandons a local activity
    try:
        wid = unique("slow-model")
        await patient.start(wid)
        await patient.say(wid, f"to: slow@example.com; subject: Patience; body: SLOW {marker}; send in 25 seconds")
        view = await patient.wait_for(wid, "scheduled", timeout=60)
    finally:
        fake_openai.slow_seconds = 5.0
    assert view["body"] == f"SLOW {marker}"
    history = await (await TemporalClient.connect(engine.temporal_host_port)).get_workflow_handle(wid).fetch_history()
    fallbacks = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    assert fallbacks, "iWF gave the local activity up and made the call again as a normal activity"
    assert len(fake_openai.requests_for(marker)) == 1, "the step was asked twice, the model once"
    await patient.call("POST", f"/api/emails/{wid}/cancel")
    assert smtp_sink.to("slow@example.com") == []
