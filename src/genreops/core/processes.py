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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

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


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot): a pid plus this names one process."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def pid_alive(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")  # a zombie has exited


def wait_gone(pid: int, timeout: float) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone), False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
