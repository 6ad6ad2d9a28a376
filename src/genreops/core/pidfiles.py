"""Pid records: how one command finds (and may stop) a process another command started.

One JSON format for every service under ``<home>/run/`` — the stack's services and the Triton
server that ``genreops serve`` and the stack share. ``started`` (the process start time) guards
against a reused pid; service-specific fields (Triton's ports and repository, when the stack
launched it) live beside the common ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genreops.core.errors import GenreopsError
from genreops.core.files import atomic_write
from genreops.core.processes import is_zombie, pid_alive, process_status, start_ticks, wait_gone

logger = logging.getLogger(__name__)

STACK_OWNER = "genreops stack"
SERVE_OWNER = "genreops serve"
_COMMON = ("service", "pid", "started", "owner", "url", "log_path")


class PidFileError(GenreopsError):
    """A pid file that exists but cannot be read as a record."""


class StopError(GenreopsError):
    """A recorded process that we may not signal, or that survived SIGKILL."""


@dataclass(frozen=True)
class PidRecord:
    """A process a genreops command started; ``started`` guards against pid reuse."""

    service: str
    pid: int
    started: int  # start time, clock ticks since boot (processes.start_ticks; unit of old records)
    owner: str = STACK_OWNER
    url: str = ""
    log_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def record_alive(record: PidRecord) -> bool:
    """The recorded process still runs (same pid *and* same start time)."""
    return pid_alive(record.pid) and start_ticks(record.pid) == record.started


def write_record(path: Path, record: PidRecord) -> None:
    data = {k: v for k, v in asdict(record).items() if k != "extra"} | record.extra
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def load_record(path: Path, service: str) -> PidRecord | None:
    """The record in ``path``, None without one; a damaged file raises PidFileError."""
    try:
        data = json.loads(Path(path).read_text())
        return PidRecord(
            service=str(data.get("service", service)),
            pid=int(data["pid"]),
            started=int(data["started"]),
            owner=str(data.get("owner", SERVE_OWNER)),
            url=str(data.get("url", "")),
            log_path=data.get("log_path"),
            extra={k: v for k, v in data.items() if k not in _COMMON},
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PidFileError(f"pid file {path} is unreadable or damaged: {error}") from error


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group ``pid`` leads (every recorded service leads its own)."""
    with contextlib.suppress(ProcessLookupError):
        try:
            os.killpg(pid, sig)
        except PermissionError as error:
            raise StopError(f"not allowed to stop pid {pid}: {error}") from error


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _signal_process(pid: int, sig: signal.Signals) -> None:
    """For a recorded process started without a group of its own."""
    with contextlib.suppress(ProcessLookupError):
        try:
            os.kill(pid, sig)
        except PermissionError as error:
            raise StopError(f"not allowed to stop pid {pid}: {error}") from error


def kill_orphans(record: PidRecord) -> None:
    """SIGKILL workers left in a recorded process group once its leader has exited.

    Safe although the leader is gone: Linux does not hand out a number still in use as a
    process group id, so while no *other* process has the leader's pid, the group can only hold
    that service's own children.
    """
    if process_status(record.pid) is None or (
        is_zombie(record.pid) and start_ticks(record.pid) == record.started
    ):
        signal_group(record.pid, signal.SIGKILL)


def stop_record(record: PidRecord, timeout: float) -> bool:
    """SIGTERM the recorded process (its group when it leads one), SIGKILL after ``timeout``;
    False if it was gone.

    Only a process that still is the recorded one (same pid and start time) is signalled, so
    a reused pid is never killed.
    """
    if not record_alive(record):
        kill_orphans(record)
        return False
    send = signal_group if _leads_group(record.pid) else _signal_process
    send(record.pid, signal.SIGTERM)
    if not wait_gone(record.pid, timeout):
        logger.warning(
            "%s (pid %d) ignored SIGTERM for %.0f s; killing it",
            record.service,
            record.pid,
            timeout,
        )
        send(record.pid, signal.SIGKILL)
        if not wait_gone(record.pid, 10.0):
            raise StopError(f"{record.service} (pid {record.pid}) did not stop")
    kill_orphans(record)  # workers whose leader exited first
    return True
