"""What a chaos run does, decided before it starts: the emails (who sends what, when, through which edge)
and the faults, drawn from the seed and the place they happen so that a replay injects the same ones."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bot.slack.threads import thread_email_id
from tests.fakes.slack_server import TEAM

MODEL_FAULTS = ("429", "500", "garbage", "timeout")
SMTP_FAULTS = ("451", "554", "drop", "lose")
SMTP_REPLIES = {"451": "451 4.3.0 try again later (chaos)", "554": "554 5.7.1 message rejected (chaos)"}
SLOW_SMTP_SECONDS = 2.0  # "slow": the sink holds its answer this long (the app's SMTP time-out is 5 s)
MODEL_TIMEOUT_SECONDS = 3.0  # "timeout": the fake answers this late (the app gives up after 2 s)


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


def plan(config: Config, rng: random.Random) -> list[Email]:
    emails: list[Email] = []
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
