"""The mailer against a real SMTP server (aiosmtpd on 127.0.0.1), the outbox, and the settings switch."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, Session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settings import Settings
from workflows.mailer import (
    AmbiguousSendError,
    InvalidEmailError,
    OutboxMailer,
    OutgoingEmail,
    PartlyDeliveredError,
    PermanentSendError,
    SendError,
    SmtpMailer,
    TransientSendError,
    build_message,
    mailer_from_settings,
    on_behalf_of,
)

SENDER = "Email Agent <agent@example.org>"


# --- a real SMTP server -------------------------------------------------------------------------


class RecordingHandler:
    """Accepts everything and keeps the envelopes; `data_reply`/`rcpt_replies` simulate refusals."""

    def __init__(self, data_reply: str = "250 OK", rcpt_replies: dict[str, str] | None = None) -> None:
        self.envelopes: list[Envelope] = []
        self.data_reply = data_reply
        self.rcpt_replies = rcpt_replies or {}

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.data_reply.startswith("250"):
            self.envelopes.append(envelope)
        return self.data_reply


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


StartServer = Callable[..., int]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Starts aiosmtpd servers on free ports and stops them all at the end of the test."""
    controllers: list[Controller] = []

    def start(handler: RecordingHandler, **kwargs: Any) -> int:
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


def make_email(**overrides: Any) -> OutgoingEmail:
    fields: dict[str, Any] = {
        "message_id": "<wf-42.r1@email-agent>",
        "to": ["ana@example.com"],
        "subject": "Hello",
        "body": "Hi there.\n",
    }
    fields.update(overrides)
    return OutgoingEmail(**fields)


def plain_mailer(port: int, **kwargs: Any) -> SmtpMailer:
    return SmtpMailer("127.0.0.1", port, "none", from_address=SENDER, timeout=5, **kwargs)


def parse(raw: bytes | str | None) -> EmailMessage:
    assert isinstance(raw, bytes)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body_of(msg: EmailMessage) -> str:
    content = msg.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")  # the wire is CRLF; readers turn it back into \n


# --- 1. UTF-8 arrives intact --------------------------------------------------------------------


def test_utf8_subject_and_body_arrive_intact(start_server: StartServer) -> None:
    handler = RecordingHandler()
    port = start_server(handler)
    subject = "¿Qué tal, señora Muñoz? 日本語の件名です 🎉 — a long subject that will need folding on the wire"
    body = (
        "Hola Ana,\n\n¿Nos vemos el miércoles a las 10:00?\n"
        "来週の会議について確認させてください。\n"
        ".\n"  # a lone dot line must survive SMTP dot-stuffing
        "From here on, nothing should be mangled. 😀\n"
    )
    to = ["ana@example.com", "kenji@example.jp"]
    sent = make_email(subject=subject, body=body, to=to)

    where = plain_mailer(port).send(sent)

    assert where == f"127.0.0.1:{port}"
    [envelope] = handler.envelopes
    assert envelope.rcpt_tos == to
    assert envelope.mail_from == "agent@example.org"
    assert isinstance(envelope.content, bytes)
    assert envelope.content.isascii(), "the message should be 7-bit clean on the wire"
    received = parse(envelope.content)
    assert received["Subject"] == subject
    assert body_of(received) == body
    assert received["From"].addresses[0].addr_spec == "agent@example.org"
    assert received["From"].addresses[0].display_name == "Email Agent"
    assert [a.addr_spec for a in received["To"].addresses] == to
    assert received["Message-ID"] == "<wf-42.r1@email-agent>"
    sent_at = parsedate_to_datetime(received["Date"])
    assert sent_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=1)


def test_display_names_are_encoded_and_only_the_address_goes_in_the_envelope(
    start_server: StartServer,
) -> None:
    handler = RecordingHandler()
    port = start_server(handler)
    plain_mailer(port).send(make_email(to=["José Pérez <jose@example.com>", '"Doe, Jane" <jane@example.com>']))
    [envelope] = handler.envelopes
    assert envelope.rcpt_tos == ["jose@example.com", "jane@example.com"]
    received = parse(envelope.content)
    assert [(a.display_name, a.addr_spec) for a in received["To"].addresses] == [
        ("José Pérez", "jose@example.com"),
        ("Doe, Jane", "jane@example.com"),
    ]


def test_a_long_owner_name_is_shortened_and_keeps_the_via_that_says_who_sent_it() -> None:
    name = "Ä" * 95
    shown = on_behalf_of("{name} (via email-agent)", name)
    assert len(shown) == 100 and shown.endswith("… (via email-agent)")
    msg = build_message(make_email(from_name=shown), "agent@example.org", datetime.now(UTC))
    assert msg["From"].addresses[0].display_name == shown
    assert on_behalf_of("{name} (via email-agent)", "Zoë") == "Zoë (via email-agent)"


def test_build_message_headers() -> None:
    when = datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=9)))
    msg = build_message(make_email(to=["a@x.com", "b@y.com"]), "agent@example.org", when)
    assert msg["From"] == "agent@example.org"
    assert msg["To"] == "a@x.com, b@y.com"
    assert msg["Message-ID"] == "<wf-42.r1@email-agent>"
    assert parsedate_to_datetime(msg["Date"]) == datetime(2024, 3, 1, 0, 30, tzinfo=UTC)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"


# --- 2. header injection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "Hi\r\nBcc: evil@x.com"},
        {"subject": "Hi\nBcc: evil@x.com"},
        {"subject": "Hi\u2028there"},
        {"subject": "Hi\x00"},
        {"to": ["a@x.com\nBcc: evil@x.com"]},
        {"to": ["a@x.com\r\nBcc: evil@x.com"]},
        {"to": ["a@x.com, b@y.com"]},
        {"to": ["a@x.com; b@y.com"]},
        {"to": ["a@x.com b@y.com"]},
        {"to": ["ok@x.com", "undisclosed: a@x.com, b@y.com;"]},
        {"to": ["Bob <a@x.com> junk"]},
        {"to": ["a@"]},
        {"to": ["@x.com"]},
        {"to": ["just-a-name"]},
        {"to": [""]},
        {"to": ["josé@example.com"]},
        {"to": []},
        {"message_id": "<abc@email-agent>\r\nBcc: evil@x.com"},
        {"message_id": "abc@email-agent"},
        {"body": "lone surrogate \ud800"},
    ],
)
def test_header_injection_and_bad_addresses_are_refused_before_connecting(overrides: dict[str, Any]) -> None:
    # Nothing listens on the port: a connection attempt would fail as TransientSendError, so InvalidEmailError
    # means the message was refused before any connection.
    outgoing = OutgoingEmail.model_construct(**{**make_email().model_dump(), **overrides})

    with pytest.raises(InvalidEmailError) as caught:
        plain_mailer(free_port()).send(outgoing)

    assert isinstance(caught.value, PermanentSendError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.reason and "\n" not in caught.value.reason


def test_invalid_from_address_is_refused() -> None:
    with pytest.raises(InvalidEmailError, match="sender"):
        build_message(make_email(), "agent@example.org\r\nBcc: evil@x.com")


def test_outgoing_email_needs_a_recipient() -> None:
    with pytest.raises(ValueError):
        make_email(to=[])


# --- 3. auth failure ----------------------------------------------------------------------------


def reject_everyone(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    return AuthResult(success=False, handled=False)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_failure_is_permanent_and_does_not_leak_the_password(start_server: StartServer) -> None:
    handler = RecordingHandler()
    password = "hunter2-very-secret"
    port = start_server(handler, auth_required=True, auth_require_tls=False, authenticator=reject_everyone)
    mailer = plain_mailer(port, username="agent@example.org", password=password)

    with pytest.raises(PermanentSendError) as caught:
        mailer.send(make_email())

    reason = caught.value.reason
    assert "535" in reason
    assert "login" in reason
    assert password not in reason
    assert password not in str(caught.value)
    assert password not in repr(caught.value.__cause__)
    assert password not in repr(mailer)
    assert handler.envelopes == []


def test_auth_hint_names_the_google_setting_for_gmail() -> None:
    mailer = mailer_from_settings(
        make_settings(google_email_address="me@gmail.com", google_email_app_password="abcd efgh")
    )
    assert isinstance(mailer, SmtpMailer)
    assert "GOOGLE_EMAIL_APP_PASSWORD" in mailer.credentials_hint


# --- 4. transient failures ----------------------------------------------------------------------


def test_nothing_listening_is_transient() -> None:
    with pytest.raises(TransientSendError) as caught:
        plain_mailer(free_port()).send(make_email())
    assert "refused" in caught.value.reason


def test_451_on_data_is_transient(start_server: StartServer) -> None:
    port = start_server(RecordingHandler(data_reply="451 try later"))
    with pytest.raises(TransientSendError) as caught:
        plain_mailer(port).send(make_email())
    assert "451" in caught.value.reason


def test_554_on_data_is_permanent(start_server: StartServer) -> None:
    port = start_server(RecordingHandler(data_reply="554 5.7.1 looks like spam"))
    with pytest.raises(PermanentSendError) as caught:
        plain_mailer(port).send(make_email())
    assert "554" in caught.value.reason


def test_refused_recipient_is_permanent_but_greylisting_is_transient(start_server: StartServer) -> None:
    port = start_server(
        RecordingHandler(rcpt_replies={"gone@x.com": "550 5.1.1 no such user", "grey@x.com": "450 4.2.0 later"})
    )
    with pytest.raises(PermanentSendError, match="550"):
        plain_mailer(port).send(make_email(to=["gone@x.com"]))
    with pytest.raises(TransientSendError, match="450"):
        plain_mailer(port).send(make_email(to=["grey@x.com"]))


def test_partly_refused_recipients_are_a_partial_delivery_not_a_failure(start_server: StartServer) -> None:
    handler = RecordingHandler(rcpt_replies={"gone@x.com": "550 5.1.1 no such user"})
    port = start_server(handler)
    with pytest.raises(PartlyDeliveredError) as caught:
        plain_mailer(port).send(make_email(to=["ana@example.com", "gone@x.com"]))
    assert caught.value.delivered_to == ["ana@example.com"]
    assert "gone@x.com" in caught.value.reason and "550" in caught.value.reason
    [envelope] = handler.envelopes  # the others got it, so a retry would send it twice
    assert envelope.rcpt_tos == ["ana@example.com"]


def test_server_that_says_nothing_times_out_as_transient() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        mailer = SmtpMailer("127.0.0.1", port, "none", from_address=SENDER, timeout=0.5)
        with pytest.raises(TransientSendError):
            mailer.send(make_email())


class SlowHandler(RecordingHandler):
    """Answers every step a little under the per-step time-out: each step is fine, the session is not."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_MAIL(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        await asyncio.sleep(self.delay)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def test_a_session_is_cut_at_two_time_outs_however_slowly_each_step_answers(start_server: StartServer) -> None:
    """smtplib's time-out is per step: a server answering each step in 0.8 s of a 1 s time-out would keep a
    session going for ever. Cut at 2 s, in DATA: the server may have taken it, so the outcome is unknown."""
    port = start_server(SlowHandler(delay=0.8))
    mailer = SmtpMailer("127.0.0.1", port, "none", from_address=SENDER, timeout=1.0)
    with pytest.raises(AmbiguousSendError, match="did not confirm it within 2s"):  # the watchdog's words
        mailer.send(make_email())
    before_data = start_server(SlowHandler(delay=0.7))
    with pytest.raises(TransientSendError, match="did not finish within 2s"):
        SmtpMailer("127.0.0.1", before_data, "none", from_address=SENDER, timeout=1.0).send(
            make_email(to=["a@x.com", "b@x.com", "c@x.com"])
        )


def test_a_greeting_dripped_past_two_time_outs_is_given_up_before_anything_is_sent() -> None:
    """Each line of a multi-line greeting comes within the 1 s time-out, the whole takes 3 s: given up before
    EHLO, with nothing sent, so the hand-over's bound (four time-outs) holds however slow the set-up."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    heard: list[bytes] = []

    def drip() -> None:
        connection, _ = listener.accept()
        with connection:
            try:
                for _ in range(6):
                    connection.sendall(b"220-still greeting\r\n")
                    time.sleep(0.5)
                connection.sendall(b"220 ready\r\n")
            except OSError:
                pass  # the client hung up mid-greeting; whatever it sent before is still read below
            connection.settimeout(2)
            try:
                while chunk := connection.recv(1024):
                    heard.append(chunk)
                heard.append(b"<closed>")
            except OSError as error:
                heard.append(f"<{type(error).__name__}>".encode())

    server = threading.Thread(target=drip, daemon=True)
    server.start()
    try:
        mailer = SmtpMailer("127.0.0.1", port, "none", from_address=SENDER, timeout=1.0)
        with pytest.raises(TransientSendError, match="to set up the session; nothing was sent"):
            mailer.send(make_email())
        server.join(5)
    finally:
        listener.close()
    assert not server.is_alive(), "the server's side ended"
    assert heard in ([b"<closed>"], [b"<ConnectionResetError>"]), f"nothing after the greeting: {heard!r}"


def test_send_errors_are_one_family() -> None:
    assert issubclass(PermanentSendError, SendError)
    assert issubclass(TransientSendError, SendError)
    assert issubclass(InvalidEmailError, ValueError)


# --- 5. outbox ----------------------------------------------------------------------------------


def test_outbox_is_idempotent_per_message_id(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox" / "nested"
    mailer = OutboxMailer(outbox, from_address=SENDER)
    sent = make_email(subject="Reunión 会議", body="Nos vemos.\n明日。\n")

    first = mailer.send(sent)
    second = mailer.send(sent)

    assert first == second
    files = list(outbox.iterdir())
    assert [f.name for f in files] == [Path(first).name]
    assert files[0].suffix == ".eml"
    received = parse(files[0].read_bytes())
    assert received["Subject"] == sent.subject
    assert body_of(received) == sent.body
    assert received["Message-ID"] == sent.message_id

    mailer.send(make_email(message_id="<wf-42.r2@email-agent>"))
    assert len(list(outbox.iterdir())) == 2


def test_outbox_file_names_stay_inside_the_directory(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path)
    path = Path(mailer.send(make_email(message_id="<../../etc/passwd@x>")))
    assert path.parent == tmp_path
    assert mailer.send(make_email(message_id="<../../etc/passwd@x>")) == str(path)
    assert mailer.path_for("<a_b@x>") != mailer.path_for("<a/b@x>")


# --- 6. choosing a mailer from settings ---------------------------------------------------------

MAIL_ENV = [
    "GOOGLE_EMAIL_ADDRESS",
    "GOOGLE_EMAIL_APP_PASSWORD",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_SECURITY",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "MAIL_FROM",
    "OUTBOX_DIR",
    "STATE_DIR",
]


@pytest.fixture(autouse=True)
def _no_mail_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MAIL_ENV:
        monkeypatch.delenv(name, raising=False)


def make_settings(**kwargs: Any) -> Settings:
    return Settings(_env_file=None, **kwargs)  # type: ignore[call-arg]


def test_settings_without_credentials_use_the_outbox(tmp_path: Path) -> None:
    mailer = mailer_from_settings(make_settings(state_dir=tmp_path))
    assert isinstance(mailer, OutboxMailer)
    assert mailer.directory == tmp_path / "outbox"
    assert mailer.from_address == "email-agent@localhost"


def test_settings_with_google_credentials_use_gmail_ssl() -> None:
    mailer = mailer_from_settings(
        make_settings(google_email_address="me@gmail.com", google_email_app_password="abcd efgh ijkl mnop")
    )
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.host, mailer.port, mailer.security) == ("smtp.gmail.com", 465, "ssl")
    assert mailer.username == "me@gmail.com"
    assert mailer.from_address == "me@gmail.com"
    assert "abcd" not in repr(mailer) and "abcd" not in mailer.description


def test_settings_with_smtp_host_win_over_google() -> None:
    mailer = mailer_from_settings(
        make_settings(
            smtp_host="mail.example.org",
            smtp_security="starttls",
            smtp_username="apikey",
            smtp_password="pw",
            mail_from="Agent <agent@example.org>",
            google_email_address="me@gmail.com",
            google_email_app_password="abcd",
        )
    )
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.host, mailer.port, mailer.security) == ("mail.example.org", 587, "starttls")
    assert mailer.username == "apikey"
    assert mailer.from_address == "Agent <agent@example.org>"


@pytest.mark.parametrize(("security", "port"), [("ssl", 465), ("starttls", 587), ("none", 25)])
def test_smtp_default_ports(security: str, port: int) -> None:
    mailer = mailer_from_settings(make_settings(smtp_host="mail.example.org", smtp_security=security))
    assert isinstance(mailer, SmtpMailer)
    assert mailer.port == port
    assert mailer.username is None


def test_explicit_smtp_port_and_username_as_from() -> None:
    mailer = mailer_from_settings(
        make_settings(smtp_host="mail.example.org", smtp_port=2525, smtp_username="bot@example.org")
    )
    assert isinstance(mailer, SmtpMailer)
    assert mailer.port == 2525
    assert mailer.from_address == "bot@example.org"


# --- 7. property: any one-line subject and any body read back unchanged ----------------------------

# Characters that end a line for str.splitlines() but are not in category Cc: the mailer refuses them
# in a subject (a subject is one line), so the property expects a refusal for those.
LINE_SEPARATORS = "\u2028\u2029"

subjects = st.one_of(
    st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=200),
    # Concentrate on what trips the email package: blanks at the ends, encoded-word look-alikes.
    st.lists(
        st.sampled_from([" ", "\t", "=?", "?=", "=", "?", "q", "B", "utf-8", "_", "a", "é", "日", "😀"]),
        max_size=40,
    ).map("".join),
)
bodies = st.text(st.characters(exclude_categories=["Cs"]), max_size=2000)


def normalise_body(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=subjects, body=bodies)
def test_any_subject_and_body_round_trip(subject: str, body: str) -> None:
    outgoing = make_email(subject=subject, body=body)
    if any(char in LINE_SEPARATORS for char in subject):
        with pytest.raises(InvalidEmailError):
            build_message(outgoing, SENDER)
        return

    raw = build_message(outgoing, SENDER).as_bytes()

    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    received = parse(raw)
    assert received["Subject"] == subject
    assert normalise_body(body_of(received)) == normalise_body(body)


# --- TLS, as Gmail is reached (ssl on 465) and most providers (starttls on 587) ----------------------------


@pytest.fixture
def trusted_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """A CA this test's client trusts (through SSL_CERT_FILE, which ssl.create_default_context reads), so
    the mailer verifies the server as it verifies Gmail: no verification switched off anywhere."""
    ca = trustme.CA()
    bundle = tmp_path / "trusted-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return ca


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def tls_mailer(port: int, security: str) -> SmtpMailer:
    return SmtpMailer("127.0.0.1", port, security, from_address=SENDER, timeout=5)  # type: ignore[arg-type]


def test_an_email_goes_out_over_implicit_tls(start_server: StartServer, trusted_ca: trustme.CA) -> None:
    handler = RecordingHandler()
    port = start_server(handler, ssl_context=server_tls(trusted_ca))
    tls_mailer(port, "ssl").send(make_email(subject="Über TLS"))
    [envelope] = handler.envelopes
    assert parse(envelope.original_content)["Subject"] == "Über TLS"


def test_an_email_goes_out_after_starttls_and_never_in_plain_text(
    start_server: StartServer, trusted_ca: trustme.CA
) -> None:
    handler = RecordingHandler()
    port = start_server(handler, tls_context=server_tls(trusted_ca), require_starttls=True)
    tls_mailer(port, "starttls").send(make_email())
    assert len(handler.envelopes) == 1
    plain = start_server(RecordingHandler())  # offers no STARTTLS: nothing is sent in the clear instead
    with pytest.raises(PermanentSendError):
        tls_mailer(plain, "starttls").send(make_email())


def test_a_server_whose_certificate_cannot_be_verified_gets_nothing(
    start_server: StartServer, trusted_ca: trustme.CA
) -> None:
    handler = RecordingHandler()
    port = start_server(handler, ssl_context=server_tls(trustme.CA()))  # signed by a CA nobody trusts
    with pytest.raises(PermanentSendError, match="verif"):
        tls_mailer(port, "ssl").send(make_email())
    assert handler.envelopes == []
