"""Send-time resolution: local wall clock -> UTC instant, DST-correct, past times refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from workflows.sendtime import (
    NOW_GRACE,
    SendTimeError,
    format_local,
    is_valid_timezone,
    resolve,
    resolve_proposed,
    seconds_until,
)

LA = "America/Los_Angeles"
PARIS = "Europe/Paris"
ZONES = sorted(available_timezones())


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_a_date_without_a_time_is_asked_about_not_read_as_midnight() -> None:
    with pytest.raises(SendTimeError, match="What time on Fri 27 Nov 2026"):
        resolve("2026-11-27", LA, utc(2026, 11, 25))
    with pytest.raises(SendTimeError, match="What time on"):
        resolve_proposed("2026-11-27", LA, utc(2026, 11, 25))
    assert resolve("2026-11-27T00:00", LA, utc(2026, 11, 25)) == utc(2026, 11, 27, 8)  # midnight, said so


def test_more_than_a_year_ahead_is_asked_about_not_given_to_the_engine() -> None:
    """The iWF server counts a timer in Go nanoseconds: the year 2500 overflowed into a timer that fired at once."""
    with pytest.raises(SendTimeError, match="more than a year ahead"):
        resolve_proposed("2500-01-01T09:00:00", LA, utc(2026, 11, 25))
    assert resolve("2027-11-25T09:00", "UTC", utc(2026, 11, 25)) == utc(2027, 11, 25, 9)


# --- DST-correct conversion ---------------------------------------------------------


def test_tomorrow_nine_in_los_angeles_in_november_is_pst() -> None:
    now = utc(2026, 11, 25, 20, 0)  # 12:00 PST on the 25th
    assert resolve("2026-11-26T09:00:00", LA, now) == utc(2026, 11, 26, 17, 0)


def test_tomorrow_nine_in_los_angeles_in_july_is_pdt() -> None:
    now = utc(2026, 7, 14, 19, 0)  # 12:00 PDT on the 14th
    assert resolve("2026-07-15T09:00:00", LA, now) == utc(2026, 7, 15, 16, 0)


def test_result_is_aware_and_in_utc() -> None:
    instant = resolve("2026-11-26T09:00", LA, utc(2026, 11, 25, 20))
    assert instant.tzinfo is not None
    assert instant.utcoffset() == timedelta(0)


def test_spring_forward_gap_moves_forward_by_the_gap() -> None:
    # 2026-03-29 in Paris: 02:00 CET jumps to 03:00 CEST, so 02:30 never shows on a clock.
    instant = resolve("2026-03-29T02:30:00", PARIS, utc(2026, 3, 1))
    assert instant == utc(2026, 3, 29, 1, 30)
    local = instant.astimezone(ZoneInfo(PARIS))
    assert (local.hour, local.minute, local.tzname()) == (3, 30, "CEST")


def test_autumn_repeated_hour_means_the_first_occurrence() -> None:
    # 2026-10-25 in Paris: 03:00 CEST goes back to 02:00 CET, so 02:30 happens at 00:30Z and at 01:30Z.
    instant = resolve("2026-10-25T02:30:00", PARIS, utc(2026, 10, 1))
    assert instant == utc(2026, 10, 25, 0, 30)
    assert instant.astimezone(ZoneInfo(PARIS)).tzname() == "CEST"


def test_gap_can_be_a_whole_day() -> None:
    # Samoa skipped 2011-12-30 entirely (UTC-10 -> UTC+14): the gap rule moves such a time by 24 hours,
    # which is why the property test below bounds the shift by the gap, not by "one or two hours".
    instant = resolve("2011-12-30T12:00:00", "Pacific/Apia", utc(2011, 1, 1))
    assert instant.astimezone(ZoneInfo("Pacific/Apia")).replace(tzinfo=None) == datetime(2011, 12, 31, 12, 0)


# --- "now" and the past -------------------------------------------------------------


def test_time_just_behind_now_is_clamped_to_now() -> None:
    now = utc(2026, 11, 25, 20, 0, 30)
    assert resolve("2026-11-25T11:59:00", LA, now) == now  # 90 s ago, within NOW_GRACE


def test_time_exactly_grace_behind_is_still_now() -> None:
    now = utc(2026, 11, 25, 20, 0)
    local = (now - NOW_GRACE).astimezone(ZoneInfo(LA)).replace(tzinfo=None).isoformat()
    assert resolve(local, LA, now) == now


def test_future_time_is_not_clamped() -> None:
    now = utc(2026, 11, 25, 20, 0)
    assert resolve("2026-11-25T12:00:01", LA, now) == now + timedelta(seconds=1)


def test_time_older_than_grace_is_a_question() -> None:
    now = utc(2026, 11, 25, 20, 0)
    just_too_old = (now - NOW_GRACE - timedelta(seconds=1)).astimezone(ZoneInfo(LA)).replace(tzinfo=None)
    with pytest.raises(SendTimeError) as caught:
        resolve(just_too_old.isoformat(), LA, now)
    assert "in the past" in str(caught.value)
    assert str(caught.value).endswith("?")


def test_past_time_message_shows_it_in_the_users_zone() -> None:
    with pytest.raises(SendTimeError) as caught:
        resolve("2026-11-24T09:00:00", LA, utc(2026, 11, 25, 20))
    message = str(caught.value)
    assert "9:00 AM PST" in message
    assert "24 Nov 2026" in message
    assert "in the past" in message
    assert "When should I send it?" in message


def test_custom_grace_is_honoured() -> None:
    now = utc(2026, 11, 25, 20, 0)
    with pytest.raises(SendTimeError):
        resolve("2026-11-25T11:59:00", LA, now, grace=timedelta(0))
    assert resolve("2026-11-25T11:50:00", LA, now, grace=timedelta(minutes=15)) == now


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "tomorrow at 9",
        "",
        "   ",
        "9am",
        "2026-13-01T09:00:00",
        "2026-02-30T09:00",
        "26/11/2026 09:00",
        "null",
    ],
)
def test_garbage_text_is_a_question(text: str) -> None:
    with pytest.raises(SendTimeError) as caught:
        resolve(text, LA, utc(2026, 1, 1))
    assert "?" in str(caught.value)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "PST", "europe/paris", "../../etc/passwd", "/etc/localtime"])
def test_unknown_zone_is_refused(name: str) -> None:
    with pytest.raises(SendTimeError) as caught:
        resolve("2026-11-26T09:00:00", name, utc(2026, 1, 1))
    assert "time zone" in str(caught.value)
    assert not is_valid_timezone(name)


def test_known_zone_is_valid() -> None:
    assert is_valid_timezone(LA)
    assert is_valid_timezone("UTC")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T09:00:00+01:00", utc(2026, 11, 26, 8, 0)),
        ("2026-11-26T09:00:00Z", utc(2026, 11, 26, 9, 0)),
        ("2026-11-26T09:00:00-05:30", utc(2026, 11, 26, 14, 30)),
    ],
)
def test_explicit_offset_in_the_text_wins_over_the_zone(text: str, expected: datetime) -> None:
    assert resolve(text, LA, utc(2026, 1, 1)) == expected


@pytest.mark.parametrize(
    ("text", "zone_name"),
    [
        ("9999-12-31T23:00:00", LA),  # west of UTC: past the end of the calendar in UTC
        ("0001-01-01T03:00:00", "Asia/Tokyo"),  # east of UTC: before its start
        ("0001-01-01T00:00:00+05:00", LA),
        ("0001-01-01T01:00:00+00:00", LA),  # converts, but cannot be shown in the user's zone
        ("9999-12-31T20:00:00+00:00", "Asia/Tokyo"),  # in the future, but cannot be shown either
    ],
)
def test_dates_at_the_edge_of_the_calendar_are_a_question_not_a_crash(text: str, zone_name: str) -> None:
    # Reached only if the model says something silly; it must become a question, not an OverflowError.
    with pytest.raises(SendTimeError) as caught:
        resolve(text, zone_name, utc(2026, 1, 1))
    assert str(caught.value).endswith("?")


# --- display and timers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "zone_name", "expected"),
    [
        (utc(2026, 11, 26, 17, 0), LA, "Thu 26 Nov 2026, 9:00 AM PST"),
        (utc(2026, 7, 15, 16, 0), LA, "Wed 15 Jul 2026, 9:00 AM PDT"),
        (utc(2026, 7, 15, 19, 5), LA, "Wed 15 Jul 2026, 12:05 PM PDT"),
        (utc(2026, 7, 15, 7, 0), LA, "Wed 15 Jul 2026, 12:00 AM PDT"),
        (utc(2026, 11, 26, 20, 45), PARIS, "Thu 26 Nov 2026, 9:45 PM CET"),
    ],
)
def test_format_local(instant: datetime, zone_name: str, expected: str) -> None:
    assert format_local(instant, zone_name) == expected


def test_seconds_until_rounds_up_and_never_goes_negative() -> None:
    now = utc(2026, 1, 1)
    assert seconds_until(now + timedelta(seconds=90), now) == 90
    assert seconds_until(now + timedelta(seconds=90.5), now) == 91
    assert seconds_until(now, now) == 0
    assert seconds_until(now - timedelta(hours=3), now) == 0


# --- properties --------------------------------------------------------------------------

FAR_PAST = utc(1990, 1, 1)
local_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31, 23, 59, 59))


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone_name=st.sampled_from(ZONES), naive=local_times)
@example(zone_name=PARIS, naive=datetime(2026, 3, 29, 2, 30))
@example(zone_name=PARIS, naive=datetime(2026, 10, 25, 2, 30))
@example(zone_name="Pacific/Apia", naive=datetime(2011, 12, 30, 12, 0))
@example(zone_name="Australia/Lord_Howe", naive=datetime(2026, 10, 4, 2, 15))
@example(zone_name="Antarctica/Troll", naive=datetime(2026, 3, 29, 1, 30))  # 2-hour jump
@example(zone_name="Antarctica/Casey", naive=datetime(2022, 10, 2, 1, 30))  # 3-hour jump
def test_any_zone_any_local_time_round_trips_or_moves_forward_by_the_gap(zone_name: str, naive: datetime) -> None:
    tz = ZoneInfo(zone_name)
    instant = resolve(naive.isoformat(), zone_name, FAR_PAST, ahead=None)

    assert instant.tzinfo is not None and instant.utcoffset() == timedelta(0)

    # The two readings PEP 495 allows; they differ only around a transition.
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    existing = [c.astimezone(UTC) for c in (first, second) if _wall(c.astimezone(UTC), tz) == naive]

    shift = _wall(instant, tz) - naive
    if existing:
        # A time that shows on the clock: same wall clock back, and the earliest instant when it shows twice.
        assert shift == timedelta(0)
        assert instant == min(existing)
    else:
        # A time skipped by a clock going forward: later by exactly the size of the jump, never earlier.
        gap = second.utcoffset() - first.utcoffset()  # type: ignore[operator]
        assert gap > timedelta(0)
        assert shift == gap
        # Jumps in tzdata for 2000-2037 are 30 min, 1 h, 2 h (Troll), 3 h (Casey) and a whole day
        # (Apia and Fakaofo, 2011): "at most 2 hours" would be wrong; a day is the real bound.
        assert shift <= timedelta(hours=24)


@settings(max_examples=500, deadline=None)
@given(
    zone_name=st.sampled_from(ZONES),
    naive=st.one_of(  # the calendar's two ends, where UTC conversion can fall off it, get their own share
        st.datetimes(),
        st.datetimes(max_value=datetime(1, 1, 2)),
        st.datetimes(min_value=datetime(9999, 12, 30)),
    ),
    now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
)
def test_any_datetime_anywhere_resolves_or_asks_never_crashes(zone_name: str, naive: datetime, now: datetime) -> None:
    try:
        instant = resolve(naive.isoformat(), zone_name, now)
    except SendTimeError as error:
        assert str(error)
    else:
        assert instant >= now
        assert instant.utcoffset() == timedelta(0)
        assert format_local(instant, zone_name)  # what the user is shown next must not crash either


@settings(max_examples=300, deadline=None)
@given(
    naive=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31)),
    offset_minutes=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    zone_name=st.sampled_from(ZONES),
)
def test_explicit_offset_is_honoured_whatever_the_zone(naive: datetime, offset_minutes: int, zone_name: str) -> None:
    aware = naive.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    assert resolve(aware.isoformat(), zone_name, FAR_PAST, ahead=None) == aware.astimezone(UTC)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40), zone_name=st.one_of(st.sampled_from(ZONES), st.text(max_size=30)))
def test_arbitrary_text_and_zone_never_escape_as_other_errors(text: str, zone_name: str) -> None:
    try:
        resolve(text, zone_name, utc(2026, 1, 1))
    except SendTimeError:
        pass


@settings(max_examples=500, deadline=None)
@given(
    instant=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 1, 1), timezones=st.just(UTC)),
    now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 1, 1), timezones=st.just(UTC)),
)
def test_seconds_until_is_never_negative_and_never_fires_early(instant: datetime, now: datetime) -> None:
    seconds = seconds_until(instant, now)
    assert seconds >= 0
    if instant > now:
        # A timer of `seconds` ends at most a millisecond before the instant, and less than a second after.
        assert now + timedelta(seconds=seconds) >= instant - timedelta(milliseconds=1)
        assert now + timedelta(seconds=seconds) < instant + timedelta(seconds=1)
    else:
        assert seconds == 0


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40), zone_name=st.sampled_from(ZONES))
@example(text="9999-12-31T211Z", zone_name="Pacific/Kiritimati")
@example(text="0001-01-01T00:00+05:00", zone_name="America/Los_Angeles")
def test_the_models_time_with_any_offset_never_escapes_as_other_errors(text: str, zone_name: str) -> None:
    """An offset off the end of the calendar in the user's zone is a question for the user, not a crash of the
    step (which would be retried, then end as "the assistant failed")."""
    try:
        resolve_proposed(text, zone_name, utc(2026, 1, 1))
    except SendTimeError:
        pass
