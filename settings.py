"""All configuration, read once from the environment (and an optional `.env`).

One object, passed explicitly to whatever needs it, so tests can build their own
without touching process-wide state.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workflows.mailer import parse_sender  # the one reading of sender addresses

REPO_ROOT = Path(__file__).resolve().parent
# The header the iWF server adds to every state call (its config's defaultheaders) and the worker checks.
WORKER_SECRET_HEADER = "X-Email-Agent-Worker-Secret"  # noqa: S105 - a header name


DEFAULT_STATE_DIR = REPO_ROOT / ".state"


class StackPaths(BaseSettings):
    """Only where the local stack keeps its state: what `make stop` needs, read on its own so that a stop
    still works while another setting is invalid (a bad MAIL_FROM must not keep servers running)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    state_dir: Path = DEFAULT_STATE_DIR


class Settings(BaseSettings):
    # An empty variable (`SMTP_HOST=` in a .env, a ConfigMap key left blank) means "not set", not "".
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    # --- public HTTP edge -------------------------------------------------
    host: str = Field("0.0.0.0", description="Address of the public listener (HTTP API and Slack's /slack/events).")
    port: int = Field(3000, description="Port of the public listener.")
    api_token: SecretStr | None = Field(
        None, description="Bearer token for /api/* (the admin credential); unset: generated into STATE_DIR/api-token."
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Larger request bodies are answered 413.")

    # --- Slack ---------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(None, description="xoxb- token for the Web API; no token: Slack off.")
    slack_signing_secret: SecretStr | None = Field(None, description="Verifies requests on /slack/events.")
    slack_app_token: SecretStr | None = Field(None, description="xapp- token: use Socket Mode, no public URL.")
    slack_api_url: str = Field("https://slack.com/api/", description="Web API base URL (tests: a fake).")
    slack_timezone_cache_seconds: int = 3600
    slack_ack_seconds: float = Field(
        2.0,
        gt=0,
        le=2.8,
        description="Slack's answer after at most this long, even while the workflow task that takes the request "
        "is still running a model call or SMTP (Slack's limit is 3 s); the hand-off goes on in the process.",
    )

    # --- iWF worker edge (private) ------------------------------------------
    worker_host: str = Field("127.0.0.1", description="Listener for iWF's worker callbacks; keep it private.")
    worker_port: int = 8802
    worker_secret: SecretStr | None = Field(
        None,
        description="Sent by the iWF server on every state call (its defaultheaders); the worker refuses state "
        "calls without it. Embedded engine: generated into STATE_DIR/worker-secret when unset; required with "
        "EMBEDDED_ENGINE=false.",
    )
    worker_url: str | None = Field(
        None,
        description="URL the iWF server uses to reach the worker; default http://WORKER_HOST:WORKER_PORT.",
    )

    # --- engine -------------------------------------------------------------
    iwf_server_url: str = Field("http://localhost:8801", description="The iWF server's API.")
    temporal_host_port: str = "localhost:7233"
    temporal_namespace: str = "default"
    embedded_engine: bool = Field(
        True, description="Start a local Temporal dev server and iWF server if they are not already running."
    )
    state_dir: Path = Field(DEFAULT_STATE_DIR, description="SQLite file, logs, outbox of the embedded stack.")
    engine_local_activities: bool = Field(
        True,
        description="Run state calls as Temporal local activities (iWF optimize_activity), set per email at its "
        "start: about a third of the engine's work per email. Off: every state call is a normal activity.",
    )
    iwf_server_bin: Path | None = Field(None, description="A prebuilt iwf-server binary to use instead of go install.")

    # --- production profile (`make prod-up`: devstack.production) -------------
    # Up to 10 each: the profile gives each family ten ports from PROD_PORT_BASE (devstack/plan.py).
    prod_iwf_replicas: int = Field(2, ge=1, le=10, description="iWF servers behind the load balancer.")
    prod_app_replicas: int = Field(
        2, ge=1, le=10, description="App replicas behind the load balancer (API and worker)."
    )
    prod_history_shards: int = Field(
        4, ge=1, description="Temporal history shards: its unit of write parallelism, fixed with the database."
    )
    prod_port_base: int = Field(
        17000,
        ge=1024,
        le=32768 - 50,  # its 50 ports stay below the kernel's ephemeral range (32768 up), as the README says
        description="First of the profile's private loopback ports (PostgreSQL, Temporal's services, replicas).",
    )
    postgres_password: SecretStr | None = Field(
        None, description="Temporal's PostgreSQL password; one is generated into STATE_DIR/postgres-password if unset."
    )
    postgres_bin_dir: Path | None = Field(None, description="PostgreSQL's programs; default the newest Debian one.")
    temporal_server_bin: Path | None = Field(None, description="A prebuilt Temporal server instead of go install.")
    temporal_sql_tool_bin: Path | None = Field(None, description="A prebuilt temporal-sql-tool instead of go install.")
    iwf_log_level: str = Field(
        "error", description="The iWF server's own log level; devstack/iwf-quiet filters the rest."
    )

    # --- agent --------------------------------------------------------------
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout_seconds: float = Field(60.0, gt=0)
    openai_max_retries: int = Field(2, ge=0)
    openai_temperature: float | None = Field(
        None, description="Sent only when set: reasoning models (gpt-5, o-series) refuse any but the default."
    )
    openai_structured_outputs: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Structured Outputs (a JSON schema): auto falls back to json_object for a server that "
        "refuses json_schema (remembered), off always uses json_object, on never falls back.",
    )
    conversation_max_turns: int = Field(
        40,
        ge=1,
        le=200,
        description="Turns sent to the model; older ones stay in the stored conversation (up to 200 turns).",
    )

    # --- mail ---------------------------------------------------------------
    google_email_address: str | None = None
    google_email_app_password: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: Literal["ssl", "starttls", "none"] = "ssl"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(30.0, gt=0)
    imap_host: str | None = Field(
        None,
        description="The account's IMAP server, asked (Sent folder, by Message-ID) whether an email went out "
        "when the SMTP answer was lost; imap.gmail.com for the Google account unless set.",
    )
    imap_port: int | None = Field(None, description="Default 993 for ssl, 143 otherwise.")
    imap_security: Literal["ssl", "starttls", "none"] = "ssl"
    imap_username: str | None = Field(None, description="Default the SMTP (or Google) login.")
    imap_password: SecretStr | None = Field(None, description="Default the SMTP (or Google app) password.")
    imap_sent_folder: str | None = Field(
        None, description="The Sent folder's IMAP name; default the one the server marks \\Sent, else 'Sent'."
    )
    imap_settle_seconds: float = Field(
        5.0, ge=0, description="Not found at once: asked again this much later before counting it as not sent."
    )
    sent_folder_check: bool = Field(
        True, description="Off: an email whose SMTP answer was lost stays 'delivery unknown' without asking IMAP."
    )
    mail_from: str | None = Field(None, description="From address; defaults to the SMTP or Google account.")
    outbox_dir: Path | None = Field(
        None,
        validate_default=True,
        description="Where .eml files go when no SMTP is configured (default STATE_DIR/outbox with the embedded "
        "engine; with EMBEDDED_ENGINE=false only if set, so a deployment missing its mail server stops at start).",
    )
    send_max_attempts: int = Field(5, ge=1, description="Transient SMTP failures retried this many times in all.")
    send_backoff_seconds: int = Field(2, ge=1)
    send_backoff_max_seconds: int = Field(300, ge=1)
    send_limit_per_user_per_day: int = Field(
        100, ge=0, description="Emails one owner may send per UTC day (the same for all their emails); 0: no limit."
    )
    from_name_format: str = Field(
        "{name} (via email-agent)",
        description="From's display name for an email someone asked for; {name} is their name. The address "
        "is always the account's own.",
    )
    undo_seconds: int = Field(
        10,
        ge=0,
        le=300,
        description="An email due sooner than this after it is scheduled (or sent now) waits "
        "this long, and the card offers Undo meanwhile; 0: no undo window.",
    )
    draft_ttl_days: float = Field(
        30, ge=0, description="A draft idle this long closes (scheduled emails never do); 0: never."
    )
    card_retry_seconds: int = Field(
        600,
        ge=1,
        le=86_400,
        description="How long a card update Slack keeps refusing (429, 5xx, out of reach) is retried before the "
        "email goes on without it (the email itself never waits for its card).",
    )
    max_recipients_per_email: int = Field(10, ge=1, le=100)
    max_body_chars: int = Field(20_000, ge=100, description="Longer bodies are refused with a message.")
    confirm_new_recipients: bool = Field(
        True, description="A recipient the model proposes that the owner never wrote waits for their confirmation."
    )
    confirm_external_recipients: bool = Field(
        False,
        description="Every recipient outside ALLOWED_RECIPIENT_DOMAINS waits for the owner's confirmation "
        "(instead of being refused).",
    )
    allowed_recipient_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="If set, recipients outside these domains are refused in code."
    )

    @field_validator("mail_from")
    @classmethod
    def _one_sender(cls, value: str | None) -> str | None:
        """Checked here so a bad MAIL_FROM stops the app at start, not every send."""
        if value is None or not value.strip():
            return None
        try:
            return str(parse_sender(value.strip()))
        except ValueError as error:
            raise ValueError(f"{error}; expected agent@example.com or Name <agent@example.com>") from None

    @field_validator("from_name_format")
    @classmethod
    def _names_the_owner(cls, value: str) -> str:
        """Checked here so a bad format stops the app at start, not every send."""
        sentinel = "\x00owner\x00"  # in no format string by chance
        try:
            shown = value.format(name=sentinel)
        except (LookupError, ValueError, AttributeError, TypeError) as error:
            raise ValueError(
                f"{error!r} in it; the only field is {{name}}, e.g. '{{name}} (via email-agent)'"
            ) from None
        if sentinel not in shown:
            raise ValueError("must contain {name}, e.g. '{name} (via email-agent)'")
        return value

    @field_validator("api_token")
    @classmethod
    def _strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # The admin credential, and the key that signs per-user tokens: a "change-me" left in a Secret must
        # stop the app, not open it to anyone who guesses it. ASCII only: it travels in an HTTP header.
        if value is not None and not re.fullmatch(r"[!-~]{16,}", value.get_secret_value()):
            raise ValueError(
                "must be at least 16 characters, printable ASCII without spaces (it signs the per-user tokens too)"
            )
        return value

    @field_validator("worker_secret")
    @classmethod
    def _header_safe(cls, value: SecretStr | None) -> SecretStr | None:
        # It travels in an HTTP header and in the iWF server's JSON config: keep it to URL-safe characters.
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{16,}", value.get_secret_value()):
            raise ValueError("must be at least 16 characters of A-Z, a-z, 0-9, '.', '_', '~', '-'")
        return value

    @field_validator("embedded_engine")
    @classmethod
    def _external_engine_needs_a_worker_secret(cls, value: bool, info: ValidationInfo) -> bool:
        # Safe by default: whoever reaches the worker's listener could otherwise call a state with forged data
        # attributes and make it send whatever they wrote. The embedded engine makes its own secret.
        if not value and "worker_secret" in info.data and info.data["worker_secret"] is None:
            raise ValueError(
                f"with EMBEDDED_ENGINE=false, WORKER_SECRET is required (16+ URL-safe characters): set the same "
                f"value here and as interpreter.interpreterActivityConfig.defaultheaders.{WORKER_SECRET_HEADER} "
                "in the iWF server's config, so that the worker can tell the iWF server's state calls from forged ones"
            )
        if not value and "api_token" in info.data and info.data["api_token"] is None:
            # Generated per STATE_DIR otherwise: each replica would accept a token of its own, and every API
            # call (user tokens too, which it signs) would work on one replica in N.
            raise ValueError(
                "with EMBEDDED_ENGINE=false, API_TOKEN is required (16+ characters): the same on every replica"
            )
        return value

    @field_validator("outbox_dir")
    @classmethod
    def _a_deployment_has_a_mail_server(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # In a container the default outbox is a folder nobody reads, lost with the pod: every email would end
        # "sent" and reach no one. Outside the embedded (local) stack, mail to files must be asked for.
        data = info.data
        smtp = data.get("smtp_host") or (data.get("google_email_address") and data.get("google_email_app_password"))
        if value is None and not smtp and data.get("embedded_engine") is False:
            raise ValueError(
                "with EMBEDDED_ENGINE=false a mail server is required: set SMTP_HOST (with SMTP_USERNAME and "
                "SMTP_PASSWORD), or GOOGLE_EMAIL_ADDRESS and GOOGLE_EMAIL_APP_PASSWORD; or set OUTBOX_DIR to "
                "write emails to files on purpose"
            )
        return value

    @field_validator("allowed_recipient_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        if isinstance(value, str):
            return [d.strip().lower() for d in value.split(",") if d.strip()]
        return value

    # --- derived ------------------------------------------------------------
    @property
    def effective_worker_url(self) -> str:
        host = "127.0.0.1" if self.worker_host in ("0.0.0.0", "") else self.worker_host
        return self.worker_url or f"http://{host}:{self.worker_port}"

    @property
    def effective_outbox_dir(self) -> Path:
        return self.outbox_dir or self.state_dir / "outbox"

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token and (self.slack_signing_secret or self.slack_app_token))

    @property
    def smtp_configured(self) -> bool:
        return bool(self.smtp_host or (self.google_email_address and self.google_email_app_password))
