"""schemathesis against the running app's own OpenAPI document: no input may produce a 5xx."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import API_TOKEN, AppProcess

pytestmark = pytest.mark.engine


async def test_no_generated_request_gets_a_server_error(app_process: AppProcess) -> None:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{app_process.base_url}/api/openapi.json",
        "--header",
        f"Authorization: Bearer {API_TOKEN}",
        "--checks",
        "not_a_server_error",
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
