"""Builds the workflows and their services from settings: where workflows/ meets configuration."""

from __future__ import annotations

from dataclasses import dataclass

import openai
from iwf.client import Client
from iwf.client_options import ClientOptions
from iwf.object_encoder import ObjectEncoder
from iwf.registry import Registry

from settings import Settings
from workflows.agent import Agent
from workflows.email_workflow import EmailAgentWorkflow
from workflows.ledger import DeliveryLedgerWorkflow, IwfDeliveryLedger, ledger_scope
from workflows.mailer import DEFAULT_FROM_ADDRESS, Mailer, mailer_from_settings, sender_address
from workflows.mailer.smtp import SMTP_DEADLINE_TIMEOUTS
from workflows.notifier import CardNotifier
from workflows.states import Services


def openai_client(settings: Settings) -> openai.OpenAI:
    # A missing key still builds a client: the first request then fails with a
    # clear message on the card instead of the app refusing to start.
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-set"
    return openai.OpenAI(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout_seconds,
        max_retries=settings.openai_max_retries,
    )


def message_id_domain(settings: Settings) -> str:
    """The sender's own domain (a display name in MAIL_FROM is no part of it); a neutral one when no
    sender is configured, so Message-IDs never claim someone else's domain."""
    sender = sender_address(settings)
    return "email-agent.local" if sender.addr_spec == DEFAULT_FROM_ADDRESS else sender.domain


def iwf_client(settings: Settings, registry: Registry) -> Client:
    options = ClientOptions(
        server_url=settings.iwf_server_url,
        worker_url=settings.effective_worker_url,
        object_encoder=ObjectEncoder.default,
    )
    return Client(registry, options)


@dataclass(frozen=True)
class Wiring:
    registry: Registry
    services: Services


def wire(settings: Settings, mailer: Mailer | None = None, notifier: CardNotifier | None = None) -> Wiring:
    """The registry (both workflow types) and the services their states use.

    The registry is filled after the services are built: the delivery ledger's client needs the registry,
    and the workflows need the services.
    """
    registry = Registry()
    mailer = mailer or mailer_from_settings(settings)
    agent_budget = settings.openai_timeout_seconds * (settings.openai_max_retries + 1) + 30
    # A claim this old: its hand-over is over (the claim's grace, the SMTP session's bound, a margin).
    handover = 10 + settings.smtp_timeout_seconds * SMTP_DEADLINE_TIMEOUTS + 10
    # Up to two Sent-folder searches with the settle between.
    check_budget = settings.smtp_timeout_seconds * 2 + settings.imap_settle_seconds if settings.sent_folder_check else 0
    # A typical worst case: the claim in an engine outage, a slow SMTP session, the Sent-folder check. Only a
    # dead worker waits for all of it: a step that runs longer is asked again, and the call joins the running
    # one in this process (the registry), so nothing is done twice.
    send_timeout = 30 + settings.smtp_timeout_seconds * 2 + check_budget
    services = Services(
        agent=Agent(
            openai_client(settings),
            settings.openai_model,
            settings.conversation_max_turns,
            temperature=settings.openai_temperature,
            structured=settings.openai_structured_outputs,
        ),
        mailer=mailer,
        ledger=IwfDeliveryLedger(iwf_client(settings, registry), local_activities=settings.engine_local_activities),
        ledger_scope=ledger_scope(settings.effective_worker_url),
        notifier=notifier,
        mail_domain=message_id_domain(settings),
        allowed_domains=tuple(settings.allowed_recipient_domains),
        confirm_external=settings.confirm_external_recipients,
        confirm_new_recipients=settings.confirm_new_recipients,
        max_recipients=settings.max_recipients_per_email,
        max_body_chars=settings.max_body_chars,
        from_name_format=settings.from_name_format,
        undo_seconds=settings.undo_seconds,
        draft_ttl_seconds=round(settings.draft_ttl_days * 86400),
        card_retry_seconds=settings.card_retry_seconds,
        daily_send_limit=settings.send_limit_per_user_per_day,
        send_max_attempts=settings.send_max_attempts,
        send_backoff_seconds=settings.send_backoff_seconds,
        send_backoff_max_seconds=settings.send_backoff_max_seconds,
        agent_timeout_seconds=int(agent_budget),
        send_timeout_seconds=int(send_timeout),
        handover_seconds=int(handover),
        # Within the step's own time-out, leaving it time for what follows (the Sent folder, a send).
        settle_wait_seconds=min(handover, send_timeout / 3),
    )
    registry.add_workflow(EmailAgentWorkflow(services))
    registry.add_workflow(DeliveryLedgerWorkflow())
    return Wiring(registry, services)
