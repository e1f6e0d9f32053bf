"""schemathesis against the running app's own OpenAPI document, with every check it has: no 5xx, and every
answer (successes and errors alike) has a status, content type and body the document declares."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import API_TOKEN, AppProcess

pytestmark = pytest.mark.engine


async def test_generated_requests_get_documented_answers_and_no_server_error(app_process: AppProcess) -> None:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{app_process.base_url}/api/openapi.json",
        "--header",
        f"Authorization: Bearer {API_TOKEN}",
        "--checks",
        "all",
        "--max-examples",
        "25",
        "--request-timeout",
        "20",
        "--seed",
        "20261125",
    ]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=600)
    summary = [line for line in result.stdout.splitlines() if "generated" in line or "failed" in line.lower()]
    print("\n".join(summary))
    assert result.returncode == 0, result.stdout[-4000:]
    assert any("generated" in line for line in summary), "schemathesis ran no case"
