"""What the workflow does with the model's reply: pure logic, so it is tested without any engine.

The model proposes; this code disposes. Recipients, the send time and
completeness are checked here, and anything wrong becomes a question back to
the user instead of an email.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from workflows.agent import AgentReply
from workflows.model import EmailDraft
from workflows.recipients import RecipientError, normalize
from workflows.sendtime import NOW_GRACE, SendTimeError, format_local, resolve

Next = Literal["wait", "schedule", "cancel"]


@dataclass(frozen=True)
class Outcome:
    email: EmailDraft
    next: Next
    reply: str
    problem: str = ""


def apply_reply(
    reply: AgentReply,
    email: EmailDraft,
    *,
    timezone: str,
    now: datetime,
    allowed_domains: Sequence[str] = (),
) -> Outcome:
    if reply.action == "cancel":
        return Outcome(email=email, next="cancel", reply=reply.reply)

    to, subject, body = email.to, email.subject, email.body
    problems: list[str] = []
    if reply.to is not None:
        try:
            to = normalize(reply.to, allowed_domains)
        except RecipientError as error:
            problems.append(str(error))
    if reply.subject is not None:
        subject = " ".join(reply.subject.split())  # one line: a header cannot carry CR/LF
    if reply.body is not None:
        body = reply.body.strip("\n")

    send_at = email.send_at
    if reply.action == "hold":
        send_at = None
    elif reply.send_at_local:
        try:
            send_at = resolve(reply.send_at_local, timezone, now)
        except SendTimeError as error:
            problems.append(str(error))
            send_at = None

    changed = (to, subject, body) != (email.to, email.subject, email.body)
    updated = EmailDraft(
        to=to,
        subject=subject,
        body=body,
        send_at=send_at,
        revision=email.revision + 1 if changed else email.revision,
    )

    if problems:
        # Nothing half-understood goes out: the email waits until the user answers.
        return Outcome(
            email=updated.model_copy(update={"send_at": None}),
            next="wait",
            reply=_explain(problems, reply.reply),
            problem="; ".join(problems),
        )
    if updated.send_at is None:
        return Outcome(email=updated, next="wait", reply=reply.reply)
    missing = [name for name, value in (("recipient", to), ("subject", subject), ("body", body)) if not value]
    if missing:
        question = f"To schedule it I still need the {', '.join(missing)}."
        return Outcome(email=updated, next="wait", reply=_explain([question], reply.reply), problem=question)
    when = format_local(updated.send_at, timezone)
    if updated.send_at < now - NOW_GRACE:
        # A time given earlier, while something else was missing, has passed since: ask, never send late.
        question = f"The time you gave ({when}) has passed. When should I send it?"
        return Outcome(
            email=updated.model_copy(update={"send_at": None}), next="wait", reply=question, problem=question
        )
    text = reply.reply or f"Scheduled for {when}."
    return Outcome(email=updated.model_copy(update={"scheduled": True}), next="schedule", reply=text)


def _explain(problems: Sequence[str], model_reply: str) -> str:
    """What the user reads when something stops the email: the problems, each as a sentence. The model's
    own words are kept only when they ask something; its "Done." or "Scheduled!" would contradict them."""
    said = " ".join(model_reply.split())
    return " ".join([*(_sentence(problem) for problem in problems), *([said] if said.endswith("?") else [])])


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else f"{text}."
