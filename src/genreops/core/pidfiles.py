"""Pid records: how one command finds (and may stop) a process another command started.

One JSON format for every service under ``<home>/run/`` — the stack's services and the Triton
server that ``genreops serve`` and the stack share. ``started`` (the process start time) guards
against a reused pid; service-specific fields (Triton's ports and repository, when the stack
launched it) live beside the common ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genreops.core.errors import GenreopsError
from genreops.core.files import atomic_write
from genreops.core.processes import pid_alive, start_ticks

STACK_OWNER = "genreops stack"
SERVE_OWNER = "genreops serve"
_COMMON = ("service", "pid", "started", "owner", "url", "log_path")


class PidFileError(GenreopsError):
    """A pid file that exists but cannot be read as a record."""


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
