"""Chaos run: schedule, revise and cancel emails while SIGKILLing the app, the iWF server and the
Temporal dev server at random moments; then check every email against the SMTP sink.

    make chaos                              # N=200
    python -m bench.chaos --n 30 --seed 7   # replay a run: same seed, same plan and kill schedule
    make chaos-prod                         # --profile production

The production profile (PostgreSQL, the Temporal server, two iWF servers and two app replicas behind
HAProxy) also crash-stops PostgreSQL, and halfway through kills one app replica and one iWF server for
good: the survivors must carry every email, including the ones the lost replicas started.

Each email goes in through the HTTP API or as a signed Slack DM. A client retries every operation until
it is accepted (Slack re-delivers events, people press again), with an idempotency key, as real clients
do; what the app *accepted* defines what must happen: an accepted cancel must never be delivered, an
accepted revision must be what is delivered, everything else exactly once, nothing left running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import embedded, production, production_state_in
from bot.slack.app import thread_email_id
from tests.fakes.slack_server import TEAM, event_body, sign
from tests.harness import SLACK_SIGNING_SECRET, Api

RESULTS = {
    "dev": Path(__file__).with_name("chaos-results.json"),
    "production": Path(__file__).with_name("chaos-prod-results.json"),
}


@dataclass
class Config:
    n: int = 30
    seed: int = 1
    window_start: float = 20.0  # seconds after the run starts that the first email is due
    window_end: float = 50.0
    revise_share: float = 0.25
    cancel_share: float = 0.2
    kill_every: tuple[float, float] = (4.0, 9.0)
    kill_until: float = 55.0  # no kills after this many seconds, so the run can settle
    settle_timeout: float = 180.0
    profile: str = "dev"  # or "production"


@dataclass
class Email:
    index: int
    via: str  # "api" or "slack"
    email_id: str
    recipient: str
    due: float  # seconds after start
    revise: bool
    cancel: bool
    slack_user: str = ""
    slack_channel: str = ""
    slack_ts: str = ""
    accepted_subject: str = ""
    cancel_accepted: bool = False


@dataclass
class Report:
    n: int
    seed: int
    kills: dict[str, int]
    profile: str = "dev"
    removed: list[str] = field(default_factory=list)  # replicas killed for good mid-run
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    sent_after_cancel: list[str] = field(default_factory=list)
    stale_content: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    max_lateness_s: float = 0.0
    canceled: int = 0
    revised: int = 0
    delivered: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.sent_after_cancel or self.stale_content or self.stuck)

    def table(self) -> str:
        rows = [
            ("N", self.n),
            ("seed", self.seed),
            ("profile", self.profile),
            (f"kills: {' / '.join(self.kills)}", " / ".join(str(v) for v in self.kills.values())),
            ("killed for good", ", ".join(self.removed) or "-"),
            ("revised / canceled (accepted)", f"{self.revised} / {self.canceled}"),
            ("delivered", self.delivered),
            ("lost", len(self.lost)),
            ("duplicated", len(self.duplicated)),
            ("sent after cancel", len(self.sent_after_cancel)),
            ("stale content", len(self.stale_content)),
            ("stuck", len(self.stuck)),
            ("max lateness", f"{self.max_lateness_s:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows)


class Chaos:
    def __init__(self, config: Config, state: Path):
        self.config = config
        self.rng = random.Random(config.seed)
        self.state = state
        kinds = ["app", "iwf", "temporal"] + (["postgres"] if config.profile == "production" else [])
        self.kills: Counter[str] = Counter(dict.fromkeys(kinds, 0))
        self.removed: list[str] = []
        self.deliveries = 0
        self.t0 = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> Report:
        # SMTP is never down here; keep send retries for the engine's sake.
        extra = {"SEND_MAX_ATTEMPTS": "10"}
        if self.config.profile == "production":
            async with production(production_state_in(self.state), extra_env=extra) as p:
                self.prod, self.sink, self.fake_slack, self.base_url = p.stack, p.sink, p.fake_slack, p.base_url
                return await self.drive_all()
        async with embedded(self.state, extra) as e:
            self.stack, self.sink, self.app, self.fake_slack = e.stack, e.sink, e.app, e.fake_slack
            self.base_url = self.app.base_url
            return await self.drive_all()

    async def drive_all(self) -> Report:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            self.session = session
            self.api = Api(session, self.base_url)
            emails = self.plan()
            self.t0 = time.monotonic()
            chaos = asyncio.create_task(self.kill_loop())
            await asyncio.gather(*(self.drive(email) for email in emails))
            await chaos
            return await self.settle(emails)

    def plan(self) -> list[Email]:
        config, rng, emails = self.config, self.rng, []
        run = f"{config.seed}-{time.time_ns() % 10**8}"
        for i in range(config.n):
            via = "slack" if i % 2 else "api"
            due = rng.uniform(config.window_start, config.window_end)
            email = Email(
                index=i,
                via=via,
                email_id=f"chaos-{run}-{i}",
                recipient=f"chaos{i}.{run}@example.com",
                due=due,
                revise=rng.random() < config.revise_share,
                cancel=rng.random() < config.cancel_share,
            )
            if via == "slack":
                email.slack_user = f"UCHAOS{i}"
                email.slack_channel = f"D{email.slack_user}"
                email.slack_ts = f"{int(time.time())}.{i:06d}"
                email.email_id = thread_email_id(TEAM, email.slack_channel, email.slack_ts)
            emails.append(email)
        return emails

    async def kill_loop(self) -> None:
        config = self.config
        victims: list[str] = []
        kinds = list(self.kills)
        while True:
            await asyncio.sleep(self.rng.uniform(*config.kill_every))
            if self.now() > config.kill_until:
                return
            if config.profile == "production" and not self.removed and self.now() > config.kill_until / 2:
                await asyncio.to_thread(self.remove_for_good)
                continue
            if not victims:  # every process dies once per round, in a random order
                victims = self.rng.sample(kinds, len(kinds))
            victim = victims.pop()
            down_for = self.rng.uniform(0.2, 2.0)
            await asyncio.to_thread(self.kill, victim, down_for)

    def kill(self, victim: str, down_for: float) -> None:
        self.kills[victim] += 1
        if self.config.profile == "production":
            # A replica at random among the live ones; Temporal and PostgreSQL are one process each.
            names = [n for n in self.prod.started if n.split("-")[0] == victim]
            name = self.rng.choice(sorted(names))
            self.prod.kill(name)
            time.sleep(down_for)
            self.prod.revive(name)
            return
        if victim == "app":
            self.app.kill()
            time.sleep(down_for)
            self.app.start()
        else:
            process = self.stack.started[victim]
            process.kill()
            time.sleep(down_for)
            process.start(90)

    def remove_for_good(self) -> None:
        """One app replica and one iWF server die and never come back."""
        for kind in ("app", "iwf"):
            name = self.rng.choice(sorted(n for n in self.prod.started if n.split("-")[0] == kind))
            self.prod.remove(name)
            self.removed.append(name)

    # --- the client side ------------------------------------------------------------------

    async def eventually(self, what: str, attempt: Any, give_up_after: float = 120.0) -> Any:
        """Retry until the app answers (not a 5xx, not a connection error), as Slack and people do."""
        deadline = time.monotonic() + give_up_after
        last: Any = None
        while True:
            try:
                result = await attempt()
                if result is not None:
                    return result
            except (aiohttp.ClientError, TimeoutError, AssertionError) as error:
                last = error
            if time.monotonic() > deadline:
                raise RuntimeError(f"gave up: {what} (last: {last!r})")
            await asyncio.sleep(0.3)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any] | None:
        status, answer = await self.api.call(method, path, body)
        return None if status >= 500 else (status, answer)

    async def dm(self, email: Email, text: str, ts: str, thread: bool) -> tuple[int, str] | None:
        event: dict[str, Any] = {
            "type": "message",
            "channel_type": "im",
            "channel": email.slack_channel,
            "user": email.slack_user,
            "text": text,
            "ts": ts,
            "team": TEAM,
        }
        if thread:
            event["thread_ts"] = email.slack_ts
        body = event_body(event, f"Ev{ts}")
        # Slack signs every delivery afresh, with its own timestamp: so does this client.
        self.deliveries += 1
        stamp = int(time.time()) - self.deliveries % 200
        headers = {"Content-Type": "application/json", **sign(SLACK_SIGNING_SECRET, body, timestamp=stamp)}
        async with self.session.post(f"{self.base_url}/slack/events", data=body.encode(), headers=headers) as r:
            if r.status >= 500:
                return None
            if r.status != 200:
                raise RuntimeError(f"Slack delivery refused: {r.status} {await r.text()}")
            return r.status, await r.text()

    async def drive(self, email: Email) -> None:
        await asyncio.sleep(self.rng.uniform(0, 3))
        wait = max(1, round(email.due - self.now()))
        first = (
            f"to: {email.recipient}; subject: Chaos {email.index}; body: Hello {email.index}; send in {wait} seconds"
        )
        email.accepted_subject = f"Chaos {email.index}"
        if email.via == "api":
            await self.eventually("start", lambda: self.call("POST", f"/api/emails/{email.email_id}", {}))
            await self.eventually(
                "request",
                lambda: self.call(
                    "POST", f"/api/emails/{email.email_id}/messages", {"text": first, "message_id": "m1"}
                ),
            )
        else:
            await self.eventually("dm", lambda: self.dm(email, first, email.slack_ts, thread=False))
            await self.wait_started(email)
        if email.revise:
            await asyncio.sleep(self.rng.uniform(1, 5))
            text = f"subject: Chaos {email.index} revised"
            accepted = await self.send(email, text, "m2")
            if accepted:
                email.accepted_subject = f"Chaos {email.index} revised"
        if email.cancel:
            await asyncio.sleep(self.rng.uniform(1, 5))
            if email.via == "api":
                status, answer = await self.eventually(
                    "cancel", lambda: self.call("POST", f"/api/emails/{email.email_id}/cancel")
                )
                email.cancel_accepted = status == 200 and answer.get("ok") is True
            else:
                email.cancel_accepted = await self.send(email, "cancel it", "m3")

    async def wait_started(self, email: Email) -> None:
        async def started() -> bool | None:
            status, answer = await self.api.call("GET", f"/api/emails/{email.email_id}")
            if status != 200:
                raise AssertionError(f"{email.email_id}: {status} {answer}")
            return True

        await self.eventually("slack start", started)

    async def send(self, email: Email, text: str, key: str) -> bool:
        """A follow-up request; True if the app accepted it (not refused as too late)."""
        if email.via == "api":
            status, answer = await self.eventually(
                key,
                lambda: self.call("POST", f"/api/emails/{email.email_id}/messages", {"text": text, "message_id": key}),
            )
            return bool(status == 202 and answer.get("accepted"))
        ts = f"{email.slack_ts}{key[-1]}"
        await self.eventually(key, lambda: self.dm(email, text, ts, thread=True))

        # Slack acks before the request reaches the workflow: read its fate from the conversation.
        async def fate() -> bool | None:
            status, view = await self.api.call("GET", f"/api/emails/{email.email_id}")
            if status != 200:
                return None
            if any(t["role"] == "user" and t["text"] == text for t in view["conversation"]):
                return True
            return False if view["status"] in ("sent", "sending") else None

        return bool(await self.eventually(f"{key} fate", fate))

    async def settle(self, emails: list[Email]) -> Report:
        deadline = time.monotonic() + self.config.settle_timeout
        views: dict[str, dict[str, Any]] = {}
        pending = {e.email_id for e in emails}
        while pending and time.monotonic() < deadline:
            for email in emails:
                if email.email_id not in pending:
                    continue
                try:
                    status, view = await self.api.call("GET", f"/api/emails/{email.email_id}")
                except (aiohttp.ClientError, TimeoutError):
                    continue
                if status == 200 and view["status"] in ("sent", "canceled", "failed"):
                    views[email.email_id] = view
                    pending.discard(email.email_id)
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # anything still in flight would be a duplicate: give it the chance to show
        report = Report(
            n=len(emails),
            seed=self.config.seed,
            kills=dict(self.kills),
            profile=self.config.profile,
            removed=self.removed,
        )
        for email in emails:
            mails = self.sink.to(email.recipient)
            report.delivered += bool(mails)
            report.revised += email.revise and email.accepted_subject.endswith("revised")
            report.canceled += email.cancel_accepted
            if email.email_id in pending:
                report.stuck.append(email.email_id)
            if email.cancel_accepted:
                if mails:
                    report.sent_after_cancel.append(email.email_id)
                continue
            if not mails:
                report.lost.append(email.email_id)
                continue
            if len(mails) > 1:
                report.duplicated.append(email.email_id)
            if mails[0].message["Subject"] != email.accepted_subject:
                report.stale_content.append(f"{email.email_id}: {mails[0].message['Subject']!r}")
            view = views.get(email.email_id)
            if view and view.get("send_at"):
                due = datetime.fromisoformat(view["send_at"]).timestamp()
                report.max_lateness_s = max(report.max_lateness_s, mails[0].at - due)
        return report


async def run_chaos(config: Config) -> Report:
    """Runs in a fresh state dir, removed on success and kept (with every process's log) on failure."""
    state = Path(tempfile.mkdtemp(prefix="email-agent-chaos-"))
    try:
        report = await Chaos(config, state).run()
    except BaseException:
        print(f"chaos run failed; logs kept in {state}")
        raise
    if report.ok:
        shutil.rmtree(state, ignore_errors=True)
    else:
        print(f"chaos run found problems; logs kept in {state}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10_000)
    parser.add_argument("--window", type=float, default=None, help="seconds over which send times spread")
    parser.add_argument("--profile", choices=["dev", "production"], default="dev")
    args = parser.parse_args()
    config = Config(n=args.n, seed=args.seed, profile=args.profile)
    if args.window or args.n > 60:
        span = args.window or max(60.0, args.n * 0.6)
        config.window_start, config.window_end = 30.0, 30.0 + span
        config.kill_until = config.window_end
    report = asyncio.run(run_chaos(config))
    print(report.table())
    RESULTS[config.profile].write_text(
        json.dumps(
            {"date": datetime.now(UTC).isoformat(timespec="seconds"), "ok": report.ok, **asdict(report)}, indent=2
        )
        + "\n"
    )
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
