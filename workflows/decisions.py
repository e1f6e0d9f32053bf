"""What the workflow does with the model's reply: pure logic, so it is tested without any engine.

The model proposes; this code disposes. Recipients, the send time and
completeness are checked here, and anything wrong becomes a question back to
the user instead of an email.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from workflows.agent import AgentReply
from workflows.model import EmailDraft, EmailEdit
from workflows.recipients import MAX_RECIPIENTS, RecipientError, in_domains, normalize
from workflows.sendtime import NOW_GRACE, SendTimeError, format_local, resolve, resolve_proposed, zone

Next = Literal["wait", "schedule", "cancel"]


@dataclass(frozen=True)
class Outcome:
    email: EmailDraft
    next: Next
    reply: str
    problem: str = ""


@dataclass(frozen=True)
class Policy:
    """Who may be written to and how much, decided in code whatever the model proposes.

    `vouched`: addresses the owner wrote themselves or confirmed; with it set, any other address the model
    proposes waits for the owner's confirmation (None: no such check, e.g. for unit tests of other rules).
    `confirm_external`: `allowed_domains` no longer refuses other domains, it asks the owner to confirm them.
    """

    allowed_domains: Sequence[str] = ()
    confirm_external: bool = False
    vouched: frozenset[str] | None = None
    confirmed: frozenset[str] = frozenset()
    max_recipients: int = MAX_RECIPIENTS
    max_body_chars: int = 0  # 0: no limit
    undo_seconds: int = 0  # an email due sooner than this after it is scheduled waits this long, undoable

    def is_external(self, address: str) -> bool:
        """Outside the allowed domains, under `confirm_external`: confirmed for that reason, written or not."""
        return bool(self.confirm_external and self.allowed_domains and not in_domains(address, self.allowed_domains))

    def needs_confirmation(self, address: str) -> bool:
        key = address.lower()
        if key in self.confirmed:
            return False
        if self.confirm_external and self.allowed_domains and not in_domains(key, self.allowed_domains):
            return True
        return self.vouched is not None and key not in self.vouched


def apply_reply(
    reply: AgentReply,
    email: EmailDraft,
    *,
    timezone: str,
    now: datetime,
    allowed_domains: Sequence[str] = (),
    policy: Policy | None = None,
) -> Outcome:
    policy = policy or Policy(allowed_domains=allowed_domains)
    if reply.action == "cancel":
        return Outcome(email=email, next="cancel", reply=reply.reply)

    to, unconfirmed, subject, body = email.to, email.unconfirmed, email.subject, email.body
    problems: list[str] = []
    if reply.to is not None:
        try:
            hard_domains = () if policy.confirm_external else policy.allowed_domains
            proposed = normalize(reply.to, hard_domains, policy.max_recipients)
        except RecipientError as error:
            problems.append(str(error))
        else:
            kept = {a.lower() for a in email.to}  # already on the email: accepted before
            to = [a for a in proposed if a.lower() in kept or not policy.needs_confirmation(a)]
            unconfirmed = [a for a in proposed if a not in to]
    if reply.subject is not None:
        subject = " ".join(reply.subject.split())  # one line: a header cannot carry CR/LF
    if reply.body is not None:
        body = reply.body.strip("\n")

    send_at = email.send_at
    if reply.action == "schedule" and not reply.send_at_local and reply.send_in_minutes is None and send_at is None:
        # "Scheduled!" with no time to schedule at: never shown as if it were done.
        problems.append("when should I send it? Give me a day and a time")
    if reply.action == "hold":
        send_at = None
    elif reply.send_in_minutes is not None and reply.action == "schedule":
        # Only with "schedule" (the user gave a time now): a model that repeats the "120" of an earlier "in 2
        # hours" while drafting would otherwise move the email two hours on from each later message.
        # "In 2 hours" is two hours of real time, counted here in UTC: on the night clocks change, a wall clock
        # moved on by two hours is one or three hours away.
        send_at = now + timedelta(minutes=reply.send_in_minutes)
    elif reply.send_at_local and _same_wall_time(reply.send_at_local, email.send_at, timezone):
        pass  # the time it was given, echoed back: the instant stays (the second 1:30 of a DST change too)
    elif reply.send_at_local and reply.action == "schedule":
        # Only with "schedule", as for send_in_minutes: a model that repeats an earlier time while drafting
        # ("make it shorter" after Undo) would otherwise arm an email the owner put on hold.
        try:
            send_at = resolve_proposed(reply.send_at_local, timezone, now)
        except SendTimeError as error:
            problems.append(str(error))
            send_at = None

    changed = (to, subject, body) != (email.to, email.subject, email.body)
    updated = EmailDraft(
        to=to,
        unconfirmed=unconfirmed,
        subject=subject,
        body=body,
        send_at=send_at,
        revision=email.revision + 1 if changed else email.revision,
    )
    # Armed at this very time before the message came: its time passing while the model worked is no reason
    # to stop, nor to ask (the owner may be gone, and the email would silently never go).
    due_while_composing = email.scheduled and send_at is not None and send_at == email.send_at
    return _decide(
        updated, problems, reply.reply, timezone=timezone, now=now, policy=policy, was_armed=due_while_composing
    )


def _same_wall_time(local_text: str, send_at: datetime | None, timezone: str) -> bool:
    """Whether the model's wall-clock time is the email's current one as shown to it (no offset)."""
    if send_at is None:
        return False
    try:
        proposed = datetime.fromisoformat(local_text.strip())
    except ValueError:
        return False
    if proposed.tzinfo is not None:
        return False
    shown = send_at.astimezone(zone(timezone)).replace(tzinfo=None, microsecond=0)
    # To the second, as it was shown (a time made from "now" carries microseconds the model never saw), or
    # to the minute when the model left the seconds out.
    return proposed == shown or (proposed.second == proposed.microsecond == 0 and proposed == shown.replace(second=0))


def decide_recipient(
    email: EmailDraft, address: str, confirm: bool, *, timezone: str, now: datetime, policy: Policy | None = None
) -> Outcome:
    """The owner confirmed or removed a proposed recipient: the email moves on as if the model had just
    proposed what is left (scheduled at its time if nothing else is open)."""
    key = address.lower()
    if key not in (a.lower() for a in email.unconfirmed):
        return Outcome(email=email, next="wait", reply=f"{address} is not waiting for a confirmation.")
    unconfirmed = [a for a in email.unconfirmed if a.lower() != key]
    chosen = [a for a in email.unconfirmed if a.lower() == key]
    to = [*email.to, *chosen] if confirm else email.to
    updated = email.model_copy(
        update={"to": to, "unconfirmed": unconfirmed, "revision": email.revision + (1 if confirm else 0)}
    )
    said = f"{address} {'confirmed' if confirm else 'removed'}."
    return _decide(updated, [], said, timezone=timezone, now=now, announce=True, policy=policy)


def send_now(email: EmailDraft, *, timezone: str, now: datetime, policy: Policy) -> Outcome:
    """The owner's Send now: it goes at once, after the undo window, if nothing is open."""
    return _decide(
        email.model_copy(update={"send_at": now}),
        [],
        "Sending now.",
        timezone=timezone,
        now=now,
        announce=True,
        policy=policy,
    )


def hold(email: EmailDraft) -> Outcome:
    """The owner's Undo: a scheduled email is put on hold (never sent until they say when)."""
    if not email.scheduled:
        return Outcome(email=email, next="wait", reply="It is not scheduled: there is nothing to undo.")
    # The time goes too: a later message without one must not arm the old time again.
    held = email.model_copy(update={"scheduled": False, "send_at": None, "undo_until": None})
    return Outcome(
        email=held, next="wait", reply="Undone: it is on hold and will not be sent. Press Send now or tell me when."
    )


def edit_errors(edit: EmailEdit, *, timezone: str, now: datetime, policy: Policy) -> dict[str, str]:
    """What is wrong with the owner's own version, field by field (the modal shows them beside the fields)."""
    return _checked_edit(edit, timezone=timezone, now=now, policy=policy)[1]


def apply_edit(email: EmailDraft, edit: EmailEdit, *, timezone: str, now: datetime, policy: Policy) -> Outcome:
    """The owner's own version, one new revision, no model: the same rules as for the model's proposals, except
    that recipients the owner typed are vouched for."""
    if edit.base_version is not None and edit.base_version != email.version:
        problem = "the email changed after you opened the editor (a message, an edit, Undo); open Edit again to see it"
        return Outcome(email=email, next="wait", reply=f"Your edit was not applied: {problem}.", problem=problem)
    draft, errors = _checked_edit(edit, timezone=timezone, now=now, policy=policy)
    if errors or draft is None:
        problem = "; ".join(f"{field}: {why}" for field, why in errors.items())
        return Outcome(email=email, next="wait", reply=f"Your edit was not applied: {problem}.", problem=problem)
    changed = (draft.to, draft.subject, draft.body) != (email.to, email.subject, email.body)
    updated = draft.model_copy(update={"revision": email.revision + 1 if changed else email.revision})
    return _decide(updated, [], "Your edit is applied.", timezone=timezone, now=now, announce=True, policy=policy)


def _checked_edit(
    edit: EmailEdit, *, timezone: str, now: datetime, policy: Policy
) -> tuple[EmailDraft | None, dict[str, str]]:
    errors: dict[str, str] = {}
    to: list[str] = []
    try:
        to = normalize(edit.to, () if policy.confirm_external else policy.allowed_domains, policy.max_recipients)
    except RecipientError as error:
        errors["to"] = str(error)
    if not to and "to" not in errors:
        errors["to"] = "at least one recipient is needed"
    subject = " ".join(edit.subject.split())
    if not subject:
        errors["subject"] = "a subject is needed"
    body = edit.body.strip("\n")
    if not body.strip():
        errors["body"] = "the body is empty"
    elif policy.max_body_chars and len(body) > policy.max_body_chars:
        errors["body"] = f"{len(body)} characters; the limit is {policy.max_body_chars}"
    send_at = None
    if edit.send_at_local:
        try:
            send_at = resolve(edit.send_at_local, timezone, now)
        except SendTimeError as error:
            errors["send_at"] = str(error)
    if errors:
        return None, errors
    # Typed by the owner: vouched for, except where CONFIRM_EXTERNAL_RECIPIENTS asks for every outside domain.
    typed = Policy(policy.allowed_domains, policy.confirm_external, vouched=None, confirmed=policy.confirmed)
    outside = [a for a in to if typed.needs_confirmation(a)]
    inside = [a for a in to if a not in outside]
    return EmailDraft(to=inside, unconfirmed=outside, subject=subject, body=body, send_at=send_at), {}


def _decide(
    updated: EmailDraft,
    problems: list[str],
    said: str,
    *,
    timezone: str,
    now: datetime,
    announce: bool = False,
    policy: Policy | None = None,
    was_armed: bool = False,
) -> Outcome:
    """Where the email goes from here. `said`: the model's reply, or (`announce`) what the owner just did,
    which is always shown first. `was_armed`: `updated.send_at` is the time the email was scheduled for."""
    prefix = f"{said} " if announce else ""
    to, subject, body = updated.to, updated.subject, updated.body
    if policy is not None and policy.max_body_chars and len(body) > policy.max_body_chars:
        # Checked on every way out (the model's words, Send now, a confirmed recipient), not only when the
        # body changes: an over-long body is kept for the owner to shorten, and must not be sent as it is.
        problems = [*problems, f"the body is {len(body)} characters long; the limit is {policy.max_body_chars}"]
    if problems:
        # Nothing half-understood goes out: the email waits until the user answers. Its time stays, shown as
        # "on hold (was planned for ...)", for when the answer comes: a time that was itself the problem was
        # never taken (apply_reply), and one kept from before is still what the owner asked for.
        return Outcome(
            email=updated.model_copy(update={"scheduled": False, "undo_until": None}),
            next="wait",
            reply=prefix + _explain(problems, "" if announce else said),
            problem="; ".join(problems),
        )
    if updated.unconfirmed:
        names, one = ", ".join(updated.unconfirmed), len(updated.unconfirmed) == 1
        it = "it" if one else "them"
        external = policy is not None and all(policy.is_external(a) for a in updated.unconfirmed)
        why = (
            f"outside {', '.join(policy.allowed_domains)}"
            if external and policy is not None
            else "not in your own messages"
        )
        question = (
            f"New recipient{'' if one else 's'}: {names}. {'It is' if one else 'They are'} {why}, so I will "
            f"not write to {it} until you confirm {it} (or remove {it}) on the card."
        )
        return Outcome(
            email=updated.model_copy(update={"scheduled": False}),
            next="wait",
            reply=prefix + question,
            problem=question,
        )
    if updated.send_at is None:
        return Outcome(email=updated, next="wait", reply=said)
    missing = [name for name, value in (("recipient", to), ("subject", subject), ("body", body)) if not value]
    if missing:
        question = f"To schedule it I still need the {', '.join(missing)}."
        return Outcome(
            email=updated, next="wait", reply=prefix + _explain([question], "" if announce else said), problem=question
        )
    send_at = updated.send_at
    if was_armed and send_at < now - NOW_GRACE:
        # It was going out at that time, and the owner's last words (the model slow to take them) held it up.
        late = f"It was due at {format_local(send_at, timezone)}; it goes now, with your last change."
        send_at = now
        updated = updated.model_copy(update={"send_at": send_at})
        said = f"{said.strip()} {late}".strip()
    when = format_local(send_at, timezone)
    if send_at < now - NOW_GRACE:
        # A time given earlier, while something else was missing, has passed since: ask, never send late.
        question = f"The time you gave ({when}) has passed. When should I send it?"
        return Outcome(
            email=updated.model_copy(update={"send_at": None}), next="wait", reply=prefix + question, problem=question
        )
    undo = timedelta(seconds=policy.undo_seconds if policy else 0)
    if undo and send_at < now + undo:
        # Due within the undo window: it waits that long, and the card offers Undo until then.
        armed = updated.model_copy(update={"scheduled": True, "send_at": now + undo, "undo_until": now + undo})
        seconds = int(undo.total_seconds())
        text = (
            f"{said} Sending in {seconds} seconds (you can undo until then)."
            if announce
            else (f"{said} Sending in {seconds} seconds (you can undo until then).".strip())
        )
        return Outcome(email=armed, next="schedule", reply=text)
    # The time the code worked out is always said: the model's own words may name another ("9 AM" for 21:00).
    text = " ".join(part for part in (said.strip(), f"Scheduled for {when}.") if part)
    armed = updated.model_copy(update={"scheduled": True, "undo_until": None})
    return Outcome(email=armed, next="schedule", reply=text)


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
