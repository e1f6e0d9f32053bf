"""How the workflow shows the email to its user: an outbound port, implemented by an edge (Slack).

The workflow calls it from its own state, so a failed update (rate limit, outage) is retried by the
iWF server with back-off, not lost with a process.
"""

from __future__ import annotations

from typing import Protocol

from workflows.model import CardRef, EmailView


class CardNotifier(Protocol):
    def post_root(self, card: CardRef, email_id: str, retry: bool = False) -> tuple[str, str]:
        """Opens the thread (posts `card.root_text` in `card.channel`); returns its (channel, ts). `retry`: an
        earlier attempt may have posted it already: use that one if it is there."""
        ...

    def post(self, card: CardRef, email_id: str, view: EmailView, retry: bool = False) -> str:
        """Posts the card in the thread and returns its message id (ts). Raises to be retried. `retry`: an
        earlier attempt may have posted it already (its answer lost): use that card if it is there."""
        ...

    def update(self, card: CardRef, email_id: str, view: EmailView) -> None:
        """Replaces the card's content with `view`. Raises to be retried."""
        ...

    def settled(self, card: CardRef, email_id: str, view: EmailView) -> None:
        """The card shows `view` now: anything that follows it (an assistant thread's status and title, the
        owner's App Home) is brought up to date. Raises to be retried."""
        ...
