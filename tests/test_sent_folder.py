"""Asking the account's Sent folder whether a message went out, against a real IMAP server (pymap on
loopback), and which folder the settings choose."""

from __future__ import annotations

import imaplib
import logging
import socket
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme

from settings import Settings
from tests.harness import free_port
from tests.imap_server import ImapServer
from workflows.mailer import ImapSentFolder, SmtpMailer, mailer_from_settings, sent_folder_from_settings
from workflows.mailer.sent_folder import sent_folder_from_list


def _message(message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "assistant@example.org"
    msg["To"] = "bob@example.com"
    msg["Subject"] = "Thanks"
    msg["Message-ID"] = message_id
    msg.set_content("Thank you, Bob.")
    return bytes(msg)


def _folder(server: ImapServer, **kwargs: Any) -> ImapSentFolder:
    options: dict[str, Any] = {
        "username": server.username,
        "password": server.password,
        "folder": server.folder,
        "timeout": 5.0,
        "settle_seconds": 0.0,
    } | kwargs
    return ImapSentFolder("127.0.0.1", server.port, "none", **options)


def test_a_filed_message_is_found_by_its_message_id_and_another_is_not(imap_server: ImapServer) -> None:
    imap_server.file(_message("<found.1@example.org>"))
    folder = _folder(imap_server)
    assert folder.contains("<found.1@example.org>") is True
    assert folder.contains("<found.2@example.org>") is False


def test_a_copy_filed_while_settling_is_found_on_the_second_look(imap_server: ImapServer) -> None:
    """The provider may file the copy a moment after accepting the message: one more look, later."""
    slept: list[float] = []

    def files_meanwhile(seconds: float) -> None:
        slept.append(seconds)
        imap_server.file(_message("<late.1@example.org>"))

    folder = _folder(imap_server, settle_seconds=3.0, sleep=files_meanwhile)
    assert folder.contains("<late.1@example.org>") is True
    assert slept == [3.0]
    assert _folder(imap_server, settle_seconds=3.0, sleep=slept.append).contains("<late.1@example.org>") is True
    assert slept == [3.0], "found at once: no settle"


def test_the_sent_folder_is_found_by_its_name_when_none_is_configured(imap_server: ImapServer) -> None:
    """pymap marks no special-use folders; a server that does (Gmail) is covered by the LIST parser test."""
    plain = ImapServer(username=imap_server.username, password=imap_server.password, folder="Sent")
    plain.port = imap_server.port
    with plain._session() as imap:
        imap.create('"Sent"')
    plain.file(_message("<plain.1@example.org>"))
    imap_server.file(_message("<gmail.1@example.org>"))
    assert _folder(plain, folder=None).contains("<plain.1@example.org>") is True
    assert _folder(plain, folder=None).contains("<gmail.1@example.org>") is False, "not the Gmail folder"


def test_gmail_s_list_answer_names_its_sent_folder() -> None:
    # As Gmail answers LIST "" "*" (imaplib's lines, without the "* LIST " prefix).
    lines: list[bytes | tuple[bytes, bytes] | None] = [
        b'(\\HasNoChildren) "/" "INBOX"',
        b'(\\HasChildren \\Noselect) "/" "[Gmail]"',
        b'(\\All \\HasNoChildren) "/" "[Gmail]/All Mail"',
        b'(\\HasNoChildren \\Sent) "/" "[Gmail]/Sent Mail"',
        b'(\\HasNoChildren) "/" "Sent"',
    ]
    assert sent_folder_from_list(lines) == b"[Gmail]/Sent Mail", "the \\Sent mark wins over the name"
    assert sent_folder_from_list(lines[:3] + lines[4:]) == b"Sent"
    assert sent_folder_from_list([b'(\\HasNoChildren) "/" INBOX']) is None
    literal: list[bytes | tuple[bytes, bytes] | None] = [(b'(\\Sent) "/" {16}', b'Sent "quoted" \\1')]
    assert sent_folder_from_list(literal) == b'Sent "quoted" \\1'


def test_an_unreachable_server_or_a_refused_login_cannot_tell(
    imap_server: ImapServer, caplog: pytest.LogCaptureFixture
) -> None:
    imap_server.file(_message("<login.1@example.org>"))
    nobody = ImapSentFolder("127.0.0.1", free_port(), "none", "u", "p", "Sent", timeout=2, settle_seconds=0)
    assert nobody.contains("<login.1@example.org>") is None
    with caplog.at_level(logging.WARNING):
        wrong = _folder(imap_server, password="not-the-password-31d")
        assert wrong.contains("<login.1@example.org>") is None
    assert "not-the-password-31d" not in caplog.text and "not-the-password-31d" not in repr(wrong)
    missing = _folder(imap_server, folder="No Such Folder")
    assert missing.contains("<login.1@example.org>") is None


def test_a_search_that_misses_is_checked_against_the_newest_messages(
    imap_server: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gmail's search index can lag behind the folder, and some servers do not search headers: "not there"
    is only said after reading the newest messages' Message-IDs."""
    imap_server.file(_message("<lagging.1@example.org>"))
    monkeypatch.setattr(imaplib.IMAP4, "search", lambda self, *args: ("OK", [None]))  # no SEARCH answer
    folder = _folder(imap_server)
    assert folder.contains("<lagging.1@example.org>") is True
    assert folder.contains("<lagging.2@example.org>") is False


def test_trouble_of_any_kind_answers_cannot_tell(imap_server: ImapServer) -> None:
    """`contains` never raises: a host name idna refuses, an impossible time-out, a server that hangs up."""
    bad_host = ImapSentFolder("bad..host", 993, "ssl", "u", "p", "Sent", timeout=2, settle_seconds=0)
    assert bad_host.contains("<x.1@example.org>") is None
    assert _folder(imap_server, timeout=0).contains("<x.1@example.org>") is None
    with socket.socket() as listener:  # accepts, then closes without a greeting
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        hangs_up = threading.Thread(target=lambda: listener.accept()[0].close())
        hangs_up.start()
        rude = ImapSentFolder("127.0.0.1", port, "none", "u", "p", "Sent", timeout=2, settle_seconds=0)
        assert rude.contains("<x.1@example.org>") is None
        hangs_up.join(5)


def test_only_a_message_id_of_ours_is_searched(imap_server: ImapServer) -> None:
    """A Message-ID that would close the quoted string and search every message ("found": sent) is not ours,
    so it is never searched for: "cannot tell", not "delivered"."""
    imap_server.file(_message("<already.r1@example.org>"))  # a message the injection would match
    assert _folder(imap_server).contains('" ALL HEADER Message-ID "') is None


# --- which folder the settings choose -----------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_mail_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        if name.startswith(("imap_", "smtp_", "google_", "sent_folder")):
            monkeypatch.delenv(name.upper(), raising=False)


def _settings(**kwargs: Any) -> Settings:
    return Settings(_env_file=None, **kwargs)  # type: ignore[call-arg]


def test_the_google_account_asks_gmail_s_imap_with_the_same_app_password() -> None:
    settings = _settings(google_email_address="me@gmail.com", google_email_app_password="abcd efgh ijkl mnop")
    mailer = mailer_from_settings(settings)
    assert isinstance(mailer, SmtpMailer) and mailer.sent_folder is not None
    folder = mailer.sent_folder
    where = (folder.host, folder.port, folder.security, folder.username)
    assert where == ("imap.gmail.com", 993, "ssl", "me@gmail.com")
    assert folder.folder is None, "found by its \\Sent mark: its name depends on the account's language"
    assert "abcd" not in repr(folder)
    off = _settings(google_email_address="me@gmail.com", google_email_app_password="x", sent_folder_check=False)
    assert sent_folder_from_settings(off) is None


def test_another_smtp_server_has_no_sent_folder_unless_imap_host_is_set() -> None:
    plain = _settings(smtp_host="mail.example.org", smtp_username="bot@example.org", smtp_password="pw")
    assert sent_folder_from_settings(plain) is None
    imap = _settings(
        smtp_host="mail.example.org",
        smtp_username="bot@example.org",
        smtp_password="pw",
        imap_host="imap.example.org",
        imap_security="starttls",
        imap_sent_folder="Sent Items",
    )
    folder = sent_folder_from_settings(imap)
    assert folder is not None
    assert (folder.host, folder.port, folder.username, folder.folder) == (
        "imap.example.org",
        143,
        "bot@example.org",
        "Sent Items",
    )
    no_login = _settings(smtp_host="mail.example.org", imap_host="imap.example.org")
    assert sent_folder_from_settings(no_login) is None, "nothing to log in with"


def test_folder_names_reach_the_server_in_modified_utf7() -> None:
    from workflows.mailer.sent_folder import mailbox_name

    assert mailbox_name("Sent") == b"Sent"
    assert mailbox_name("[Gmail]/Sent Mail") == b"[Gmail]/Sent Mail"
    assert mailbox_name("~peter/mail/台北/日本語") == b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"  # RFC 3501's example
    assert mailbox_name("Отправленные") == b"&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"
    # The name as the server lists it (README: IMAP_SENT_FOLDER) is taken as given, not encoded twice.
    assert mailbox_name("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-") == b"&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"
    assert mailbox_name("Q&-A") == b"Q&-A"


def test_a_sent_folder_with_a_non_ascii_name_is_searched(tmp_path: Path) -> None:
    """IMAP_SENT_FOLDER=Отправленные (a Russian-language account): found on a real IMAP server, which lists
    and opens it by its modified UTF-7 name."""
    server = ImapServer(folder="&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-")
    server.start(tmp_path / "pymap.log")
    try:
        server.file(_message("<ru.1@example.org>"))
        for name in ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"):  # as shown, or as listed
            folder = _folder(server, folder=name)
            assert folder.contains("<ru.1@example.org>", settle=False) is True
            assert folder.contains("<ru.2@example.org>", settle=False) is False
    finally:
        server.stop()


# --- over TLS, as a provider is asked (STARTTLS here; Gmail's 993 is the same verification) ----------------


def test_the_sent_folder_is_asked_over_verified_tls_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The certificate is verified as Gmail's is (ssl.create_default_context, SSL_CERT_FILE naming the CA the
    test trusts): a server whose certificate cannot be verified is "cannot tell", never asked in the clear."""
    ca, stranger = trustme.CA(), trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(chain))
    issued.private_key_pem.write_to_path(str(key))
    server = ImapServer(folder="Sent", tls=(chain, key))
    server.start(tmp_path / "pymap.log")
    try:
        server.file(_message("<tls.1@example.org>"))
        trusted, untrusted = tmp_path / "trusted.pem", tmp_path / "untrusted.pem"
        ca.cert_pem.write_to_path(str(trusted))
        stranger.cert_pem.write_to_path(str(untrusted))
        monkeypatch.setenv("SSL_CERT_FILE", str(trusted))
        folder = ImapSentFolder(
            "127.0.0.1", server.port, "starttls", server.username, server.password, "Sent", timeout=5, settle_seconds=0
        )
        assert folder.contains("<tls.1@example.org>") is True
        assert folder.contains("<tls.2@example.org>") is False
        monkeypatch.setenv("SSL_CERT_FILE", str(untrusted))
        assert folder.contains("<tls.1@example.org>") is None, "an unverifiable server is not believed"
    finally:
        server.stop()
