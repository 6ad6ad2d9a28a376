"""Spool files: rows kept on local disk while the database cannot take them, then replayed.

A spool file is JSON lines (``{"table": ..., "row": ...}``), one per process and database
(``spool-<database fingerprint>-<host>-<pid>-<random>.jsonl``), flushed and fsync'd as it is
written so it outlives the process. Its writer keeps it under an exclusive ``flock``; whoever
replays a file takes the same lock first, so nobody replays a file still being written and no
two processes replay one file at once; a dead writer's lock is gone with it, so its file is
replayed by the next writer (or ``replay_spool``). Rows the database refuses for themselves go
to ``rejected-<host>-<pid>.jsonl`` with the error, for people to read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeAlias

from genreops.monitoring.store.database import MonitoringStore
from genreops.monitoring.store.errors import InvalidRowError, MonitoringUnavailableError
from genreops.monitoring.store.rows import prepare_row
from genreops.monitoring.store.schema import TABLE_NAMES, json_default, utc_now

log = logging.getLogger(__name__)

SPOOL_GLOB = "spool-*.jsonl"
REJECTED_GLOB = "rejected-*.jsonl"

Entry: TypeAlias = "tuple[str, dict[str, Any]]"  # (table, row)
Refusal: TypeAlias = "tuple[str, Any, str]"  # (table, row or raw line, error)

_HOST = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40] or "host"


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _spool_line(table: str, row: Any) -> str:
    try:
        return json.dumps({"table": table, "row": row}, default=json_default) + "\n"
    except (TypeError, ValueError) as error:  # e.g. a self-referencing dict: kept for people
        return json.dumps({"table": table, "row": None, "unencodable": f"{error}: {row!r}"}) + "\n"


class SpoolFile:
    """This process's current spool file; created on first use, exclusively locked while open."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self.rows = 0
        self._lock = threading.Lock()
        self._handle: IO[str] | None = None

    def append(self, entries: Sequence[tuple[str, Any]]) -> None:
        lines = "".join(_spool_line(table, row) for table, row in entries)
        with self._lock:
            if self._handle is None:
                self._handle = self._open()
            self._handle.write(lines)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.rows += len(entries)

    def _open(self) -> IO[str]:
        name = f"spool-{self.prefix}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        temporary = self.directory / f".{name}.tmp"
        handle = temporary.open("a", encoding="utf-8")
        try:
            # Locked before it gets a name replayers look for, so nobody replays it while we
            # write; the lock goes with the process, so a dead writer's file becomes replayable.
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            temporary.replace(self.directory / name)
        except BaseException:
            handle.close()
            raise
        _fsync_dir(self.directory)
        return handle

    def detach(self) -> int:
        """Close (and unlock) the current file so it can be replayed; later rows go to a new one."""
        with self._lock:
            rows, self.rows = self.rows, 0
            if self._handle is not None:
                with contextlib.suppress(OSError):
                    self._handle.close()
                self._handle = None
            return rows


_rejected_lock = threading.Lock()


def _rejected_path(directory: Path) -> Path:
    return directory / f"rejected-{_HOST}-{os.getpid()}.jsonl"


def append_rejected(directory: Path, refusals: Sequence[Refusal]) -> bool:
    stamp = utc_now().isoformat()
    lines = "".join(
        json.dumps(
            {"table": table, "row": row, "error": error, "rejected_at": stamp},
            default=json_default,
        )
        + "\n"
        for table, row, error in refusals
    )
    try:
        with _rejected_lock, _rejected_path(directory).open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        log.error("monitoring: cannot write %d rejected rows (%s)", len(refusals), error)
        return False
    return True


def _group(entries: Sequence[Entry]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for table, row in entries:
        groups.setdefault(table, []).append(row)
    return groups


def store_entries(
    store: MonitoringStore,
    entries: Sequence[Entry],
    reject: Callable[[list[Refusal]], None],
) -> tuple[int, list[Entry], MonitoringUnavailableError | None]:
    """Write prepared rows: the batch at once, else row by row so only refused rows are set aside.

    Returns (rows written, rows not attempted, the outage that stopped us or None).
    """
    try:
        store.write_prepared(_group(entries))
        return len(entries), [], None
    except MonitoringUnavailableError as error:
        return 0, list(entries), error
    except InvalidRowError as error:
        log.warning("monitoring: a batch was refused (%s); retrying row by row", error)
    stored = 0
    for index, (table, row) in enumerate(entries):
        try:
            store.write_prepared({table: [row]})
        except MonitoringUnavailableError as error:
            return stored, list(entries[index:]), error
        except InvalidRowError as error:
            reject([(table, row, str(error))])
            continue
        stored += 1
    return stored, [], None


@dataclass(frozen=True)
class ReplayReport:
    """One replay round: ``rows`` were sent (rows already stored are skipped by the database)."""

    files: int
    rows: int
    rejected: int
    busy: int  # files held by a live process, left alone


@dataclass(frozen=True)
class SpoolStatus:
    files: int
    rows: int
    rejected_rows: int


def _same_file(handle: IO[str], path: Path) -> bool:
    """Still the file at ``path``: another replayer may have removed it before we got the lock."""
    try:
        return os.fstat(handle.fileno()).st_ino == path.stat().st_ino
    except OSError:
        return False


def replay_files(
    store: MonitoringStore,
    directory: Path,
    batch_size: int,
    reject: Callable[[list[Refusal]], None],
) -> ReplayReport:
    files = rows = rejected = busy = 0

    def count_rejects(refusals: list[Refusal]) -> None:
        nonlocal rejected
        rejected += len(refusals)
        reject(refusals)

    for path in sorted(directory.glob(f"spool-{store.fingerprint}-*.jsonl")):
        try:
            handle = path.open("r", encoding="utf-8", errors="replace")
        except OSError:
            continue  # replayed and removed by someone else meanwhile
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy += 1
                continue
            if not _same_file(handle, path):
                continue
            rows += _replay_one(store, path, handle, batch_size, count_rejects)
            path.unlink()  # still holding the lock: nobody else is reading it
            files += 1
    if files:
        _fsync_dir(directory)
    return ReplayReport(files=files, rows=rows, rejected=rejected, busy=busy)


def _replay_one(
    store: MonitoringStore,
    path: Path,
    handle: IO[str],
    batch_size: int,
    reject: Callable[[list[Refusal]], None],
) -> int:
    """Stream one locked spool file into the database; raises MonitoringUnavailableError."""
    sent = 0
    chunk: list[Entry] = []

    def write() -> None:
        nonlocal sent
        stored, _left, error = store_entries(store, chunk, reject)
        if error is not None:  # the file stays; what went in is skipped on the next replay
            raise error
        sent += stored
        chunk.clear()

    for number, line in enumerate(handle, 1):
        body = line.strip()
        if not body:
            continue
        try:
            record = json.loads(body)
            table, row = record["table"], record["row"]
            if table not in TABLE_NAMES or not isinstance(row, dict):
                raise ValueError(record.get("unencodable") or "not a spooled row")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            # A line cut short by a crash, or an unencodable row: kept for people to read.
            reject([("?", body, f"{path.name}:{number}: unreadable spool line ({error})")])
            continue
        try:
            chunk.append((table, prepare_row(table, row)))
        except InvalidRowError as error:
            reject([(table, row, str(error))])
            continue
        if len(chunk) >= batch_size:
            write()
    if chunk:
        write()
    return sent


def replay_spool(
    store: MonitoringStore, spool_dir: str | os.PathLike[str], *, batch_size: int = 500
) -> ReplayReport:
    """Replay the spool files of this store's database (for the CLI; writers do it themselves).

    Files a live writer still holds are skipped. Raises MonitoringUnavailableError when the
    database is down (files are kept).
    """
    directory = Path(spool_dir)
    if not directory.is_dir():
        return ReplayReport(0, 0, 0, 0)
    store.ensure_schema(create_parent=False)

    def reject(refusals: list[Refusal]) -> None:
        append_rejected(directory, refusals)

    return replay_files(store, directory, batch_size, reject)


def spool_status(
    spool_dir: str | os.PathLike[str], store: MonitoringStore | None = None
) -> SpoolStatus:
    """Rows waiting in spool files (of ``store``'s database, or all) and rows ever rejected."""
    directory = Path(spool_dir)
    pattern = f"spool-{store.fingerprint}-*.jsonl" if store is not None else SPOOL_GLOB

    def lines(paths: Iterable[Path]) -> tuple[int, int]:
        files = rows = 0
        for path in paths:
            with contextlib.suppress(OSError):
                rows += sum(1 for line in path.read_text(errors="replace").splitlines() if line)
                files += 1
        return files, rows

    if not directory.is_dir():
        return SpoolStatus(0, 0, 0)
    files, rows = lines(directory.glob(pattern))
    _, rejected = lines(directory.glob(REJECTED_GLOB))
    return SpoolStatus(files=files, rows=rows, rejected_rows=rejected)
