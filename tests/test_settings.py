"""Settings that cannot work stop the app at start with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from devstack.processes import PidFile
from settings import REPO_ROOT, Settings
from workflows.mailer import sender_address
from workflows.wiring import message_id_domain


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mail_from", "address", "name", "domain"),
    [
        ("agent@example.com", "agent@example.com", "", "example.com"),
        ("Assistant <agent@example.com>", "agent@example.com", "Assistant", "example.com"),
        ("Assistant Ünïcode <agent@example.com>", "agent@example.com", "Assistant Ünïcode", "example.com"),
        ('"Doe, Jane" <jane@mail.example.org>', "jane@mail.example.org", "Doe, Jane", "mail.example.org"),
    ],
)
def test_mail_from_is_read_once_with_its_display_name(mail_from: str, address: str, name: str, domain: str) -> None:
    configured = settings(mail_from=mail_from)
    sender = sender_address(configured)
    assert (sender.addr_spec, sender.display_name) == (address, name)
    assert message_id_domain(configured) == domain


def test_message_id_domain_ignores_logins_that_are_not_addresses() -> None:
    assert message_id_domain(settings(smtp_username="apikey")) == "email-agent.local"
    assert message_id_domain(settings(smtp_username="me@mail.example.net")) == "mail.example.net"
    assert message_id_domain(settings()) == "email-agent.local"


@pytest.mark.parametrize(
    "bad", ["nope", "a@example.com, b@example.com", "Name <a@example.com", "a@example.com\nBcc: x@y"]
)
def test_a_bad_mail_from_fails_at_settings_load(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(mail_from=bad)
    assert "mail_from" in str(caught.value) and "Name <agent@example.com>" in str(caught.value)


def test_the_app_refuses_to_start_with_a_bad_mail_from(tmp_path: Path) -> None:
    env = {**os.environ, "MAIL_FROM": "not an address", "EMBEDDED_ENGINE": "false", "STATE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "invalid setting MAIL_FROM" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_an_external_engine_without_a_worker_secret_is_refused_at_start(tmp_path: Path) -> None:
    """Safe by default: without the secret, anyone reaching the worker's listener could call a state with
    forged data attributes. The embedded engine makes its own; an external one must be given it."""
    env = {k: v for k, v in os.environ.items() if k != "WORKER_SECRET"}
    env |= {"EMBEDDED_ENGINE": "false", "STATE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "invalid setting EMBEDDED_ENGINE: with EMBEDDED_ENGINE=false, WORKER_SECRET is required" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    external = settings(
        embedded_engine=False,
        worker_secret="a-long-enough-secret-0123",
        api_token="an-admin-token-0123",
        smtp_host="mail.example",
    )
    assert external.embedded_engine is False


def test_make_stop_works_while_another_setting_is_invalid(tmp_path: Path) -> None:
    """A bad MAIL_FROM stops the app at start; it must not also keep `make stop` from stopping the servers."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        PidFile.of(tmp_path, "iwf").write(sleeper.pid)
        env = {**os.environ, "MAIL_FROM": "not an address", "STATE_DIR": str(tmp_path)}
        result = subprocess.run(
            [sys.executable, "-m", "devstack", "stop"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert f"stopped: iwf (pid {sleeper.pid})" in result.stdout and sleeper.wait(5) is not None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_production_profile_refuses_more_replicas_than_it_has_ports_for() -> None:
    assert settings(prod_app_replicas=10, prod_iwf_replicas=10).prod_app_replicas == 10
    for field in ("prod_app_replicas", "prod_iwf_replicas"):
        with pytest.raises(ValidationError, match="less than or equal to 10"):
            settings(**{field: 11})
    with pytest.raises(ValidationError, match="less than or equal to 32718"):
        settings(prod_port_base=32760)


def test_a_weak_api_token_stops_the_app() -> None:
    """The admin credential and the key of the per-user tokens: a Secret's "change-me" must not open the API."""
    with pytest.raises(ValidationError, match="at least 16 characters"):
        settings(api_token="change-me")
    token = settings(api_token="a-strong-enough-token").api_token
    assert token is not None and token.get_secret_value() == "a-strong-enough-token"


def test_an_api_token_the_api_could_never_accept_stops_the_app() -> None:
    """An HTTP header carries it: a non-ASCII token would start the app and then be refused on every call."""
    with pytest.raises(ValidationError, match="printable ASCII"):
        settings(api_token="Schlüssel-für-prod-2026")


@pytest.mark.parametrize(
    "bad", ["{user} via bot", "{0} (via email-agent)", "via email-agent", "{name", "{name.x}", "{name[0]}", "Alice bot"]
)
def test_a_from_name_format_that_cannot_name_the_owner_stops_the_app(bad: str) -> None:
    """Otherwise it would fail inside every send (a KeyError in the Deliver step), not at start."""
    with pytest.raises(ValidationError, match="from_name_format"):
        settings(from_name_format=bad)
    assert settings(from_name_format="{name} через бот").from_name_format == "{name} через бот"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("conversation_max_turns", 0),  # conversation[-0:] would send every stored turn
        ("conversation_max_turns", -5),
        ("smtp_timeout_seconds", 0),
        ("max_body_bytes", 0),
        ("send_max_attempts", 0),
        ("send_backoff_seconds", -1),
        ("send_limit_per_user_per_day", -1),
        ("openai_timeout_seconds", 0),
    ],
)
def test_numbers_that_would_break_every_email_stop_the_app(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        settings(**{field: value})


def test_a_deployment_without_a_mail_server_stops_at_start(tmp_path: Path) -> None:
    """EMBEDDED_ENGINE=false is a deployment: the default outbox would be a folder in a container nobody
    reads, every email "sent" to no one. A blank variable (a ConfigMap key left empty) counts as unset."""
    secrets = {"worker_secret": "a-long-enough-secret-0123", "api_token": "an-admin-token-0123"}
    with pytest.raises(ValidationError, match="a mail server is required"):
        settings(embedded_engine=False, **secrets)
    with pytest.raises(ValidationError, match="a mail server is required"):
        settings(embedded_engine=False, google_email_address="a@example.com", **secrets)
    assert settings(embedded_engine=False, outbox_dir=tmp_path, **secrets).outbox_dir == tmp_path
    assert settings(embedded_engine=True).outbox_dir is None  # the local stack: STATE_DIR/outbox

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "GOOGLE_", "OUTBOX_"))}
    env |= {"EMBEDDED_ENGINE": "false", "STATE_DIR": str(tmp_path), "SMTP_HOST": ""}
    env |= {"WORKER_SECRET": secrets["worker_secret"], "API_TOKEN": secrets["api_token"]}
    result = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "invalid setting OUTBOX_DIR: with EMBEDDED_ENGINE=false a mail server is required" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_a_deployment_without_a_shared_api_token_stops_at_start() -> None:
    """Left blank, each replica would make a token of its own: every call would work on one replica in N."""
    with pytest.raises(ValidationError, match="API_TOKEN is required"):
        settings(embedded_engine=False, worker_secret="a-long-enough-secret-0123", smtp_host="mail.example")
