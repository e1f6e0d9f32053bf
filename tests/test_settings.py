"""Settings that cannot work stop the app at start with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

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
    assert settings(embedded_engine=False, worker_secret="a-long-enough-secret-0123").embedded_engine is False
