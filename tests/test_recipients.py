"""Recipients as the mail server will be given them: an address the app accepts when the email is written
is one it can send to at its time (no later refusal of what was scheduled)."""

from __future__ import annotations

import pytest

from workflows.mailer.message import OutgoingEmail, build_message
from workflows.recipients import RecipientError, addresses_in, normalize


def test_a_domain_with_non_ascii_letters_is_kept_in_the_form_the_mail_server_takes() -> None:
    [address] = normalize(["a@bücher.de"])
    assert address == "a@xn--bcher-kva.de"
    assert normalize(["a@xn--bcher-kva.de"]) == [address], "either spelling: the same recipient"
    email = OutgoingEmail(message_id="<wf-1.r1@email-agent>", to=[address], subject="Hallo", body="Hi\n")
    message = build_message(email, "assistant@example.org")
    assert message["To"] == address


def test_an_address_with_non_ascii_letters_before_the_at_is_refused_when_written() -> None:
    with pytest.raises(RecipientError, match="non-ASCII letters before the @"):
        normalize(["jösé@example.com"])


def test_the_user_vouches_for_an_address_in_either_spelling() -> None:
    written = addresses_in(["please write to a@bücher.de about it"])
    assert normalize(["a@xn--bcher-kva.de"])[0].lower() in written


def test_the_allowed_domains_match_either_spelling() -> None:
    assert normalize(["a@bücher.de"], allowed_domains=["bücher.de"]) == ["a@xn--bcher-kva.de"]
    assert normalize(["a@bücher.de"], allowed_domains=["xn--bcher-kva.de"]) == ["a@xn--bcher-kva.de"]


def test_an_address_is_read_up_to_where_the_words_after_it_begin() -> None:
    """Japanese and Chinese write no space after an address: the words after it are not its domain."""
    assert addresses_in(["bob@example.comに送って"]) == {"bob@example.com"}
    assert addresses_in(["请发给bob@example.com的同事"]) == {"bob@example.com"}
    assert addresses_in(["x@例え.テスト です"]) == {normalize(["x@例え.テスト"])[0]}


def test_confirming_external_recipients_knows_an_allowed_domain_in_either_spelling() -> None:
    from workflows.decisions import Policy

    policy = Policy(allowed_domains=("bücher.de",), confirm_external=True)
    assert not policy.needs_confirmation("a@xn--bcher-kva.de")
    assert policy.needs_confirmation("a@example.com")


def test_an_address_written_with_its_name_is_that_one_address() -> None:
    """Models and mail clients write "Bob Smith <bob@example.com>": one mailbox, not "not an address"."""
    assert normalize(["Bob Smith <bob@example.com>"]) == ["bob@example.com"]
    assert normalize(['"Smith, Bob" <bob@example.com>', "<ann@example.com>"]) == ["bob@example.com", "ann@example.com"]
    for smuggled in (
        "Bob <bob@example.com>, eve@evil.example",
        "Bob <bob@example.com>\r\nBcc: eve@evil.example",
        "bob@example.com <eve@evil.example>",  # written as bob's, sent to eve's: two mailboxes
    ):
        with pytest.raises(RecipientError):
            normalize([smuggled])


def test_no_address_is_read_out_of_the_end_of_another_word() -> None:
    found = addresses_in(["please email josé.garcia@example.com and jürgen@firma.de"])
    assert "garcia@example.com" not in found and "rgen@firma.de" not in found


def test_addresses_written_after_a_label_or_beside_another_are_the_users() -> None:
    found = addresses_in(["send to to=bob@example.com / cc:alice@example.com/carol@example.com"])
    assert {"bob@example.com", "alice@example.com", "carol@example.com"} <= found
