"""Start and stop the local services genreops runs (S3, MLflow, ...) as plain child processes.

Each service writes to a log file; startup waits for a readiness probe and, when the process
dies or never gets ready, the error quotes the end of its log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import psutil

from genreops.core.errors import GenreopsError

logger = logging.getLogger(__name__)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_answers(url: str, timeout: float = 1.0, expect: str | None = None) -> bool:
    """True once ``url`` answers HTTP (any status), or with a body starting with ``expect``."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=timeout) as response:
            return expect is None or response.read(256).decode(errors="replace").startswith(expect)
    except urllib.error.HTTPError:
        return expect is None
    except (OSError, ValueError):
        return False


def log_tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.is_file():
        return "(no log)"
    text = path.read_text(errors="replace").strip().splitlines()
    return "\n".join(text[-lines:]) or "(log is empty)"


def start_process(
    name: str,
    argv: Sequence[str],
    *,
    ready: Callable[[], bool],
    url: str,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    new_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Run ``argv`` with output appended to ``log_path`` and wait until ``ready()``.

    ``new_session`` puts the service in its own process group, so ``stop_process`` also stops
    the workers it forks and a terminal's Ctrl-C does not reach it behind our back.
    """
    if log_path is None:
        fd, temp_name = tempfile.mkstemp(prefix=f"genreops-{name}-", suffix=".log")
        os.close(fd)
        log_path = Path(temp_name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=new_session,
        )
    logger.info("starting %s (pid %d) on %s, log %s", name, process.pid, url, log_path)
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise GenreopsError(
                f"{name} exited with code {code} while starting on {url}; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        if ready():
            # Something answered; make sure it is our process and not a racing neighbour.
            time.sleep(0.05)
            if process.poll() is None:
                return process
            continue
        if time.monotonic() > deadline:
            stop_process(process)
            raise GenreopsError(
                f"{name} did not get ready on {url} within {timeout:.0f} s; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(0.2)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM (to the whole group when the process leads one), then SIGKILL; idempotent."""
    if process.poll() is not None:
        return
    try:
        group = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    leads_group = group == process.pid

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if leads_group:
                os.killpg(group, sig)
            else:
                process.send_signal(sig)

    send(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        logger.warning("pid %d ignored SIGTERM; killing it", process.pid)
        send(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    if leads_group:  # workers left behind by a parent that exited first
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


# Clock ticks per second: pid records store a process's start time in ticks since boot (the
# unit of /proc/PID/stat's starttime), so records written before psutil still match.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)  # a zombie has exited


def process_status(pid: int) -> str | None:
    """psutil's status of ``pid`` (``psutil.STATUS_*``), or None if there is no such process."""
    try:
        return str(psutil.Process(pid).status())
    except (psutil.Error, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot): a pid plus this names one process.

    From psutil's create_time (epoch seconds = boot time + ticks / CLK_TCK), converted back to
    the exact tick count so the unit stays the one pid records have always stored.
    """
    try:
        created = psutil.Process(pid).create_time()
        booted = psutil.boot_time()
    except (psutil.Error, ValueError):
        return None
    return round((created - booted) * _CLOCK_TICKS)


def pid_alive(pid: int) -> bool:
    status = process_status(pid)
    return status is not None and status not in _GONE


def is_zombie(pid: int) -> bool:
    """``pid`` has exited but its parent has not reaped it yet."""
    return process_status(pid) in _GONE


def wait_gone(pid: int, timeout: float) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone), False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (zombies included); empty when ``pid`` is gone."""
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except (psutil.Error, ValueError):
        return []


def session_leaders(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` that lead their own session (``start_new_session``)."""
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if os.getsid(pid) == pid:
                found.add(pid)
    return found


def cmdline(pid: int) -> list[str] | None:
    """The command line of ``pid``, or None when it is gone (a zombie's is empty)."""
    try:
        return list(psutil.Process(pid).cmdline())
    except psutil.ZombieProcess:
        return []
    except (psutil.Error, ValueError):
        return None
