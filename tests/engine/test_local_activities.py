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
from tests.fakes.worker_gate import STATE_EXECUTE, WorkerGate, state_call
from tests.harness import Api, AppProcess, Engine, SmtpSink, app_env, free_port, unique, variant_of

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


async def test_a_send_longer_than_a_local_activity_run_again_on_another_replica_is_sent_once_and_known(
    engine: Engine, smtp_sink: SmtpSink, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """Two replicas behind one worker address. The mail server takes 10 s to answer: iWF gives the Deliver
    step's local activity up after 7 s and runs it again as a normal activity, which the balancer (a gate here)
    sends to the other replica. That one finds the first one's young claim in the ledger. Before, with no Sent
    folder to ask, it said "delivery unknown" of an email going out that very moment; now it waits for the
    first replica's word (settled in the ledger) and the email is "sent", once."""
    gate = WorkerGate()
    await gate.start()
    apps: list[AppProcess] = []
    for name in ("a", "b"):
        port, worker_port = free_port(), free_port()
        env = app_env(
            port, engine.iwf_url, engine.temporal_host_port, tmp_path / name, fake_openai.base_url, smtp_sink.port
        ) | {"WORKER_PORT": str(worker_port), "WORKER_URL": gate.url, "SMTP_TIMEOUT_SECONDS": "20"}
        apps.append(AppProcess(env=env, log_path=tmp_path / f"{name}.log", base_url=f"http://127.0.0.1:{port}"))
    first, second = apps
    gate.target = f"http://127.0.0.1:{first.env['WORKER_PORT']}"
    address = f"{unique('sibling')}@example.com"
    smtp_sink.fault = lambda envelope: "hold 10" if address in envelope.rcpt_tos else None
    try:
        for app in apps:
            await asyncio.to_thread(app.start)
        wid = unique("sibling")
        again = gate.reroute(
            state_call(STATE_EXECUTE, wid, "DeliverState"), f"http://127.0.0.1:{second.env['WORKER_PORT']}"
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            api = Api(session, first.base_url)
            await api.start(wid)
            await api.say(wid, f"to: {address}; subject: Once; body: A slow mail server; send in 1 seconds")
            view = await api.wait_for(wid, "sent", timeout=90)
        assert again.sent.is_set(), "the step's second run went to the other replica"
        assert view["last_reply"].startswith("Sent to"), view["last_reply"]
        await asyncio.sleep(1)
        assert len(smtp_sink.to(address)) == 1
    finally:
        smtp_sink.fault = None
        for app in apps:
            app.stop()
        await gate.stop()
