"""The watchdog tells a stub that died from one Triton stopped (real child processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from genreops.serving.triton.watchdog import STUB_NAME, StubWatch, stub_model

pytestmark = pytest.mark.unit


@pytest.fixture
def spawn_stub(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start a process that looks like a Python-backend stub of ``model`` (its argv[0] and
    model.py path), as a child of this test process, the way stubs are tritonserver's."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(model: str) -> subprocess.Popen[bytes]:
        model_file = tmp_path / "repository" / model / "1" / "model.py"
        model_file.parent.mkdir(parents=True, exist_ok=True)
        model_file.write_text("import time\ntime.sleep(120)\n")
        process = subprocess.Popen(
            [str(tmp_path / "backends" / STUB_NAME), str(model_file)], executable=sys.executable
        )
        started.append(process)
        return process

    yield spawn
    for process in started:
        process.kill()
        process.wait()


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"


def test_a_killed_stub_is_reported_once_after_the_grace_and_a_stopped_one_never(
    spawn_stub: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    now = [0.0]
    watch = StubWatch(os.getpid(), grace=3.0, clock=lambda: now[0])
    killed = spawn_stub("preprocessor")
    stopped = spawn_stub("predictor")
    reaped_late = spawn_stub("postprocessor")
    _until(lambda: stub_model(killed.pid) == "preprocessor")
    _until(lambda: stub_model(reaped_late.pid) == "postprocessor")
    assert watch.poll() == []
    assert sorted(watch.models.values()) == ["postprocessor", "predictor", "preprocessor"]

    stopped.terminate()
    stopped.wait()  # reaped by its parent: what Triton does with stubs it stops itself
    for process in (killed, reaped_late):  # not reaped (yet): zombies
        os.kill(process.pid, signal.SIGKILL)
        _until(lambda p=process: _is_zombie(p.pid))

    assert watch.poll() == []  # a zombie younger than the grace may still be reaped
    now[0] = 2.0
    reaped_late.wait()  # Triton reaped it within the grace: it had stopped it itself
    assert watch.poll() == []
    now[0] = 3.5
    assert watch.poll() == ["preprocessor"]
    assert watch.poll() == []  # the zombie stays until reaped; one restart per death
    killed.wait()
    assert watch.poll() == [] and watch.models == {} and watch.exited_at == {}


def test_processes_that_are_not_stubs_are_ignored() -> None:
    assert stub_model(os.getpid()) is None
    assert StubWatch(os.getpid()).poll() == []
