"""The record's encoding, without an engine: a dict stands in for iWF's Persistence."""

from __future__ import annotations

from typing import Any

from iwf.object_encoder import ObjectEncoder

from workflows.model import EmailDraft, EmailStatus, Turn
from workflows.record import MAX_STORED_CONVERSATION_BYTES, MAX_STORED_TURNS, Record, build_view, message_id


class Attributes(dict[str, Any]):
    def get_data_attribute(self, key: str) -> Any:
        return self.get(key)

    def set_data_attribute(self, key: str, value: Any) -> None:
        self[key] = value


def test_conversation_is_bounded_by_turns_and_size_newest_kept() -> None:
    record = Record(Attributes())
    for i in range(MAX_STORED_TURNS + 10):
        record.add_turn(Turn(role="user", text=f"turn {i}"))
    turns = record.conversation
    assert len(turns) == MAX_STORED_TURNS and turns[-1].text == f"turn {MAX_STORED_TURNS + 9}"
    for text in ("x" * 8000, "日本語のメール" * 1000, "🎉" * 8000):  # ASCII, CJK, emoji (a surrogate pair each)
        for _ in range(80):
            record.add_turn(Turn(role="user", text=text))
        carried = ObjectEncoder.default.encode(record.get_str("conversation")).data
        assert (
            carried is not None and MAX_STORED_CONVERSATION_BYTES * 0.8 < len(carried) <= MAX_STORED_CONVERSATION_BYTES
        )
        assert record.conversation[-1].text == text


def test_message_id_is_stable_per_revision_and_changes_with_it() -> None:
    assert message_id("wf-1", 2, "example.org") == message_id("wf-1", 2, "example.org")
    assert message_id("wf-1", 2, "example.org") != message_id("wf-1", 3, "example.org")
    assert message_id("wf-1", 2, "example.org").endswith("@example.org>")


def test_view_shows_processing_while_requests_are_pending() -> None:
    attributes = Attributes(status="waiting", pending=1, timezone="Europe/Paris")
    record = Record(attributes)
    record.email = EmailDraft(to=["a@example.com"], subject="S", body="B")
    view = build_view(record)
    assert view.status == EmailStatus.PROCESSING and view.pending_requests == 1
    attributes["pending"] = 0
    assert build_view(record).status == EmailStatus.WAITING


def test_the_message_id_is_this_runs_alone() -> None:
    """The same email id in another run (reused after retention, or another deployment on the same mail
    account) never names the same message."""
    assert message_id("wf-1", 2, "example.org", "run-a") != message_id("wf-1", 2, "example.org", "run-b")
    assert message_id("wf-1", 2, "example.org", "run-a") == message_id("wf-1", 2, "example.org", "run-a")
