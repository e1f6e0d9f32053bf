"""Turning the model's wall-clock time into an instant.

The model only ever says what a clock on the user's wall would show; the
arithmetic (time zones, DST, "is this in the past?") is done here, where it
can be tested, never by the model.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# "send it now" reaches us after the model has thought for a while; a time this
# close behind us is taken to mean "now", anything older is a mistake to ask about.
NOW_GRACE = timedelta(minutes=2)
# How far ahead an email may be scheduled (as far as "in N minutes" may say). The iWF server counts a timer's
# duration in Go nanoseconds, which overflow after 292 years and would fire at once: never pass it that.
MAX_AHEAD = timedelta(days=366)


class SendTimeError(ValueError):
    """The time cannot be used; `str(error)` is a question or remark for the user."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise SendTimeError(f"'{name}' is not a time zone I know (expected an IANA name like Europe/Paris)") from error


def is_valid_timezone(name: str) -> bool:
    try:
        zone(name)
    except SendTimeError:
        return False
    return True


def resolve(
    local_text: str, timezone: str, now: datetime, grace: timedelta = NOW_GRACE, ahead: timedelta | None = MAX_AHEAD
) -> datetime:
    """The UTC instant for a local wall-clock time such as '2026-11-26T09:00'.

    Ambiguous times (the repeated hour when clocks go back) mean the first
    occurrence; times that do not exist (the skipped hour when clocks go
    forward) move forward by the gap, as calendars do.
    """
    tz = zone(timezone)
    try:
        parsed = datetime.fromisoformat(local_text.strip())
    except ValueError as error:
        raise SendTimeError(f"I could not read '{local_text}' as a date and time. When should I send it?") from error
    if _date_only(local_text):  # "Friday" read as midnight would go out at 00:00 without a word
        raise SendTimeError(f"What time on {parsed:%a %d %b %Y} should I send it?")
    # fold=0 (PEP 495) is exactly the rule above: the first of two repeated
    # times, and for a skipped time the pre-transition offset, which lands
    # after the gap.
    try:
        instant = (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz, fold=0)).astimezone(UTC)
        instant.astimezone(tz)  # it is shown to the user later, in their zone
    except OverflowError as error:  # e.g. year 9999 west of UTC: off the end of the calendar
        raise SendTimeError(f"'{local_text}' is not a date I can use. When should I send it?") from error
    if instant < now - grace:
        shown = format_local(instant, timezone)
        raise SendTimeError(f"{shown} is in the past. When should I send it?")
    if ahead is not None and instant > now + ahead:
        shown = format_local(instant, timezone)
        raise SendTimeError(f"{shown} is more than a year ahead, further than I schedule. When should I send it?")
    return max(instant, now)


def _date_only(text: str) -> bool:
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def resolve_proposed(local_text: str, timezone: str, now: datetime) -> datetime:
    """The model's time, which the contract says is a wall-clock time in the user's zone. An offset it adds
    anyway (often a "Z") is its own arithmetic: taken only when it is the user's zone's offset at that time,
    else the user is asked, since "9am" read at the wrong offset would go out hours off without a word."""
    tz = zone(timezone)
    try:
        parsed = datetime.fromisoformat(local_text.strip())
    except ValueError:
        return resolve(local_text, timezone, now)  # its own message
    offset = parsed.utcoffset()
    if offset is not None:
        wall = parsed.replace(tzinfo=None)
        if offset not in {wall.replace(tzinfo=tz, fold=fold).utcoffset() for fold in (0, 1)}:
            try:
                at = format_local(parsed.astimezone(UTC), timezone)
            except OverflowError as error:  # off the end of the calendar in the user's zone
                raise SendTimeError(f"'{local_text}' is not a date I can use. When should I send it?") from error
            raise SendTimeError(
                f"the time came as {wall:%Y-%m-%d %H:%M} at UTC{parsed:%z}, which is {at} for you. When should "
                "I send it, in your own time?"
            )
    return resolve(local_text, timezone, now)


def format_local(instant: datetime, timezone: str) -> str:
    """How a time is shown to the user: their zone, 12-hour clock, zone abbreviation."""
    local = instant.astimezone(zone(timezone))
    hour = local.strftime("%I").lstrip("0") or "12"
    return f"{local:%a %d %b %Y}, {hour}:{local:%M %p} {local.tzname()}"


def seconds_until(instant: datetime, now: datetime) -> int:
    return max(0, int((instant - now) / timedelta(seconds=1) + 0.999))
