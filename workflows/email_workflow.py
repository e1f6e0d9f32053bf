"""The email workflow: one execution per email, from first request to sent, failed or canceled.

Its states are in workflows.states, its record in workflows.record; here are the schemas and the RPCs
(send_request, cancel, save_draft, describe) that the edges call.
"""

# No `from __future__ import annotations` here: the iWF SDK inspects RPC parameter annotations at runtime.

import json

from iwf.communication import Communication
from iwf.communication_schema import CommunicationMethod, CommunicationSchema
from iwf.iwf_api.models import SearchAttributeValueType
from iwf.persistence import Persistence
from iwf.persistence_schema import PersistenceField, PersistenceSchema
from iwf.rpc import rpc
from iwf.state_schema import StateSchema
from iwf.workflow import ObjectWorkflow
from iwf.workflow_context import WorkflowContext

from workflows.model import (
    ActionResult,
    CancelInput,
    Control,
    DraftInput,
    EmailStatus,
    Refusal,
    RequestResult,
    UserRequest,
)
from workflows.record import (
    CH_CANCEL,
    CH_CONTROL,
    CH_USER_INPUT,
    DA_CANCEL_REQUESTED,
    DA_CARD,
    DA_CLOSED,
    DA_CONFIRMED,
    DA_CONVERSATION,
    DA_DELIVERY,
    DA_DRAFT,
    DA_DRAFT_EDITED,
    DA_EMAIL,
    DA_INBOX,
    DA_LAST_ERROR,
    DA_LAST_REPLY,
    DA_MAYBE_SENT,
    DA_OWNER,
    DA_OWNER_PROFILE,
    DA_PENDING,
    DA_SEND_ATTEMPTS,
    DA_SENT_MESSAGE_ID,
    DA_STATUS,
    DA_TIMEZONE,
    MAX_REMEMBERED_IDS,
    SA_OWNER,
    SA_SEND_AT,
    SA_STATUS,
    Record,
    build_view,
)
from workflows.states import (
    LOCKED_CANCEL,
    LOCKED_INBOX,
    AgentState,
    CancelByRequestState,
    ComposeCrashedState,
    ComposeState,
    DeliverState,
    DeliveryCrashedState,
    NotifyGaveUpState,
    NotifyState,
    ScheduleState,
    Services,
    StartState,
)


class EmailAgentWorkflow(ObjectWorkflow):
    def __init__(self, services: Services):
        self._services = services

    def get_workflow_states(self) -> StateSchema:
        s = self._services
        return StateSchema.with_starting_state(
            StartState(),
            AgentState(s),
            ComposeState(s),
            ComposeCrashedState(s),
            ScheduleState(s),
            DeliverState(s),
            DeliveryCrashedState(s),
            CancelByRequestState(),
            NotifyState(s),
            NotifyGaveUpState(),
        )

    def get_persistence_schema(self) -> PersistenceSchema:
        return PersistenceSchema.create(
            *(
                PersistenceField.data_attribute_def(key, str)
                for key in (
                    DA_STATUS,
                    DA_EMAIL,
                    DA_CONVERSATION,
                    DA_TIMEZONE,
                    DA_OWNER,
                    DA_DRAFT,
                    DA_DRAFT_EDITED,
                    DA_LAST_REPLY,
                    DA_LAST_ERROR,
                    DA_INBOX,
                    DA_SENT_MESSAGE_ID,
                    DA_CARD,
                    DA_DELIVERY,
                    DA_CONFIRMED,
                    DA_OWNER_PROFILE,
                    DA_MAYBE_SENT,
                )
            ),
            PersistenceField.data_attribute_def(DA_SEND_ATTEMPTS, int),
            PersistenceField.data_attribute_def(DA_PENDING, int),
            PersistenceField.data_attribute_def(DA_CANCEL_REQUESTED, int),
            PersistenceField.data_attribute_def(DA_CLOSED, int),
            PersistenceField.search_attribute_def(SA_OWNER, SearchAttributeValueType.KEYWORD),
            PersistenceField.search_attribute_def(SA_STATUS, SearchAttributeValueType.KEYWORD),
            PersistenceField.search_attribute_def(SA_SEND_AT, SearchAttributeValueType.DATETIME),
        )

    def get_communication_schema(self) -> CommunicationSchema:
        return CommunicationSchema.create(
            CommunicationMethod.internal_channel_def(CH_USER_INPUT, str),
            CommunicationMethod.internal_channel_def(CH_CANCEL, str),
            CommunicationMethod.internal_channel_def(CH_CONTROL, str),
        )

    # RPCs take and return JSON text of the models in workflows.model: validated on both sides.

    @rpc(timeout_seconds=10, data_attribute_loading_policy=LOCKED_INBOX)
    def send_request(
        self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication
    ) -> str:
        """Atomic under iWF's RPC lock on the inbox, so concurrent retries of one message de-duplicate."""
        request = UserRequest.model_validate_json(input)
        record = Record(persistence)
        refusal, why = _refusal(record, request.actor)
        inbox = record.inbox
        # A retry of a request taken before the email went out (its answer lost) is told so, not "too late":
        # its words are in what is being sent. Only its owner learns that, though.
        if refusal != "forbidden" and request.message_id and request.message_id in inbox:
            return RequestResult(accepted=True, duplicate=True, detail="already received").model_dump_json()
        if refusal:
            return RequestResult(accepted=False, detail=why, refusal=refusal).model_dump_json()
        queued = record.pending
        communication.publish_to_internal_channel(CH_USER_INPUT, request.model_dump_json())
        record.set(DA_PENDING, queued + 1)
        if request.message_id:
            record.set(DA_INBOX, json.dumps([*inbox, request.message_id][-MAX_REMEMBERED_IDS:]))
        detail = "received" if not queued else f"received; {queued} earlier request(s) go first"
        return RequestResult(accepted=True, queued_behind=queued, detail=detail).model_dump_json()

    @rpc(timeout_seconds=10, data_attribute_loading_policy=LOCKED_CANCEL)
    def cancel(self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication) -> str:
        request = CancelInput.model_validate_json(input)
        record = Record(persistence)
        refusal, why = _refusal(record, request.actor)
        if refusal == "finished" and record.status == EmailStatus.CANCELED:
            # A retried cancel (its first answer lost) gets the same answer, not an error.
            return ActionResult(ok=True, already=True, detail="already canceled").model_dump_json()
        if refusal:
            return ActionResult(ok=False, detail=why, refusal=refusal).model_dump_json()
        # The flag is what a state deciding under the lock reads; the message wakes a waiting state.
        record.set(DA_CANCEL_REQUESTED, 1)
        communication.publish_to_internal_channel(CH_CANCEL, request.model_dump_json())
        if record.maybe_sent:
            detail = "canceled: no copy will be sent from now on, but an earlier attempt may have delivered it"
            return ActionResult(ok=True, detail=detail).model_dump_json()
        return ActionResult(ok=True, detail="canceled: it will not be sent").model_dump_json()

    @rpc(timeout_seconds=10, data_attribute_loading_policy=LOCKED_INBOX)
    def control(self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication) -> str:
        """A decision of the owner's (confirm or remove a recipient): queued like a request, in order."""
        control = Control.model_validate_json(input)
        record = Record(persistence)
        refusal, why = _refusal(record, control.actor)
        inbox = record.inbox
        if refusal != "forbidden" and control.message_id and control.message_id in inbox:
            return ActionResult(ok=True, already=True, detail="already received").model_dump_json()
        if refusal:
            return ActionResult(ok=False, detail=why, refusal=refusal).model_dump_json()
        # The requests' queue: the owner's words and decisions are taken up in the order they came.
        communication.publish_to_internal_channel(CH_USER_INPUT, control.model_dump_json())
        record.set(DA_PENDING, record.pending + 1)
        if control.message_id:
            record.set(DA_INBOX, json.dumps([*inbox, control.message_id][-MAX_REMEMBERED_IDS:]))
        return ActionResult(ok=True, detail="received").model_dump_json()

    @rpc(timeout_seconds=10)
    def save_draft(
        self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication
    ) -> str:
        draft = DraftInput.model_validate_json(input)
        record = Record(persistence)
        refusal, why = _refusal(record, draft.actor)
        if refusal == "forbidden" or refusal == "finished":
            return ActionResult(ok=False, detail=why, refusal=refusal).model_dump_json()
        saved = record.get_str(DA_DRAFT_EDITED)
        if draft.edited_ts and saved and float(draft.edited_ts) <= float(saved):
            # Slack re-delivered an older edit, or two edits' calls crossed: the newer words stay.
            return ActionResult(ok=True, already=True, detail="a newer edit is saved").model_dump_json()
        record.set(DA_DRAFT, draft.text)
        if draft.edited_ts:
            record.set(DA_DRAFT_EDITED, draft.edited_ts)
        if record.card is not None:
            communication.trigger_state_execution(NotifyState)
        return ActionResult(ok=True, detail="draft saved").model_dump_json()

    @rpc(timeout_seconds=10)
    def describe(self, ctx: WorkflowContext, persistence: Persistence, communication: Communication) -> str:
        return build_view(Record(persistence)).model_dump_json()


def _refusal(record: Record, actor: str | None) -> tuple[Refusal, str]:
    """Why this actor may not change the email now, if so. An owned email needs its owner as the actor."""
    if record.owner and actor != record.owner:
        return "forbidden", "only the person who started this email can change or cancel it"
    status = record.status
    if status == EmailStatus.SENDING:
        return "too_late", "it is being sent right now; it is too late to change or cancel it"
    if status.is_final:
        return "finished", f"this email is already {status.value}"
    if record.closed:  # its last card update may still be under way: nothing would read a request now
        return "finished", f"this email is closed ({status.value}); start a new one"
    return "", ""
