"""The native stack's Triton replicas (GENREOPS_TRITON_REPLICAS=2): real tritonservers on one
repository, found by clients and publishers, kept running by their keeper process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from genreops.core.settings import Settings
from genreops.platform.stack import Stack
from genreops.serving.triton.control import is_ready
from genreops.serving.triton.server import read_pid_file, running_server_url, server_pid_file
from helpers import free_port_block, wait_until

pytestmark = pytest.mark.integration


def _servers_of(home: Path) -> list[psutil.Process]:
    """tritonserver processes serving this home's repository."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "tritonserver" and str(home) in line:
            found.append(process)
    return found


def test_the_stack_runs_its_replicas_and_starts_a_killed_one_again(tmp_path: Path) -> None:
    base = free_port_block(13)  # http, grpc, metrics; replica 1 on the same + 10
    home = (tmp_path / "home").resolve()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        home=home,
        use_stack_env=False,
        triton_replicas=2,
        triton_http_port=base,
        triton_grpc_port=base + 1,
        triton_metrics_port=base + 2,
    )
    stack = Stack(settings)
    try:
        rows = {row.service: row for row in stack.up(only=["triton-replicas"])}
        assert rows["triton"].healthy and rows["triton-replicas"].healthy
        assert rows["triton-replicas"].detail.startswith("1 of 1 more servers ready")
        # clients get both; publish finds both by their records
        env = (home / "stack.env").read_text()
        assert f"GENREOPS_TRITON_URL=127.0.0.1:{base + 1},127.0.0.1:{base + 11}" in env
        assert running_server_url(home) == f"http://127.0.0.1:{base},http://127.0.0.1:{base + 10}"
        assert len(_servers_of(home)) == 2

        replica = read_pid_file(server_pid_file(home, 1))
        assert replica is not None and replica.ports.http == base + 10
        os.kill(replica.pid, signal.SIGKILL)

        def back() -> bool:
            again = read_pid_file(server_pid_file(home, 1))
            return (
                again is not None and again.pid != replica.pid and is_ready(replica.ports.http_url)
            )

        keeper_log = stack.log_file("triton-replicas")
        assert wait_until(back, timeout=120, every=1.0), keeper_log.read_text()
        assert "replica 1 is not running (exit -9); starting it again" in keeper_log.read_text()
    finally:
        stopped = stack.down()
    assert {"triton", "triton-replicas"} <= set(stopped)
    assert wait_until(lambda: not _servers_of(home), timeout=60), _servers_of(home)
    assert not list((home / "run").glob("triton*.json"))
