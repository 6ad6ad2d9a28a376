"""The stack's side of pid records (the one format is genreops.core.pidfiles): read, stop, clean.

Every service leads its own process group, so stopping one stops the workers it forked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
from pathlib import Path

from genreops.core.pidfiles import PidFileError, PidRecord, load_record, record_alive
from genreops.core.processes import (
    children,
    is_zombie,
    process_status,
    session_leaders,
    start_ticks,
    wait_gone,
)
from genreops.platform.stack.services import STOP_TIMEOUT, StackError

logger = logging.getLogger(__name__)


def read_record(path: Path, service: str) -> PidRecord | None:
    """The record in ``path``; None without one. A damaged file counts as stale: removed."""
    try:
        return load_record(path, service)
    except PidFileError as error:
        logger.warning("removing %s", error)
        path.unlink(missing_ok=True)
        return None


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group ``pid`` leads (every service leads its own)."""
    with contextlib.suppress(ProcessLookupError):
        try:
            os.killpg(pid, sig)
        except PermissionError as error:
            raise StackError(f"not allowed to stop pid {pid}: {error}") from error


def kill_orphans(record: PidRecord) -> None:
    """SIGKILL workers left in a service's process group once its leader has exited.

    Safe although the leader is gone: Linux does not hand out a number still in use as a
    process group id, so while no *other* process has the leader's pid, the group can only hold
    that service's own children.
    """
    if process_status(record.pid) is None or (
        is_zombie(record.pid) and start_ticks(record.pid) == record.started
    ):
        signal_group(record.pid, signal.SIGKILL)


def session_children() -> set[int]:
    """Our child processes that lead their own session (how every service is started)."""
    return session_leaders(children(os.getpid()))


def stop_record(record: PidRecord, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM the recorded process group, SIGKILL after ``timeout``; False if it was gone."""
    if not record_alive(record):
        kill_orphans(record)
        return False
    signal_group(record.pid, signal.SIGTERM)
    if not wait_gone(record.pid, timeout):
        logger.warning("%s (pid %d) ignored SIGTERM; killing it", record.service, record.pid)
        signal_group(record.pid, signal.SIGKILL)
        if not wait_gone(record.pid, 10.0):
            raise StackError(f"{record.service} (pid {record.pid}) did not stop")
    kill_orphans(record)  # workers whose leader exited first
    return True


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def launched_at(record: PidRecord | None) -> dt.datetime | None:
    """When the stack launched the recorded process (the ``launched`` field it writes)."""
    value = record.extra.get("launched") if record is not None else None
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
