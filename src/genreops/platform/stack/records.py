"""The stack's side of pid records (the one format is genreops.core.pidfiles): read, stop, clean.

Every service leads its own process group, so stopping one stops the workers it forked.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
from pathlib import Path

from genreops.core import pidfiles
from genreops.core.pidfiles import PidFileError, PidRecord, StopError, load_record
from genreops.core.processes import (
    children,
    session_leaders,
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


def session_children() -> set[int]:
    """Our child processes that lead their own session (how every service is started)."""
    return session_leaders(children(os.getpid()))


def stop_record(record: PidRecord, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop a service's process group (see core.pidfiles.stop_record), as a StackError."""
    try:
        return pidfiles.stop_record(record, timeout)
    except StopError as error:
        raise StackError(str(error)) from error


def signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        pidfiles.signal_group(pid, sig)
    except StopError as error:
        raise StackError(str(error)) from error


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
