"""Chaos run: schedule, revise and cancel emails while SIGKILLing the app, the iWF server and the
Temporal dev server at random moments, while the model and the mail server misbehave at random; then
check every email against the SMTP sink.

    make chaos                              # N=200
    python -m bench.chaos --n 30 --seed 7   # replay a run: same seed, same plan, kills and faults

Each email goes in through the HTTP API or as a signed Slack DM. A client retries every operation until
the app answers (Slack re-delivers events, people press again), with an idempotency key, as real clients
do. Then it behaves as a user reading the answers: when the assistant failed on a request (the email
shows `last_error` and no answer), it says the same words again; when the mail server refused the email
for good (`failed`), it asks again to send it; an email whose delivery is unknown (`unconfirmed`) is not
sent again. What the app *understood* (an assistant answer after the user's words) defines what must
happen: an accepted cancel must never be delivered, the last understood revision is what is delivered,
an email scheduled by the last understood request is delivered exactly once (or reported "delivery
unknown"), and nothing is silently unscheduled or left running.

Faults are drawn from the seed and the place they happen (which email, its how-manyth model call or
delivery), so a replay injects the same faults in the same places however the run's timing differs:
the fake model answers 429, 500, garbage or too slowly; the SMTP sink answers 451 or 554, takes the
message and drops the connection, drops it before taking the message, or holds its answer (a slow server,
so a kill can land mid-delivery).

The mail account has a Sent folder (a real IMAP server, pymap, which the sink files every message it
takes into, as Gmail does), so a lost answer is settled by asking it; `--no-sent-folder` runs the same
plan against a plain SMTP account, where a lost answer is "delivery unknown".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import embedded, production, production_state_in
from bot.slack.app import thread_email_id
from tests.fakes.slack_server import TEAM, event_body, sign
from tests.harness import SLACK_SIGNING_SECRET, Api
from tests.imap_server import ImapServer

RESULTS = {
    "dev": Path(__file__).with_name("chaos-results.json"),
    "production": Path(__file__).with_name("chaos-prod-results.json"),
}

MODEL_FAULTS = ("429", "500", "garbage", "timeout")
SMTP_FAULTS = ("451", "554", "drop", "lose")
SMTP_REPLIES = {"451": "451 4.3.0 try again later (chaos)", "554": "554 5.7.1 message rejected (chaos)"}
SLOW_SMTP_SECONDS = 2.0  # "slow": the sink holds its answer this long (the app's SMTP time-out is 5 s)
MODEL_TIMEOUT_SECONDS = 3.0  # "timeout": the fake answers this late (the app gives up after 2 s)
RESTING = ("sent", "canceled", "unconfirmed")


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
    model_fault_rate: float = 0.10  # of model calls, split evenly over MODEL_FAULTS
    smtp_fault_rate: float = 0.10  # of deliveries (DATA), split evenly over SMTP_FAULTS
    smtp_slow_rate: float = 0.05  # of deliveries, on top: the answer held SLOW_SMTP_SECONDS
    max_said_again: int = 6  # per request: said again at most this many times after the assistant failed
    max_asked_again: int = 3  # per email: "send in N seconds" asked again at most this many times after `failed`
    profile: str = "dev"  # or "production": PostgreSQL crash-stops too, one app replica and one iWF die for good
    sent_folder: bool = True  # the account's Sent folder answers over IMAP (Gmail's case); False: plain SMTP


class Faults:
    """Which fault happens where. A draw depends only on the seed and the place (the email, and its n-th
    model call or n-th delivery), never on timing, and every fault drawn is counted and logged."""

    def __init__(self, config: Config):
        self.config = config
        self.counts: Counter[str] = Counter()
        self.by_email: dict[int, list[str]] = {}
        self._seen: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()  # the sink asks from its own thread

    def _draw(self, where: str, email: int, kinds: list[tuple[str, float]]) -> str | None:
        with self._lock:
            n = self._seen[(where, email)]
            self._seen[(where, email)] += 1
            roll = random.Random(f"{self.config.seed}/{where}/{email}/{n}").random()
            for kind, rate in kinds:
                if roll < rate:
                    self.counts[f"{where} {kind}"] += 1
                    self.by_email.setdefault(email, []).append(f"{where} {kind}")
                    return kind
                roll -= rate
            return None

    def model(self, body: dict[str, Any]) -> str | None:
        """FakeOpenAI's hook: every user message of the run names its email ("Chaos 12")."""
        users = [str(m.get("content")) for m in body.get("messages", []) if m.get("role") == "user"]
        found = re.search(r"\bChaos (\d+)\b", users[-1] if users else "")
        share = self.config.model_fault_rate / len(MODEL_FAULTS)
        return self._draw("model", int(found.group(1)) if found else -1, [(k, share) for k in MODEL_FAULTS])

    def smtp(self, envelope: Any) -> str | None:
        """SmtpSink's hook: the recipient names the email (chaos12.<run>@example.com)."""
        found = re.match(r"chaos(\d+)\.", (envelope.rcpt_tos or [""])[0])
        share = self.config.smtp_fault_rate / len(SMTP_FAULTS)
        kinds = [*((k, share) for k in SMTP_FAULTS), ("slow", self.config.smtp_slow_rate)]
        kind = self._draw("smtp", int(found.group(1)) if found else -1, kinds)
        if kind == "slow":
            return f"hold {SLOW_SMTP_SECONDS}"
        return SMTP_REPLIES.get(kind, kind) if kind else None

    def count(self, where: str, kind: str) -> int:
        return self.counts[f"{where} {kind}"]


@dataclass
class Email:
    index: int
    via: str  # "api" or "slack"
    email_id: str
    recipient: str
    due: float  # seconds after start
    revise: bool
    cancel: bool
    rng: random.Random
    slack_user: str = ""
    slack_channel: str = ""
    slack_ts: str = ""
    # What the client said and what the app understood.
    sent_messages: int = 0  # messages this client sent (each with its own id)
    user_turns: int = 0  # of them, accepted by the app (each is one user turn in the conversation)
    expected_subject: str = ""  # of the last understood request that set one
    scheduled: bool = False  # the last understood request left the email going out
    understood_any: bool = False
    revised: bool = False
    cancel_accepted: bool = False
    cancel_at: float = 0.0  # wall clock when the accepted cancel was asked
    said_again: int = 0
    asked_again: int = 0
    not_understood: bool = False  # a request the assistant never answered, however often it was said
    request_stuck: bool = False
    unscheduled_by: list[str] = field(default_factory=list)  # model failures that took its schedule away
    refusals_understood: int = 0  # SMTP 554s injected before the last understood request
    seen: set[str] = field(default_factory=set)  # statuses this client saw
    final: dict[str, Any] = field(default_factory=dict)
    settled: bool = False


@dataclass
class Report:
    n: int
    seed: int
    kills: dict[str, int]
    faults: dict[str, int]
    profile: str = "dev"
    sent_folder: bool = True
    removed: list[str] = field(default_factory=list)  # replicas killed for good mid-run
    said_again: int = 0
    asked_again: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    sent_after_cancel: list[str] = field(default_factory=list)
    unscheduled: list[str] = field(default_factory=list)
    stale_content: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    # Told to the user, neither lost nor duplicated: listed, not counted as failures.
    unconfirmed_delivered: list[str] = field(default_factory=list)
    unconfirmed_not_delivered: list[str] = field(default_factory=list)
    duplicated_unconfirmed: list[str] = field(default_factory=list)  # duplicates the user was told about
    failed: list[str] = field(default_factory=list)  # refused for good even after asking again
    not_understood: list[str] = field(default_factory=list)  # the assistant failed on every try
    faults_by_email: dict[str, list[str]] = field(default_factory=dict)  # email index: faults in order
    max_lateness_s: float = 0.0
    latest: str = ""  # the email that arrived latest after its send time
    canceled: int = 0
    revised: int = 0
    delivered: int = 0
    confirmed_afterwards: int = 0  # of the delivered: the answer was lost, the Sent folder settled it

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.sent_after_cancel
            or self.unscheduled
            or self.stale_content
            or self.stuck
        )

    @property
    def accounted(self) -> int:
        """Emails that ended in a state the user was told about (all of them, in a good run)."""
        return (
            self.delivered
            + self.canceled
            + len(self.unconfirmed_delivered)
            + len(self.unconfirmed_not_delivered)
            + len(self.failed)
            + len(self.not_understood)
        )

    def table(self) -> str:
        f = self.faults

        def split(where: str, kinds: tuple[str, ...]) -> str:
            return " / ".join(str(f.get(f"{where} {k}", 0)) for k in kinds)

        rows = [
            ("N", self.n),
            ("seed", self.seed),
            ("profile", self.profile),
            (f"kills: {' / '.join(self.kills)}", " / ".join(str(v) for v in self.kills.values())),
            ("killed for good", ", ".join(self.removed) or "-"),
            ("model faults: 429 / 500 / garbage / time-out", split("model", MODEL_FAULTS)),
            (
                "SMTP faults: 451 / 554 / drop after DATA / lost before taken / slow",
                split("smtp", (*SMTP_FAULTS, "slow")),
            ),
            ("Sent folder over IMAP", "yes" if self.sent_folder else "no (plain SMTP)"),
            ("said again after a model failure / asked again after failed", f"{self.said_again} / {self.asked_again}"),
            ("revised / canceled (understood)", f"{self.revised} / {self.canceled}"),
            ("delivered once", self.delivered),
            ("of them, answer lost and found in the Sent folder", self.confirmed_afterwards),
            (
                "delivery unknown, told: delivered / not delivered",
                f"{len(self.unconfirmed_delivered)} / {len(self.unconfirmed_not_delivered)}",
            ),
            ("failed, told / never understood, told", f"{len(self.failed)} / {len(self.not_understood)}"),
            ("lost", len(self.lost)),
            (
                "duplicated (of them reported as delivery unknown)",
                f"{len(self.duplicated) + len(self.duplicated_unconfirmed)} ({len(self.duplicated_unconfirmed)})",
            ),
            ("sent after cancel", len(self.sent_after_cancel)),
            ("unscheduled", len(self.unscheduled)),
            ("stale content", len(self.stale_content)),
            ("stuck", len(self.stuck)),
            ("max lateness", f"{self.max_lateness_s:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"| {k.ljust(width)} | {v} |" for k, v in rows]
        if self.latest:
            lines.append(f"  latest: {self.latest}")
        told = (
            "unconfirmed_delivered",
            "unconfirmed_not_delivered",
            "duplicated_unconfirmed",
            "failed",
            "not_understood",
        )
        for name in told:
            for entry in getattr(self, name):
                lines.append(f"  {name.replace('_', ' ')}: {entry}")
        for name in ("lost", "duplicated", "sent_after_cancel", "unscheduled", "stale_content", "stuck"):
            for entry in getattr(self, name):
                lines.append(f"  PROBLEM {name.replace('_', ' ')}: {entry}")
        return "\n".join(lines)


class Chaos:
    def __init__(self, config: Config, state: Path):
        self.config = config
        self.rng = random.Random(config.seed)
        self.kill_rng = random.Random(f"{config.seed}/kills")
        self.faults = Faults(config)
        self.state = state
        kinds = ["app", "iwf", "temporal"] + (["postgres"] if config.profile == "production" else [])
        self.kills: Counter[str] = Counter(dict.fromkeys(kinds, 0))
        self.removed: list[str] = []
        self.deliveries = 0
        self.t0 = 0.0
        self.imap: ImapServer | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> Report:
        # SMTP 451s are retried by the workflow: keep enough attempts for the faults and the engine's sake.
        extra = {"SEND_MAX_ATTEMPTS": "10"}
        async with self.sent_folder(extra):
            return await self.run_on_engine(extra)

    @asynccontextmanager
    async def sent_folder(self, extra: dict[str, str]) -> AsyncIterator[None]:
        """The account's Sent folder (pymap), when the run has one: the app is told where it is."""
        if not self.config.sent_folder:
            yield
            return
        imap = ImapServer()
        await asyncio.to_thread(imap.start, self.state / "pymap.log")
        self.imap = imap
        extra |= {
            "IMAP_HOST": "127.0.0.1",
            "IMAP_PORT": str(imap.port),
            "IMAP_SECURITY": "none",
            "IMAP_USERNAME": imap.username,
            "IMAP_PASSWORD": imap.password,
            "IMAP_SENT_FOLDER": imap.folder,
            "IMAP_SETTLE_SECONDS": "1",
        }
        try:
            yield
        finally:
            imap.stop()

    async def run_on_engine(self, extra: dict[str, str]) -> Report:
        if self.config.profile == "production":
            async with production(production_state_in(self.state), extra_env=extra) as p:
                self.prod, self.sink, self.fake_slack, self.base_url = p.stack, p.sink, p.fake_slack, p.base_url
                p.fake_ai.slow_seconds = MODEL_TIMEOUT_SECONDS
                p.fake_ai.fault = self.faults.model
                p.sink.fault = self.faults.smtp
                p.sink.sent_folder = self.imap.file if self.imap else None
                return await self.drive_all()
        async with embedded(self.state, extra) as e:
            self.stack, self.sink, self.app, self.fake_slack = e.stack, e.sink, e.app, e.fake_slack
            self.base_url = self.app.base_url
            e.fake_ai.slow_seconds = MODEL_TIMEOUT_SECONDS
            e.fake_ai.fault = self.faults.model
            e.sink.fault = self.faults.smtp
            e.sink.sent_folder = self.imap.file if self.imap else None
            return await self.drive_all()

    async def drive_all(self) -> Report:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            self.session = session
            self.api = Api(session, self.base_url)
            emails = self.plan()
            self.t0 = time.monotonic()
            self.settle_by = self.t0 + self.config.window_end + self.config.settle_timeout
            chaos = asyncio.create_task(self.kill_loop())
            await asyncio.gather(*(self.drive(email) for email in emails))
            await chaos
            await asyncio.sleep(3)  # anything still in flight would be a duplicate: give it the chance to show
            return self.check(emails)

    def plan(self) -> list[Email]:
        config, rng, emails = self.config, self.rng, []
        run = f"{config.seed}-{time.time_ns() % 10**8}"
        root = int(time.time())
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
                rng=random.Random(f"{config.seed}/email/{i}"),
            )
            if via == "slack":
                email.slack_user = f"UCHAOS{i}"
                email.slack_channel = f"D{email.slack_user}"
                email.slack_ts = f"{root}.{i:06d}"
                email.email_id = thread_email_id(TEAM, email.slack_channel, email.slack_ts)
            emails.append(email)
        return emails

    async def kill_loop(self) -> None:
        config, rng = self.config, self.kill_rng
        victims: list[str] = []
        kinds = list(self.kills)
        while True:
            await asyncio.sleep(rng.uniform(*config.kill_every))
            if self.now() > config.kill_until:
                return
            if config.profile == "production" and not self.removed and self.now() > config.kill_until / 2:
                await asyncio.to_thread(self.remove_for_good)
                continue
            if not victims:  # every process dies once per round, in a random order
                victims = rng.sample(kinds, len(kinds))
            victim = victims.pop()
            down_for = rng.uniform(0.2, 2.0)
            await asyncio.to_thread(self.kill, victim, down_for)

    def kill(self, victim: str, down_for: float) -> None:
        self.kills[victim] += 1
        if self.config.profile == "production":
            # A replica at random among the live ones; Temporal and PostgreSQL are one process each.
            names = [n for n in self.prod.started if n.split("-")[0] == victim]
            name = self.kill_rng.choice(sorted(names))
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
            name = self.kill_rng.choice(sorted(n for n in self.prod.started if n.split("-")[0] == kind))
            self.prod.remove(name)
            self.removed.append(name)

    # --- the client side: transport ---------------------------------------------------------

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

    async def describe(self, email: Email) -> dict[str, Any]:
        async def attempt() -> dict[str, Any] | None:
            status, view = await self.api.call("GET", f"/api/emails/{email.email_id}")
            if status >= 500:
                return None
            if status != 200:
                raise RuntimeError(f"{email.email_id}: describe answered {status} {view}")
            email.seen.add(view["status"])
            return dict(view)

        result: dict[str, Any] = await self.eventually(f"describe {email.email_id}", attempt)
        return result

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

    async def put(self, email: Email, text: str) -> bool:
        """One message from the user, delivered until the app answers; True if it was accepted (not
        refused as too late or finished). Each message has its own id; retries of it keep that id."""
        email.sent_messages += 1
        seq = email.sent_messages
        if email.via == "api":
            key = f"m{seq}"
            path = f"/api/emails/{email.email_id}/messages"
            status, answer = await self.eventually(
                key, lambda: self.call("POST", path, {"text": text, "message_id": key})
            )
            if status == 202 and answer.get("accepted"):
                return True
            if status == 409:
                return False
            raise RuntimeError(f"{email.email_id}: message answered {status} {answer}")
        root = seq == 1  # the thread's first message starts the email
        ts = email.slack_ts if root else f"{int(email.slack_ts.split('.')[0]) + seq}.{email.index:06d}"
        await self.eventually(f"dm {ts}", lambda: self.dm(email, text, ts, thread=not root))
        if root:
            return True
        # The app answers Slack once the workflow accepted or refused the message: the email shows which.
        view = await self.describe(email)
        users = sum(t["role"] == "user" for t in view["conversation"])
        return bool(users > email.user_turns or view["pending_requests"] > 0)

    # --- the client side: a user -------------------------------------------------------------

    async def say(self, email: Email, text: str, subject: str | None = None) -> str:
        """Says `text` until the assistant answers it: "understood", "refused" (too late / finished),
        "not understood" (the assistant failed every time), "moot" (not understood, and the email went
        on without it: sent, canceled, delivery unknown) or "stuck" (no answer and no error)."""
        for _ in range(1 + self.config.max_said_again):
            if not await self.put(email, text):
                return "refused"
            email.user_turns += 1
            fate, view = await self.fate(email)
            if fate == "answered":
                email.understood_any = True
                email.refusals_understood = self.refusals(email)
                if subject:
                    email.expected_subject = subject
                email.scheduled = bool(view["will_send"]) or view["status"] in ("sending", "sent", "unconfirmed")
                return "understood"
            if fate in ("stuck", "moot"):
                email.request_stuck = fate == "stuck"
                return fate
            # A model failure changes nothing: an email that was going out still goes out (unless the mail
            # server refused it for good meanwhile, which unschedules it with its own reason).
            refused = self.refusals(email) > email.refusals_understood
            if email.scheduled and not email.cancel_accepted and not view["will_send"] and not refused:
                email.unscheduled_by.append(
                    f"the assistant failed on {text!r} and the email is now {view['status']}: {view['plan']!r}"
                )
            email.said_again += 1  # the assistant failed: say it again, as a person would
        email.said_again -= 1
        email.not_understood = True
        return "not understood"

    def refusals(self, email: Email) -> int:
        return self.faults.by_email.get(email.index, []).count("smtp 554")

    async def fate(self, email: Email) -> tuple[str, dict[str, Any]]:
        """Waits for the answer to the latest accepted message (the email's `user_turns`-th user turn):
        "answered" (an assistant turn after it), "failed" (none, nothing left to do, and `last_error`
        says why), "moot" (none, and the email is at rest) or "stuck"."""
        k = email.user_turns
        deadline = time.monotonic() + 120
        while True:
            view = await self.describe(email)
            turns = view["conversation"]
            users = [j for j, t in enumerate(turns) if t["role"] == "user"]
            if len(users) >= k:
                if any(t["role"] == "assistant" for t in turns[users[k - 1] + 1 :]):
                    return "answered", view
                if view["status"] in RESTING:
                    return "moot", view  # not understood, and the email went on without it (sent, ...)
                busy = view["status"] in ("processing", "sending") or view["pending_requests"]
                if not busy and view["last_error"]:
                    return "failed", view
            if time.monotonic() > deadline:
                return "stuck", view
            await asyncio.sleep(0.3)

    async def still_open(self, email: Email) -> bool:
        """Whether a user looking at the email would still change it: not while it is being handed over,
        and not once it is sent, canceled, refused for good or of unknown delivery."""
        while True:
            view = await self.describe(email)
            if view["status"] != "sending":
                return view["status"] not in (*RESTING, "failed")
            await asyncio.sleep(0.3)

    async def drive(self, email: Email) -> None:
        i, rng = email.index, email.rng
        await asyncio.sleep(rng.uniform(0, 3))
        wait = max(1, round(email.due - self.now()))
        first = f"to: {email.recipient}; subject: Chaos {i}; body: Hello {i}; send in {wait} seconds"
        if email.via == "api":
            await self.eventually("start", lambda: self.call("POST", f"/api/emails/{email.email_id}", {}))
        await self.say(email, first, subject=f"Chaos {i}")
        if email.revise and email.understood_any:
            await asyncio.sleep(rng.uniform(1, 5))
            if await self.still_open(email):
                answer = await self.say(email, f"subject: Chaos {i} revised", subject=f"Chaos {i} revised")
                email.revised = answer == "understood"
        if email.cancel:
            await asyncio.sleep(rng.uniform(1, 5))
            if await self.still_open(email):
                asked_at = time.time()
                if email.via == "api":
                    status, answer = await self.eventually(
                        "cancel", lambda: self.call("POST", f"/api/emails/{email.email_id}/cancel")
                    )
                    email.cancel_accepted = status == 200 and answer.get("ok") is True
                else:
                    email.cancel_accepted = await self.say(email, f"cancel Chaos {i}") == "understood"
                if email.cancel_accepted:
                    email.cancel_at = asked_at
        await self.follow(email)

    async def follow(self, email: Email) -> None:
        """Watches the email until it rests, asking again to send it when the mail server refused it."""
        while True:
            view = await self.describe(email)
            email.final = view
            status = view["status"]
            if status in RESTING:
                email.settled = True
                return
            idle = not view["pending_requests"] and status not in ("processing", "sending", "scheduled")
            if idle:
                # `failed`: the mail server refused it for good, and the user is told so: ask again. `waiting`
                # without a plan the user asked for (a revision landed after a refusal): ask again too. An email
                # the user's last understood request scheduled, waiting unscheduled, is left as the app left it.
                unplanned = email.understood_any and not email.scheduled and "unconfirmed" not in email.seen
                refused = status == "failed" or (status == "waiting" and unplanned)
                if email.request_stuck or email.not_understood or not refused:
                    email.settled = True
                    return
                if email.asked_again >= self.config.max_asked_again:
                    email.settled = True
                    return
                email.asked_again += 1
                await self.say(email, f"Chaos {email.index}: send in 3 seconds")
                continue
            if time.monotonic() > self.settle_by:
                return  # not settled: stuck
            pause = 1.0
            if view["will_send"] and view["send_at"]:
                ahead = datetime.fromisoformat(view["send_at"]).timestamp() - time.time()
                pause = min(max(0.5, ahead + 0.3), 5.0)
            await asyncio.sleep(pause)

    # --- the checker --------------------------------------------------------------------------

    def check(self, emails: list[Email]) -> Report:
        report = Report(
            n=len(emails),
            seed=self.config.seed,
            kills=dict(self.kills),
            faults=dict(sorted(self.faults.counts.items())),
            faults_by_email={str(i): kinds for i, kinds in sorted(self.faults.by_email.items())},
            profile=self.config.profile,
            sent_folder=self.config.sent_folder,
            removed=self.removed,
        )
        for email in emails:
            mails = self.sink.to(email.recipient)
            view = email.final
            status = view.get("status", "?")
            faults = self.faults.by_email.get(email.index, [])
            label = f"{email.email_id} (email {email.index}, {email.via}; {status}; faults: {', '.join(faults) or '-'})"
            report.said_again += email.said_again
            report.asked_again += email.asked_again
            report.revised += email.revised
            if email.unscheduled_by:  # one entry per email, however often it happened
                report.unscheduled.append(f"{label}: {'; '.join(email.unscheduled_by)}")
            if not email.settled or email.request_stuck:
                report.stuck.append(label)
                continue
            if email.cancel_accepted:
                report.canceled += 1
                if any(m.at >= email.cancel_at for m in mails):
                    report.sent_after_cancel.append(label)
                elif mails or status != "canceled":
                    report.lost.append(f"{label}: cancel accepted, yet it ended {status} with {len(mails)} delivered")
                continue
            for mail in mails:
                if mail.message["Subject"] != email.expected_subject:
                    report.stale_content.append(
                        f"{label}: {mail.message['Subject']!r}, understood {email.expected_subject!r}"
                    )
            if status == "unconfirmed":
                told = f"{label}: {view.get('last_error')}"
                (report.unconfirmed_delivered if mails else report.unconfirmed_not_delivered).append(told)
                if len(mails) > 1:
                    report.duplicated_unconfirmed.append(f"{label}: {len(mails)} deliveries")
                continue
            if len(mails) > 1:
                report.duplicated.append(f"{label}: {len(mails)} deliveries")
                continue
            if mails:
                if status != "sent":
                    report.lost.append(f"{label}: delivered, but the user is told {status!r}")
                    continue
                report.delivered += 1
                report.confirmed_afterwards += "checked the account's sent mail" in view.get("last_reply", "")
                if view.get("send_at"):
                    lateness = mails[0].at - datetime.fromisoformat(view["send_at"]).timestamp()
                    if lateness > report.max_lateness_s:
                        report.max_lateness_s, report.latest = lateness, label
                continue
            # Nothing arrived.
            if status == "failed" and view.get("last_error"):
                report.failed.append(f"{label}: {view['last_error']}")
            elif email.not_understood and view.get("last_error"):
                report.not_understood.append(f"{label}: {view['last_error']}")
            elif status in ("sent", "canceled"):
                report.lost.append(f"{label}: the app says {status}, nothing arrived")
            elif email.scheduled and not view.get("will_send"):
                if email.unscheduled_by:
                    continue  # listed already
                report.unscheduled.append(f"{label}: plan {view.get('plan')!r}, last error {view.get('last_error')!r}")
            elif email.scheduled:
                report.stuck.append(f"{label}: still planned, {view.get('plan')!r}")
            else:
                report.lost.append(f"{label}: never scheduled, though it was asked to be ({view.get('plan')!r})")
        return report


async def run_chaos(config: Config, keep_logs: bool = False) -> Report:
    """Runs in a fresh state dir, removed on success and kept (with every process's log) on failure, when
    asked, or when an email that never reached the mail server ended "delivery unknown" (worth a look)."""
    state = Path(tempfile.mkdtemp(prefix="email-agent-chaos-"))
    try:
        report = await Chaos(config, state).run()
    except BaseException:
        print(f"chaos run failed; logs kept in {state}")
        raise
    if report.ok and not keep_logs and not report.unconfirmed_not_delivered:
        shutil.rmtree(state, ignore_errors=True)
    else:
        print(f"logs kept in {state}" + ("" if report.ok else " (the chaos run found problems)"))
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10_000)
    parser.add_argument("--window", type=float, default=None, help="seconds over which send times spread")
    defaults = Config()
    parser.add_argument("--model-faults", type=float, default=defaults.model_fault_rate, help="share of model calls")
    parser.add_argument("--smtp-faults", type=float, default=defaults.smtp_fault_rate, help="share of deliveries")
    parser.add_argument("--smtp-slow", type=float, default=defaults.smtp_slow_rate, help="share of deliveries")
    parser.add_argument("--keep-logs", action="store_true", help="keep the state dir and logs even if all is well")
    parser.add_argument("--profile", choices=["dev", "production"], default="dev")
    parser.add_argument(
        "--no-sent-folder", action="store_true", help="a plain SMTP account: no Sent folder to settle a lost answer"
    )
    args = parser.parse_args()
    config = Config(
        profile=args.profile,
        n=args.n,
        seed=args.seed,
        model_fault_rate=args.model_faults,
        smtp_fault_rate=args.smtp_faults,
        smtp_slow_rate=args.smtp_slow,
        sent_folder=not args.no_sent_folder,
    )
    if args.window or args.n > 60:
        span = args.window or max(60.0, args.n * 0.6)
        config.window_start, config.window_end = 30.0, 30.0 + span
        config.kill_until = config.window_end
    report = asyncio.run(run_chaos(config, keep_logs=args.keep_logs))
    print(report.table())
    results = RESULTS[config.profile]
    if not config.sent_folder:
        results = results.with_name(results.name.replace("-results", "-plain-smtp-results"))
    results.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "ok": report.ok,
                "config": {k: v for k, v in asdict(config).items()},
                **asdict(report),
            },
            indent=2,
        )
        + "\n"
    )
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
