"""The secrets the local stack makes for itself: never empty, never half-written, kept once made."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from iwf.registry import Registry

from bot.worker_app import worker_app
from devstack.secrets import PRINTABLE, WELL_FORMED, local_secret


def test_a_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    made = local_secret(tmp_path, "worker-secret")
    assert WELL_FORMED.fullmatch(made)
    assert local_secret(tmp_path, "worker-secret") == made
    assert stat.S_IMODE((tmp_path / "worker-secret").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["worker-secret"]  # no temporary file left behind


@pytest.mark.parametrize("left", ["", "\n", "short", "has spaces in it, sixteen+"])
def test_a_file_left_empty_or_malformed_is_replaced_not_used(tmp_path: Path, left: str) -> None:
    """A crash between creating the file and writing it, or a full disk, left it empty: an empty worker
    secret would make the iWF config carry no header and the worker accept state calls without one."""
    (tmp_path / "worker-secret").write_text(left)
    made = local_secret(tmp_path, "worker-secret")
    assert WELL_FORMED.fullmatch(made) and made != left.strip()
    assert (tmp_path / "worker-secret").read_text() == made


def test_the_worker_refuses_an_empty_secret() -> None:
    with pytest.raises(ValueError, match="empty worker secret"):
        worker_app(Registry(), secret="")


def test_two_processes_making_the_secret_at_once_agree(tmp_path: Path) -> None:
    """Each writes a whole file and links it into place only if none is there: the loser reads the winner's."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        made = set(pool.map(lambda _: local_secret(tmp_path, "worker-secret"), range(32)))
    assert made == {(tmp_path / "worker-secret").read_text()}


def test_an_api_token_written_by_hand_is_kept(tmp_path: Path) -> None:
    """Settings take any printable ASCII for API_TOKEN: one kept in the file by hand is not replaced."""
    (tmp_path / "api-token").write_text("my!own~token#2026\n")
    assert local_secret(tmp_path, "api-token", PRINTABLE) == "my!own~token#2026"
