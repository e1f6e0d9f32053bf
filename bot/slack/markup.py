"""Slack's message text turned back into what the user typed, before the model (or an email) sees it.

Slack sends `text` in its mrkdwn encoding: `&`, `<` and `>` as the entities `&amp;`, `&lt;`, `&gt;`, and
addresses, links, mentions and channels as `<...>` tokens (`<mailto:ana@example.com|ana@example.com>`,
`<https://x.io|x.io>`, `<@U123>`, `<#C123|general>`, `<!here>`, `<!date^…|fallback>`). Events also carry
the same words as rich_text `blocks`, but only `text` is read: it is present on every path (messages,
file shares, edits, slash commands, which have no blocks), it holds every token the blocks hold, and
Slack documents it as the message's content; reading one field keeps all paths the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_TOKEN = re.compile(r"<([^<>]*)>")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")
_SPECIAL = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


def unescape(text: str) -> str:
    """Slack's three entities, in one pass: '&amp;lt;' is the typed text '&lt;', not '<'."""
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


def escape(text: str) -> str:
    """Plain text made safe to post back as mrkdwn: it can then neither mention nor link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(escaped: str, limit: int) -> str:
    """Escaped text cut to `limit` characters if longer, never inside an entity ("&amp;" whole or not at all)."""
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut.rstrip() + "…"


def listed(items: Sequence[str], limit: int) -> str:
    """Escaped items joined with commas, as many as fit in `limit` characters, then "and N more"."""
    pieces = [escape(item) for item in items]
    for count in range(len(pieces), 0, -1):
        rest = len(pieces) - count
        text = ", ".join(pieces[:count]) + (f" and {rest} more" if rest else "")
        if len(text) <= limit:
            return text
    return f"{len(pieces)} address{'es' if len(pieces) > 1 else ''}" if pieces else ""


def mentioned_users(text: str) -> list[str]:
    """The user ids mentioned in `text`, in order, each once."""
    return list(dict.fromkeys(_USER.findall(text)))


def to_plain(text: str, names: Mapping[str, str] | None = None) -> str:
    """`text` as the user read it in Slack; `names` maps user ids to display names (else `@U123`)."""
    parts: list[str] = []
    end = 0
    for token in _TOKEN.finditer(text):
        parts += [unescape(text[end : token.start()]), _plain_token(token.group(1), names or {})]
        end = token.end()
    parts.append(unescape(text[end:]))
    return "".join(parts)


def _plain_token(inner: str, names: Mapping[str, str]) -> str:
    target, _, label = inner.partition("|")
    target, label = unescape(target), unescape(label)
    if target.startswith("@"):
        user = target[1:]
        return f"@{names.get(user) or label or user}"
    if target.startswith("#"):
        return f"#{label or target[1:]}"
    if target.startswith("!"):
        command = target[1:]
        if label:
            return label  # <!date^…|fallback>, <!subteam^S123|@team>, <!here|@here>
        return _SPECIAL.get(command, f"@{command.partition('^')[2] or command}")
    if target.startswith("mailto:"):
        address = target.removeprefix("mailto:")
        return address if label in ("", address) else f"{label} ({address})"
    if label in ("", target) or (f"//{label}" in target and target.endswith(label)):
        return target  # a bare link, or one Slack labelled with the URL itself (minus its scheme)
    return f"{label} ({target})"
