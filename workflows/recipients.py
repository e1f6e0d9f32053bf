"""Recipient checks done in code, whatever the model said."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from email_validator import EmailNotValidError, validate_email

MAX_RECIPIENTS = 20


class RecipientError(ValueError):
    """`str(error)` says, in plain words, which address is refused and why."""


def normalize(addresses: Iterable[str], allowed_domains: Sequence[str] = ()) -> list[str]:
    """Validated, de-duplicated addresses in the order given.

    A string with CR/LF, a comma or a display name is refused rather than
    split: one entry is exactly one mailbox, so nothing can smuggle a second
    recipient or a header in.
    """
    result: list[str] = []
    for raw in addresses:
        text = raw.strip()
        if any(ch in text for ch in '\r\n,;<>"') or not text:
            raise RecipientError(f"'{raw.strip()[:80]}' is not a single email address")
        try:
            checked = validate_email(text, check_deliverability=False)
        except EmailNotValidError as error:
            raise RecipientError(f"'{text[:80]}' is not a valid email address: {error}") from error
        address = checked.normalized
        domain = checked.domain.lower()
        if allowed_domains and domain not in allowed_domains:
            raise RecipientError(
                f"{address} is outside the domains this workspace may email ({', '.join(allowed_domains)})"
            )
        if address.lower() not in (a.lower() for a in result):
            result.append(address)
    if len(result) > MAX_RECIPIENTS:
        raise RecipientError(f"at most {MAX_RECIPIENTS} recipients per email")
    return result
