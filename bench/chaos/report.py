"""What a chaos run found: every email checked against what arrived at the SMTP sink and what the user
was told, and the table `make chaos` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.chaos.plan import MODEL_FAULTS, SMTP_FAULTS, Config, Email, Faults
from tests.harness import SmtpSink


@dataclass(frozen=True)
class Kill:
    at: float  # wall clock, as the sink stamps mail
    victim: str
    down_for: float


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
    latest_why: list[str] = field(default_factory=list)  # its send attempts and the kills while it was due
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
            lines.extend(f"    {why}" for why in self.latest_why)
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


def check(
    emails: list[Email],
    sink: SmtpSink,
    config: Config,
    faults: Faults,
    kills: dict[str, int],
    removed: list[str],
    kill_log: list[Kill] | None = None,
) -> Report:
    """Each email against what arrived for its recipient and what the user was last told about it."""
    report = Report(
        n=len(emails),
        seed=config.seed,
        kills=dict(kills),
        faults=dict(sorted(faults.counts.items())),
        faults_by_email={str(i): kinds for i, kinds in sorted(faults.by_email.items())},
        profile=config.profile,
        sent_folder=config.sent_folder,
        removed=removed,
    )
    for email in emails:
        mails = sink.to(email.recipient)
        view = email.final
        status = view.get("status", "?")
        drawn = faults.by_email.get(email.index, [])
        label = f"{email.email_id} (email {email.index}, {email.via}; {status}; faults: {', '.join(drawn) or '-'})"
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
                due = datetime.fromisoformat(view["send_at"]).timestamp()
                lateness = mails[0].at - due
                if lateness > report.max_lateness_s:
                    report.max_lateness_s, report.latest = lateness, label
                    report.latest_why = _why_late(view, due, mails[0].at, kill_log or [])
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


def _why_late(view: dict[str, Any], due: float, arrived: float, kill_log: list[Kill]) -> list[str]:
    """What happened between an email's send time and its arrival: its attempts and every kill meanwhile
    (a kill shortly before the send time counts too: a process coming back takes seconds)."""
    why = [f"send attempts {view.get('send_attempts')}; last error {view.get('last_error')!r}"]
    why += [
        f"{kill.victim} killed at {kill.at - due:+.1f} s, down {kill.down_for:.1f} s"
        for kill in kill_log
        if due - 10 <= kill.at <= arrived
    ]
    return why
