"""Hand-overs to the mail server made by this process: one at a time per hand-over, outcomes remembered.

The iWF server may run a delivery step again while an earlier execution is still talking to the mail
server (a local activity gives up after 7 s and falls back to a normal activity; a restarted iWF server
replays a workflow task). Within this process the later execution joins the earlier one and gets its
outcome instead of sending again. Across processes the delivery ledger covers it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from workflows.mailer import SendError


@dataclass(frozen=True)
class Delivered:
    where: str
    note: str = ""  # for the user, when it was confirmed only afterwards (the server's answer was lost)
    earlier_message_id: str = ""  # set when what went out was an earlier version's copy, not this round's


Outcome = Delivered | SendError


class DeliveryRegistry:
    def __init__(self, remember: int = 2000, wait_seconds: float = 300.0):
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Future[Outcome]] = OrderedDict()
        self._remember = remember
        self._wait = wait_seconds

    def known(self, key: str) -> Outcome | None:
        """The outcome of a hand-over made (or under way) in this process, waiting for it if need be."""
        with self._lock:
            future = self._entries.get(key)
        return future.result(self._wait) if future is not None else None

    def run(self, key: str, hand_over: Callable[[], Outcome]) -> Outcome:
        """Hand over once per key: a concurrent or later call with the same key gets the first outcome.

        `hand_over` is the whole of it, the ledger claim included: an execution that joins here never
        finds its sibling's claim half-way and has to guess whether that one got to the mail server."""
        with self._lock:
            future = self._entries.get(key)
            owner = future is None
            if future is None:
                future = Future()
                self._entries[key] = future
                while len(self._entries) > self._remember:
                    self._entries.popitem(last=False)
        if not owner:
            return future.result(self._wait)
        try:
            outcome = hand_over()
        except SendError as error:
            outcome = error
        except BaseException as error:
            # A crash mid-send: forget it, so that a later execution decides afresh (the ledger knows).
            with self._lock:
                if self._entries.get(key) is future:  # not a newer owner's, after an eviction
                    del self._entries[key]
            future.set_exception(error)
            raise
        future.set_result(outcome)
        return outcome
