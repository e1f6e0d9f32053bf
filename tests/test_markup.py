"""Slack's encoded text back to plain text; pure, no Slack needed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.slack.markup import escape, mentioned_users, to_plain, unescape
from tests.fakes.slack_server import slack_encode


@pytest.mark.parametrize(
    ("encoded", "plain"),
    [
        ("Q&amp;A &lt;draft&gt;", "Q&A <draft>"),
        ("&amp;lt; stays as typed", "&lt; stays as typed"),
        ("to <mailto:ana@example.com|ana@example.com>", "to ana@example.com"),
        ("to <mailto:ana@example.com|Ana>", "to Ana (ana@example.com)"),
        ("to <mailto:ana@example.com>", "to ana@example.com"),
        ("see <https://x.io/deck|the deck>", "see the deck (https://x.io/deck)"),
        ("see <https://x.io/deck>", "see https://x.io/deck"),
        ("see <https://x.io|x.io>", "see https://x.io"),
        ("see <https://x.io/a?b=1&amp;c=2|https://x.io/a?b=1&amp;c=2>", "see https://x.io/a?b=1&c=2"),
        ("see <https://x.io|R&amp;D>", "see R&D (https://x.io)"),
        ("thank <@U123>", "thank @U123"),
        ("thank <@U123|ana>", "thank @ana"),
        ("in <#C123|general>", "in #general"),
        ("in <#C123>", "in #C123"),
        ("<!here> <!channel> <!everyone>", "@here @channel @everyone"),
        ("<!subteam^S123|@design> please", "@design please"),
        (
            "<!date^1392734382^{date} at {time}|February 18th, 2014 at 6:39 AM PST>",
            "February 18th, 2014 at 6:39 AM PST",
        ),
        ("<tel:+33123456789|+33 1 23 45 67 89>", "+33 1 23 45 67 89 (tel:+33123456789)"),
    ],
)
def test_slack_markup_becomes_plain_text(encoded: str, plain: str) -> None:
    assert to_plain(encoded) == plain


def test_mentions_use_display_names_when_known() -> None:
    text = "thank <@U1> and <@W2|bo> and <@U3>, cc <@U1>"
    assert mentioned_users(text) == ["U1", "W2", "U3"]
    assert to_plain(text, {"U1": "Ana López", "W2": "Bo"}) == "thank @Ana López and @Bo and @U3, cc @Ana López"


PIECES = ["ana@example.com", "https://x.io/a?b=1&c=2", "<b>", "&amp;", "&", "|", " ", "@U1", "#general", "<!here>"]


@given(st.lists(st.one_of(st.text(), st.sampled_from(PIECES))).map("".join))
def test_what_a_user_types_comes_back_exactly(typed: str) -> None:
    assert to_plain(slack_encode(typed)) == typed


@given(st.text())
def test_escape_and_unescape_are_inverse(text: str) -> None:
    assert unescape(escape(text)) == text
    assert "<" not in escape(text) and ">" not in escape(text)
