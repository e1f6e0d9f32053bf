"""Recipient checks done in code, whatever the model said."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from email_validator import EmailNotValidError, validate_email

MAX_RECIPIENTS = 20
# Loose on purpose: it finds candidates in what the user wrote; each is validated before it counts.
# Labels in any script (IDNA), ending in a top-level label that is all ASCII letters or all other letters,
# so the words written right after an address ("bob@example.comに送って") are not read as part of it.
# It starts where a word in a Latin script starts, so no address is read out of the end of another ("jürgen@"
# is not "rgen@"); Chinese or Japanese is written right up to it ("请发给bob@example.com").
_ADDRESS = re.compile(
    r"(?<![A-Za-z0-9.+_\u00C0-\u024F-])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[\w-]+\.)+(?:[A-Za-z]{2,63}|[^\W\d_A-Za-z]{2,63})"
)
# Characters an address may hold that people also write around one ("to=bob@…", "cc:ann@…", "a@x.org/b@y.org").
_SEPARATORS = re.compile(r"[=/|:]")
# "Bob Smith <bob@example.com>" or '"Smith, Bob" <bob@example.com>': one mailbox, written with its name.
# An unquoted name holds no "@": "bob@x.com <eve@y.com>" is two mailboxes, refused, not eve's alone.
_NAMED = re.compile(r'\s*(?:"[^"\r\n]*"|[^"<>\r\n,;@]*?)\s*<([^<>\s,;"]+)>\s*')


class RecipientError(ValueError):
    """`str(error)` says, in plain words, which address is refused and why."""


def addresses_in(texts: Iterable[str]) -> set[str]:
    """Every address written in these texts, lower-cased: what the user has vouched for by writing it."""
    found: set[str] = set()
    for text in texts:
        for match in _ADDRESS.findall(text):
            local, _, domain = match.partition("@")
            # Both readings of "to=bob@example.com": the user wrote bob's address, whatever the prefix.
            for candidate in {match, f"{_SEPARATORS.split(local)[-1]}@{domain}"}:
                try:
                    checked = validate_email(candidate.strip(".'"), check_deliverability=False)
                except EmailNotValidError:
                    continue
                found.add((checked.ascii_email or checked.normalized).lower())
    return found


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def ascii_domain(domain: str) -> str:
    """A domain in the ASCII form addresses are kept in (IDNA: "bücher.de" is "xn--bcher-kva.de")."""
    try:
        return domain.strip().encode("idna").decode("ascii").lower()
    except UnicodeError:
        return domain.strip().lower()


def in_domains(address: str, domains: Sequence[str]) -> bool:
    """Whether an address (kept in ASCII form) is in one of these domains, however they are spelled."""
    return domain_of(address) in {ascii_domain(d) for d in domains}


def normalize(
    addresses: Iterable[str],
    allowed_domains: Sequence[str] = (),
    max_recipients: int = MAX_RECIPIENTS,
    *,
    special_use: bool = False,
) -> list[str]:
    """Validated, de-duplicated addresses in the order given.

    One entry is exactly one mailbox: "Bob Smith <bob@example.com>" is bob@example.com (the name is dropped:
    the email's To shows addresses), while a string with CR/LF, two addresses or anything else ambiguous is
    refused rather than split, so nothing can smuggle a second recipient or a header in.
    """
    result: list[str] = []
    for raw in addresses:
        text = raw.strip()
        if named := _NAMED.fullmatch(text):
            text = named.group(1)
        if any(ch in text for ch in '\r\n,;<>"') or not text:
            raise RecipientError(f"'{raw.strip()[:80]}' is not a single email address")
        try:
            checked = validate_email(text, check_deliverability=False, globally_deliverable=not special_use)
        except EmailNotValidError as error:
            raise RecipientError(f"'{text[:80]}' is not a valid email address: {error}") from error
        if checked.ascii_email is None:
            # SMTPUTF8 is not spoken here (nor by many servers): refused now, not at the send time.
            raise RecipientError(
                f"'{text[:80]}' has non-ASCII letters before the @, which this mail account cannot send to"
            )
        # A domain with non-ASCII letters is sent (and shown) as its ASCII form (IDNA, xn--...): what the mail
        # server is given, and the same whichever way the user wrote it.
        address = checked.ascii_email
        if allowed_domains and not in_domains(address, allowed_domains):
            raise RecipientError(
                f"{address} is outside the domains this workspace may email ({', '.join(allowed_domains)})"
            )
        if address.lower() not in (a.lower() for a in result):
            result.append(address)
    if len(result) > max_recipients:
        raise RecipientError(f"{len(result)} recipients is more than the {max_recipients} an email may have")
    return result
