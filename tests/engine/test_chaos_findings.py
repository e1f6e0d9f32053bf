"""Findings of the chaos run, made to happen on purpose.

A delivering execution that dies while its ledger claim is in flight can leave a claim recorded for an
execution that never learned it was first, and so never sent. The next execution cannot tell that from "it
claimed, sent, and died before the answer was recorded": both leave exactly one claim and no answer. So it
does not resend blindly; the email ends `unconfirmed` and the user is told it may have gone out. Any
handshake (reserve, then mark) only moves this window to its last round trip; what shrinks it is not losing
the caller, which is why a claim whose answer was lost to a dying iWF server is retried by the same,
living execution with the same token (workflows/ledger.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.engine.test_edges import gated, gated_api  # noqa: F401 - fixtures
from tests.fakes.worker_gate import RPC, WorkerGate
from tests.harness import Api, AppProcess, SmtpSink, unique

pytestmark = pytest.mark.engine


def _claim(path: str, body: dict[str, Any]) -> bool:
    return path == RPC and body.get("rpcName") == "claim"


async def test_a_claim_recorded_after_its_caller_died_is_never_resent_blindly(
    gated: tuple[AppProcess, WorkerGate],  # noqa: F811
    gated_api: Api,  # noqa: F811
    smtp_sink: SmtpSink,
) -> None:
    app, gate = gated
    wid = unique("orphan-claim")
    await gated_api.start(wid)
    hold = gate.hold(_claim)
    try:
        # Said and waited for together: on a busy machine the say's answer may come only with the workflow task
        # that runs on into the delivery, whose claim is the call held here (see harness.say_until).
        saying = asyncio.ensure_future(
            gated_api.say(wid, "to: oc@example.com; subject: Orphan claim; body: Hello; send in 1 seconds")
        )
        await hold.wait_arrived(30)
        await asyncio.to_thread(app.kill)  # the delivering execution dies waiting for its claim's answer
        await asyncio.gather(saying, return_exceptions=True)  # answered before the kill, or cut by it
        await asyncio.to_thread(app.start)
    finally:
        hold.release()  # the claim is then recorded, for an execution that no longer exists
    view = await gated_api.wait_for(wid, "sent", "unconfirmed", timeout=120)
    await asyncio.sleep(2)
    mails = smtp_sink.to("oc@example.com")
    assert (view["status"], len(mails)) == ("unconfirmed", 0), (view["status"], view["last_error"], len(mails))
    assert "not sure" in view["last_reply"] and not view["will_send"], "the user is told, and it is not resent"


async def test_a_claim_answered_after_the_grace_is_not_used_to_send_and_a_later_round_sends_once(
    gated: tuple[AppProcess, WorkerGate],  # noqa: F811
    gated_api: Api,  # noqa: F811
    smtp_sink: SmtpSink,
) -> None:
    """The ledger out of reach past the 10 s after which others may take a claim to be over (every claim call,
    the client's retries too, held at the gate): the execution that gets its answer that late does not send
    on it (another could already judge the hand-over over and send); the email backs off and a later round
    sends it, once."""
    _, gate = gated
    wid = unique("late-claim")
    await gated_api.start(wid)
    hold = gate.hold(_claim, every=True)
    try:
        saying = asyncio.ensure_future(
            gated_api.say(wid, "to: lc@example.com; subject: Late claim; body: Hello; send in 1 seconds")
        )
        await hold.wait_arrived(30)
        await asyncio.sleep(11)  # past claim_grace_seconds (10)
        assert smtp_sink.to("lc@example.com") == [], "nothing sent while the claim's answer is held"
    finally:
        hold.release()
    await asyncio.gather(saying, return_exceptions=True)
    view = await gated_api.wait_for(wid, "sent", "failed", "unconfirmed", timeout=120)
    assert view["status"] == "sent", (view["status"], view["last_error"])
    await asyncio.sleep(2)
    assert len(smtp_sink.to("lc@example.com")) == 1
    assert view["send_attempts"] == 1, "one round given up on its late claim, then one that sent"
