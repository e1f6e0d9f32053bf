"""How a benchmark makes an email through the app's HTTP API (or a Slack DM), as every version compared can:
start then ask, or one call whose start carries the request; and waiting until describe shows a status."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import aiohttp

from bench.harness import Embedded
from bot.slack.threads import thread_email_id
from tests.fakes.slack_server import TEAM
from tests.harness import Api, Slack


def same_shard(email_id: str, prefix: str) -> str:
    """An email id whose shared ledger (emails without an owner: workflows/ledger.py) is `email_id`'s."""

    def shard(wid: str) -> int:
        return int(hashlib.sha256(wid.encode()).hexdigest(), 16) % 32

    return next(f"{prefix}-{k}" for k in range(10_000) if shard(f"{prefix}-{k}") == shard(email_id))


async def wait_status(api: Api, wid: str, *statuses: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, view = await api.call("GET", f"/api/emails/{wid}")
        if status == 200 and view["status"] in statuses and not view["pending_requests"]:
            return dict(view)
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{wid} never reached {statuses}")


async def one_email(api: Api, wid: str, text: str, one_call: bool = False, started: bool = False) -> None:
    """Start then ask (two calls, as every version can), or `one_call`: the start carries the request.
    `started`: the start was made already (not timed), only the request is sent."""
    if one_call:
        for attempt in range(100):
            status, answer = await api.call("POST", f"/api/emails/{wid}", {"text": text, "message_id": "m1"})
            if status < 500:
                assert status in (200, 201) and answer["request"]["accepted"], answer
                return
            await asyncio.sleep(0.05 * (attempt + 1))
        raise RuntimeError(f"{wid}: the start was never accepted")
    for attempt in range(0 if started else 100):
        status, _ = await api.call("POST", f"/api/emails/{wid}", {})
        if status < 500:
            break
        await asyncio.sleep(0.05 * (attempt + 1))
    for attempt in range(100):
        status, answer = await api.call("POST", f"/api/emails/{wid}/messages", {"text": text, "message_id": "m1"})
        if status < 500:
            assert status == 202, answer
            return
        await asyncio.sleep(0.05 * (attempt + 1))
    raise RuntimeError(f"{wid}: the request was never accepted")


async def slack_email(e: Embedded, session: aiohttp.ClientSession, api: Api, user: str, text: str) -> str:
    """A DM that starts an email with a card; returns the email's id once it is sent and its card says so."""
    slack = Slack(session, e.app, e.fake_slack)
    # Plain text as typed, not autolinked: the versions compared need not decode Slack's markup.
    channel, ts = await slack.dm(user, text, encoded=True)
    wid = thread_email_id(TEAM, channel, ts)
    card = await slack.card(channel, ts, timeout=60)
    await slack.wait_card(channel, card, "Sent to", timeout=60)
    await wait_status(api, wid, "sent")
    return wid


async def takes_one_call(api: Api, run: str) -> bool:
    """Whether this version's start carries a first request (older ones refuse the field with 422)."""
    status, _ = await api.call("POST", f"/api/emails/cost-{run}-probe", {"text": "hello", "message_id": "m1"})
    return status == 201
