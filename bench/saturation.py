"""Saturation: N emails from C concurrent clients until every one is scheduled (or sent), with the CPU the
Temporal server, the iWF server and the app spent per email, net of what finding out completion cost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.client import Client as TemporalClient

from bench.emails import one_email
from bench.engine_figures import cpu_seconds, engine_pids, ledger_events
from bench.harness import Embedded
from tests.harness import Api


async def sweep_until(api: Api, wids: list[str], statuses: tuple[str, ...], timeout: float = 900) -> int:
    """Describe the emails not yet in `statuses` every half second (8 at a time); returns the describes made."""
    pending, describes = set(wids), 0
    deadline = time.monotonic() + timeout
    limit = asyncio.Semaphore(8)

    async def check(wid: str) -> None:
        nonlocal describes
        async with limit:
            status, view = await api.call("GET", f"/api/emails/{wid}")
            describes += 1
        if status == 200 and view["status"] in statuses and not view["pending_requests"]:
            pending.discard(wid)

    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} emails never reached {statuses}")
        await asyncio.gather(*(check(wid) for wid in sorted(pending)))
        if pending:
            await asyncio.sleep(0.5)
    return describes


async def describe_cost(e: Embedded, api: Api, wids: list[str], n: int = 400) -> dict[str, float]:
    """CPU ms per describe of a waiting email, per process (8 at a time, as the sweeps)."""
    pids = engine_pids(e)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    limit = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with limit:
            await api.call("GET", f"/api/emails/{wids[i % len(wids)]}")

    await asyncio.gather(*(one(i) for i in range(n)))
    return {name: (cpu_seconds(pid) - before[name]) * 1000 / n for name, pid in pids.items()}


async def saturate(
    e: Embedded,
    api: Api,
    run: str,
    n: int,
    clients: int,
    *,
    sent: bool,
    per_describe: dict[str, float] | None = None,
    one_call: bool = False,
) -> dict[str, Any]:
    """n emails from `clients` concurrent clients until all are scheduled (or sent, due a second after);
    `one_call`: each start carries its request."""
    pids = engine_pids(e)
    temporal = await TemporalClient.connect(e.temporal_host_port)
    ledger_before = sum((await ledger_events(temporal)).values()) if sent else 0
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    tag = ("sent" if sent else "sat") + ("1" if one_call else "")
    wids = [f"cost-{run}-{tag}-{i}" for i in range(n)]
    due = "send in 1 seconds" if sent else "send in 3600 seconds"
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def client() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await one_email(api, wids[i], f"to: x{i}@example.com; subject: X; body: Load; {due}", one_call)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    accepted = time.perf_counter() - t0
    describes = await sweep_until(api, wids, ("sent",) if sent else ("scheduled",))
    elapsed = time.perf_counter() - t0
    if sent:
        await asyncio.sleep(1)  # the last tasks complete after describe shows sent
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    per_email = {name: seconds * 1000 / n for name, seconds in spent.items()}
    result: dict[str, Any] = {
        "emails": n,
        "clients": clients,
        "accepted_s": round(accepted, 1),
        "seconds": round(elapsed, 1),
        "emails_per_s": round(n / elapsed, 1),
        "describes_per_email": round(describes / n, 2),
        "cpu_ms_per_email": {name: round(ms, 1) for name, ms in per_email.items()},
        "engine_cpu_ms_per_email": round(per_email.get("temporal", 0) + per_email.get("iwf", 0), 1),
    }
    if per_describe is None:
        per_describe = await describe_cost(e, api, wids)
        result["cpu_ms_per_describe"] = {name: round(ms, 2) for name, ms in per_describe.items()}
    net = {name: ms - describes / n * per_describe.get(name, 0) for name, ms in per_email.items()}
    result["net_cpu_ms_per_email"] = {name: round(ms, 1) for name, ms in net.items()}
    result["net_engine_cpu_ms_per_email"] = round(net.get("temporal", 0) + net.get("iwf", 0), 1)
    if sent:
        await asyncio.sleep(1)
        ledger_after = sum((await ledger_events(temporal)).values())
        result["ledger_events_per_email"] = round((ledger_after - ledger_before) / n, 1)
    return result
