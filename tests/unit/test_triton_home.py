"""The Triton server of a home (`genreops serve`): what it is started with, how it is recorded
and stopped. A ``sleep`` process stands in for tritonserver."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genreops.core.pidfiles import SERVE_OWNER
from genreops.core.settings import Settings
from genreops.serving.publish import HISTORY_FILE, MODELS
from genreops.serving.triton import server
from genreops.serving.triton.home import start_home_server, stop_home_server
from genreops.serving.triton.server import TritonPorts

pytestmark = pytest.mark.unit


@pytest.fixture
def started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[tuple[tuple[Any, ...], dict[str, Any]]]]:
    """``start_triton`` replaced: records its arguments, returns a live stand-in process
    (``sleep`` under the name ``tritonserver``, so the pid record's checks accept it)."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    processes: list[subprocess.Popen[bytes]] = []
    binary = tmp_path / "bin" / "tritonserver"
    binary.parent.mkdir()
    binary.symlink_to(shutil.which("sleep") or "/bin/sleep")

    def start(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        calls.append((args, kwargs))
        processes.append(subprocess.Popen([str(binary), "60"]))
        return processes[-1]

    monkeypatch.setattr(server, "start_triton", start)
    yield calls
    for process in processes:
        process.kill()
        process.wait()


def _settings(tmp_path: Path, **values: Any) -> Settings:
    no_dotenv: dict[str, Any] = {"_env_file": None}
    return Settings(home=tmp_path / "home", use_stack_env=False, **no_dotenv, **values)


def test_an_empty_home_starts_with_nothing_loaded_and_is_recorded(
    tmp_path: Path, started: list[Any]
) -> None:
    settings = _settings(tmp_path, triton_http_port=9100, triton_grpc_port=9101)
    said: list[str] = []
    home_server = start_home_server(settings, say=said.append)
    ((args, kwargs),) = started
    repository = settings.repository
    assert args == (repository,) and repository.is_dir()  # made, ready for a publish
    assert kwargs["load_models"] == []
    assert kwargs["ports"] == TritonPorts(9100, 9101, settings.triton_metrics_port)
    assert kwargs["env"] == {  # the stubs' settings: this home, replica 0's serving state
        "GENREOPS_HOME": str((tmp_path / "home").resolve()),
        "GENREOPS_SERVING_REPLICA": "0",
    }
    assert kwargs["log_path"] == settings.log_dir.resolve() / "triton.log"
    assert said == [f"starting Triton on {repository} (log {kwargs['log_path']}) ..."]
    assert home_server.published is None

    record = json.loads(server.server_pid_file(settings.home).read_text())
    assert record["owner"] == SERVE_OWNER and record["pid"] == home_server.process.pid
    info = server.read_pid_file(home_server.pid_file)
    assert info is not None and info.ports == home_server.ports
    assert info.repository == repository

    home_server.stop()
    assert home_server.process.poll() is not None
    assert not home_server.pid_file.exists()
    assert stop_home_server(settings) is False  # nothing recorded any more


def test_a_published_repository_is_loaded_at_start(tmp_path: Path, started: list[Any]) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    (repository / HISTORY_FILE).write_text(json.dumps({"current": 3, "versions": []}))
    settings = _settings(tmp_path)
    home_server = start_home_server(
        settings, repository=repository, ports=TritonPorts(9200, 9201, 9202), host="0.0.0.0"
    )
    ((args, kwargs),) = started
    assert args == (repository.resolve(),)
    assert kwargs["load_models"] == list(MODELS)
    assert (kwargs["ports"], kwargs["host"]) == (TritonPorts(9200, 9201, 9202), "0.0.0.0")
    assert home_server.published == 3
    assert stop_home_server(settings) is True  # from the record, as `serve --stop` does
    assert home_server.process.wait(timeout=10) is not None
