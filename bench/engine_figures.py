"""What the engine spent, read from outside: the CPU time of its processes and the events of a workflow's
Temporal history. Machine-independent history counts are the figures to track exactly; CPU is per run."""

from __future__ import annotations

from collections import Counter
from typing import Any

import psutil
from temporalio.client import Client as TemporalClient

from bench.harness import Embedded


def cpu_seconds(pid: int) -> float:
    """The process and its live children: the iWF server runs under a log-filtering wrapper script."""
    process = psutil.Process(pid)
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def engine_pids(e: Embedded) -> dict[str, int]:
    pids = {name: process.pid for name, process in e.stack.started.items() if process.pid}
    assert e.app.popen is not None
    pids["app"] = e.app.popen.pid
    return pids


def short(kind: str | None) -> str:
    return (kind or "?").removesuffix("_event_attributes")


async def history_counts(temporal: TemporalClient, workflow_id: str) -> dict[str, Any]:
    history = await temporal.get_workflow_handle(workflow_id).fetch_history()
    kinds = Counter(short(event.WhichOneof("attributes")) for event in history.events)
    markers = Counter(
        event.marker_recorded_event_attributes.marker_name
        for event in history.events
        if event.WhichOneof("attributes") == "marker_recorded_event_attributes"
    )
    return {
        "events": len(history.events),
        "activities": kinds["activity_task_scheduled"],
        # A local activity is recorded as a marker; iWF also records one version marker (workflow.GetVersion).
        "local_activities": markers["LocalActivity"],
        "markers": dict(markers),
        "workflow_tasks": kinds["workflow_task_completed"],
        "timers": kinds["timer_started"],
        "updates": kinds["workflow_execution_update_accepted"],
        "by_type": dict(kinds.most_common()),
        "sequence": [short(event.WhichOneof("attributes")) for event in history.events],
    }


async def ledger_events(temporal: TemporalClient) -> dict[str, int]:
    """Events in every delivery ledger workflow (one per owner and day; none before ledgers existed)."""
    events: dict[str, int] = {}
    async for execution in temporal.list_workflows():
        if execution.id.startswith("ledger-"):
            history = await temporal.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
            events[execution.id] = len(history.events)
    return events
