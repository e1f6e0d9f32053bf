"""The email workflow's states, by concern: `conversation` (start, wait, the model), `sending` (timer,
decision, delivery), `card` (the user's card); `common` holds what they share.

Every value lives in iWF data attributes (workflows.record), so any process may die at any moment: the
iWF server retries the state API and the workflow continues from the last completed step.
"""

from workflows.states.card import NotifyGaveUpState, NotifyState
from workflows.states.common import INBOX_KEYS, LOCKED_CANCEL, LOCKED_INBOX, Services
from workflows.states.conversation import (
    AgentState,
    CancelByRequestState,
    ComposeCrashedState,
    ComposeState,
    StartState,
)
from workflows.states.sending import DeliverState, DeliveryCrashedState, ScheduleState

__all__ = [
    "INBOX_KEYS",
    "LOCKED_CANCEL",
    "LOCKED_INBOX",
    "AgentState",
    "CancelByRequestState",
    "ComposeCrashedState",
    "ComposeState",
    "DeliverState",
    "DeliveryCrashedState",
    "NotifyGaveUpState",
    "NotifyState",
    "ScheduleState",
    "Services",
    "StartState",
]
