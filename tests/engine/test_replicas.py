"""The production profile's promise: an email outlives the app replica that started it (and an iWF server),
because every email records the workers' shared address, not a replica's."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import aiohttp
import pytest

from bench.harness import production, production_state_in
from tests.conftest import ENGINE_PROFILE
from tests.harness import Api, Engine, unique, wait_for_mail

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(ENGINE_PROFILE != "production", reason="needs app replicas: ENGINE_PROFILE=production"),
]


async def test_an_email_outlives_the_replica_that_started_it(engine: Engine) -> None:
    """`engine` only makes this skip where the engine cannot run; this test starts a profile with replicas."""
    state = production_state_in(Path(tempfile.mkdtemp(prefix="email-agent-replicas-")))
    try:
        async with (
            production(state, iwf_replicas=2, app_replicas=2) as p,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        ):
            first_replica = Api(session, f"http://127.0.0.1:{p.stack.plan.app_ports[0][0]}")
            wid = unique("replica-loss")
            await first_replica.start(wid)
            await first_replica.say(wid, "to: rita@example.com; subject: Carried; body: By others; send in 4 seconds")
            await first_replica.wait_for(wid, "scheduled")
            p.stack.remove("app-1")  # the replica that started it, for good
            p.stack.remove("iwf-1")  # and an iWF server
            through_the_balancer = Api(session, p.base_url)
            assert (await through_the_balancer.describe(wid))["status"] in ("scheduled", "sending", "sent")
            view = await through_the_balancer.wait_for(wid, "sent", timeout=60)
            mails = await wait_for_mail(p.sink, "rita@example.com")
            assert len(mails) == 1 and mails[0].message["Message-ID"] == view["sent_message_id"]
    finally:
        shutil.rmtree(state, ignore_errors=True)
