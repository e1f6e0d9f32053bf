"""The CI variant of the chaos run (`make chaos` is the full one): 30 emails, every process killed, and the
model and the mail server failing at random (the default fault rates), the account's Sent folder over IMAP
settling lost SMTP answers."""

from __future__ import annotations

import pytest

from bench.chaos import MODEL_FAULTS, SMTP_FAULTS, Config, run_chaos
from tests.conftest import ENGINE_PROFILE

pytestmark = pytest.mark.engine


async def test_chaos_loses_nothing_and_sends_nothing_twice(engine: object) -> None:
    """`engine` only makes this skip where the engine cannot run; the run starts its own stack to kill. On the
    production profile PostgreSQL is crash-stopped too, and one app replica and one iWF server die for good."""
    # A seed whose first model call and first delivery of the emails draw every kind of fault at least once.
    report = await run_chaos(Config(n=30, seed=20261254, profile=ENGINE_PROFILE))
    print("\n" + report.table())
    assert min(report.kills.values()) >= 1, report.kills
    if ENGINE_PROFILE == "production":
        assert sorted(name.split("-")[0] for name in report.removed) == ["app", "iwf"], report.removed
    kinds = [f"model {k}" for k in MODEL_FAULTS] + [f"smtp {k}" for k in (*SMTP_FAULTS, "slow")]
    assert all(report.faults.get(kind) for kind in kinds), report.faults
    assert report.lost == []
    assert report.duplicated == []
    assert report.sent_after_cancel == []
    assert report.unscheduled == []
    assert report.stale_content == []
    assert report.stuck == []
    assert report.accounted == report.n
    # A lost answer (a drop after DATA, a kill while the server held it) is settled by the Sent folder.
    assert report.unconfirmed_delivered == [], report.unconfirmed_delivered
