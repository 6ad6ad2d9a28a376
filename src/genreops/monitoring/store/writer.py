"""``MonitoringWriter``: how the inference service writes to the store, off the request path.

Why it is built the way it is:

* Inference must never wait for the database, so ``submit_*`` only copies the row onto a
  bounded in-memory queue; one daemon thread per process drains it in batches (up to
  ``batch_size`` rows or ``flush_interval`` seconds). Batches keep transactions few: SQLite
  serialises writers across processes (several Triton instances write at once), and a
  PostgreSQL round trip costs far more than a row.
* The queue is bounded so a stuck database cannot eat an instance's memory. When it is full,
  the row is appended to the spool file instead: slower for that one call, never dropped.
* When the database cannot be reached the batch is appended to a per-process JSON-lines spool
  file (flushed and fsync'd: it outlives the process) and the thread backs off. Once the
  database answers again the thread replays every spool file of this database, its own and
  those left by processes that died, each under an exclusive ``flock`` (a live writer keeps
  its current file locked, so nobody replays a file that is still being written and no two
  processes replay one file at the same time), then deletes it.
* Every row gets a unique id when it is submitted (``request_id``/``test_id``/``event_id``) and
  inserts are "on conflict do nothing": a batch committed just before the connection dropped,
  or a file replayed twice, is stored once. Stored rows equal served rows.
* A row the database refuses for itself (wrong type, constraint) is not a reason to stop or to
  retry forever: the batch is retried row by row, the refused rows go to a separate
  ``rejected-*.jsonl`` file with the error, and they are counted.
* Rows still in memory when a process is killed outright (SIGKILL) are lost: the price of
  keeping disk and network I/O off the request path. ``close()`` (Triton's ``finalize``) and an
  atexit hook flush them on every orderly exit.
* The writer never creates the SQLite file's directory: a missing directory usually means an
  unmounted volume or a wrong setting, and a fresh database there would split the data. Rows
  are spooled until it appears (``MonitoringStore.ensure_schema()`` does create it).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreops.monitoring.store.database import MonitoringStore
from genreops.monitoring.store.errors import (
    InvalidRowError,
    MonitoringError,
    MonitoringUnavailableError,
)
from genreops.monitoring.store.rows import prepare_row, with_identity
from genreops.monitoring.store.schema import (
    ALERTS,
    DRIFT_TESTS,
    LABELS,
    MODEL_EVENTS,
    PREDICTIONS,
    get_table,
)
from genreops.monitoring.store.spool import (
    Entry,
    Refusal,
    SpoolFile,
    append_rejected,
    replay_files,
    store_entries,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriterStats:
    """Counters since start. Every submitted row ends stored, spooled, rejected or lost."""

    submitted: int
    stored: int
    spooled: int
    replayed: int
    rejected: int
    lost: int  # could not even be spooled (spool directory unwritable): logged as errors
    queued: int
    database_up: bool


_WAKE = object()  # queue marker: stop waiting for a full batch (flush, close)
_LIVE_WRITERS: weakref.WeakSet[MonitoringWriter] = weakref.WeakSet()


class MonitoringWriter:
    """Off-request-path writer: bounded queue, batches, spool on outage, replay on recovery.

    One per process (create it after any fork). ``submit_*`` never blocks on the database and
    never raises; see the module docstring for the design.
    """

    def __init__(
        self,
        store: MonitoringStore | str,
        spool_dir: str | os.PathLike[str],
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        max_backoff: float = 30.0,
        replay_interval: float = 30.0,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval <= 0 or max_backoff <= 0:
            raise ValueError("queue_size, batch_size, flush_interval and max_backoff must be > 0")
        self._owns_store = isinstance(store, str)
        self.store = MonitoringStore(store) if isinstance(store, str) else store
        self.spool_dir = Path(spool_dir)
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MonitoringError(
                f"monitoring spool folder {self.spool_dir}: cannot create it ({error.strerror})"
            ) from error
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.replay_interval = replay_interval
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._spool = SpoolFile(self.spool_dir, self.store.fingerprint)
        self._cond = threading.Condition()
        self._submitted = self._stored = self._spooled = self._replayed = 0
        self._rejected = self._lost = self._settled = 0
        self._closed = False
        self._stopping = threading.Event()
        # Database state, touched by the writer thread only.
        self._down = False
        self._backoff = 0.0
        self._retry_at = 0.0
        self._schema_ready = False
        self._backlog = True  # files of earlier processes may be waiting: look at start
        self._next_scan = 0.0
        # Replay requests from flush(replay=True): asked, attempted, completed without outage.
        self._replay_asked = self._replay_tried = self._replay_clean = 0
        self._thread = threading.Thread(
            target=self._run, name="genreops-monitoring-writer", daemon=True
        )
        self._thread.start()
        _LIVE_WRITERS.add(self)

    # -- counters

    def _settle(
        self, *, stored: int = 0, spooled: int = 0, rejected: int = 0, lost: int = 0
    ) -> None:
        with self._cond:
            self._stored += stored
            self._spooled += spooled
            self._rejected += rejected
            self._lost += lost
            self._settled += stored + spooled + rejected + lost
            self._cond.notify_all()

    @property
    def submitted(self) -> int:
        return self._submitted

    @property
    def stored(self) -> int:
        return self._stored

    @property
    def spooled(self) -> int:
        return self._spooled

    @property
    def replayed(self) -> int:
        return self._replayed

    @property
    def rejected(self) -> int:
        return self._rejected

    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                submitted=self._submitted,
                stored=self._stored,
                spooled=self._spooled,
                replayed=self._replayed,
                rejected=self._rejected,
                lost=self._lost,
                queued=self._queue.qsize(),
                database_up=not self._down,
            )

    # -- request path

    def submit_prediction(self, row: Mapping[str, Any]) -> str:
        """Queue one served prediction; returns its request_id."""
        return self._submit(PREDICTIONS, row)

    def submit_drift_test(self, row: Mapping[str, Any]) -> str:
        """Queue one drift test result; returns its test_id."""
        return self._submit(DRIFT_TESTS, row)

    def submit_model_event(self, row: Mapping[str, Any]) -> str:
        """Queue one model event (publish, rollback, ...); returns its event_id."""
        return self._submit(MODEL_EVENTS, row)

    def submit_label(self, row: Mapping[str, Any]) -> str:
        """Queue one label (a clip's true genre); returns its label_id."""
        return self._submit(LABELS, row)

    def submit_alert(self, row: Mapping[str, Any]) -> str:
        """Queue one received alert notification; returns its alert_id."""
        return self._submit(ALERTS, row)

    def _submit(self, table: str, row: Mapping[str, Any]) -> str:
        with self._cond:
            self._submitted += 1
        try:
            entry = with_identity(table, row)
        except Exception as error:  # not a mapping at all: the caller's bug, never its failure
            self._reject([(table, row, f"{table} row must be a mapping ({error})")], settle=True)
            return ""
        ident = str(entry[get_table(table).info["key"]])
        if not self._closed and self._thread.is_alive():
            try:
                self._queue.put_nowait((table, entry))
                return ident
            except queue.Full:
                self._spool_batch([(table, entry)])  # replayed by the thread later
                return ident
        self._spool_batch([(table, entry)])
        self._spool.detach()  # no thread to replay it: unlock it for other writers and the CLI
        return ident

    # -- waiting

    def _wake(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_WAKE)

    def flush(self, timeout: float = 30.0, *, replay: bool = False) -> bool:
        """Wait until every row submitted so far is stored, spooled or rejected.

        With ``replay``, also wait for a replay of the spool that found the database up (rows
        spooled before are then stored). False when ``timeout`` ran out first.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
        self._wake()
        with self._cond:
            done = self._cond.wait_for(
                lambda: self._settled >= target, max(0.0, deadline - time.monotonic())
            )
            if not done or not replay:
                return done
            if not self._thread.is_alive():
                return False
            self._replay_asked += 1
            ticket = self._replay_asked
        self._wake()
        with self._cond:
            return self._cond.wait_for(
                lambda: self._replay_clean >= ticket, max(0.0, deadline - time.monotonic())
            )

    def close(self, timeout: float = 30.0) -> bool:
        """Flush, stop the thread and release the spool file; True if nothing was left behind."""
        if self._closed:
            return True
        deadline = time.monotonic() + timeout
        ok = self.flush(timeout)
        self._closed = True  # from now on submit_* spools directly
        self._stopping.set()
        self._wake()
        self._thread.join(max(0.1, deadline - time.monotonic()))
        if self._thread.is_alive():  # stuck in the database: keep what is still queued
            log.warning("monitoring writer did not stop in %.0f s; spooling the queue", timeout)
            ok = False
            leftover: list[Entry] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    item = self._queue.get_nowait()
                    if item is not _WAKE:
                        leftover.append(item)
            if leftover:
                self._spool_batch(leftover)
        self._spool.detach()
        _LIVE_WRITERS.discard(self)
        if self._owns_store and not self._thread.is_alive():
            self.store.close()
        return ok

    def __enter__(self) -> MonitoringWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- spool and rejects

    def _spool_batch(self, entries: Sequence[tuple[str, Any]]) -> None:
        try:
            self._spool.append(entries)
        except OSError as error:
            log.error(
                "monitoring: cannot spool %d rows to %s (%s); they are lost",
                len(entries),
                self.spool_dir,
                error,
            )
            self._settle(lost=len(entries))
            return
        self._settle(spooled=len(entries))

    def _reject(self, refusals: list[Refusal], *, settle: bool) -> None:
        for _table_name, _row, error in refusals[:3]:
            log.warning("monitoring: row rejected: %s", error)
        append_rejected(self.spool_dir, refusals)
        if settle:
            self._settle(rejected=len(refusals))
        else:
            with self._cond:
                self._rejected += len(refusals)

    # -- the thread

    def _run(self) -> None:
        while True:
            try:
                batch = self._collect()
                if batch:
                    self._handle(batch)
                finishing = self._stopping.is_set() and self._queue.empty()
                self._maybe_replay(final=finishing)
                if finishing:
                    return
            except Exception:  # never die: a dead writer would turn every row into a spool write
                log.exception("monitoring writer: unexpected error; carrying on")
                time.sleep(0.1)

    def _collect(self) -> list[Entry]:
        try:
            item = self._queue.get(timeout=min(0.5, self.flush_interval))
        except queue.Empty:
            return []
        hurry = item is _WAKE
        batch: list[Entry] = [] if hurry else [item]
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            try:
                if hurry or self._stopping.is_set():
                    item = self._queue.get_nowait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if item is _WAKE:
                hurry = True
            else:
                batch.append(item)
        return batch

    def _handle(self, batch: list[Entry]) -> None:
        good: list[Entry] = []
        bad: list[Refusal] = []
        for table, row in batch:
            try:
                good.append((table, prepare_row(table, row)))
            except InvalidRowError as error:
                bad.append((table, row, str(error)))
        if bad:
            self._reject(bad, settle=True)
        if not good:
            return
        if self._down and time.monotonic() < self._retry_at:
            self._spool_batch(good)
            return
        try:
            self._ensure_schema()
            stored, left, outage = store_entries(
                self.store, good, lambda refusals: self._reject(refusals, settle=True)
            )
        except MonitoringUnavailableError as error:
            stored, left, outage = 0, good, error
        except Exception:
            log.exception("monitoring writer: cannot store a batch; spooling it")
            self._spool_batch(good)
            return
        self._settle(stored=stored)
        if outage is not None:
            self._mark_down(outage)
            self._spool_batch(left)
        else:
            self._mark_up()

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        try:
            self.store.ensure_schema(create_parent=False)
        except MonitoringUnavailableError:
            raise
        except MonitoringError as error:  # writes may still work; they will say if not
            log.error("monitoring: %s", error)
        self._schema_ready = True

    def _mark_down(self, error: MonitoringError) -> None:
        self._schema_ready = False  # the database that comes back may be a new, empty one
        self._backoff = min(self.max_backoff, max(0.25, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff
        if not self._down:
            log.warning("%s; spooling to %s", error, self.spool_dir)
        self._down = True

    def _mark_up(self) -> None:
        if self._down:
            log.warning("monitoring: database %s reachable again", self.store.display)
            self._backlog = True
        self._down = False
        self._backoff = 0.0

    def _maybe_replay(self, *, final: bool = False) -> None:
        now = time.monotonic()
        with self._cond:
            asked = self._replay_asked
        fresh_ask = asked > self._replay_tried
        if self._down and now < self._retry_at and not fresh_ask:
            return
        own = self._spool.rows > 0
        if final:
            due = (own or fresh_ask) and not self._down
        else:
            due = fresh_ask or own or self._backlog or now >= self._next_scan
        if not due:
            return
        self._replay_tried = asked
        self._next_scan = now + self.replay_interval
        try:
            self._ensure_schema()  # also the probe: no file is touched while the database is down
            self._spool.detach()
            report = replay_files(
                self.store,
                self.spool_dir,
                self.batch_size,
                lambda refusals: self._reject(refusals, settle=False),
            )
        except MonitoringUnavailableError as error:
            self._backlog = True
            self._mark_down(error)
            return
        self._backlog = False
        self._mark_up()
        if report.files:
            log.info("monitoring: replayed %d rows from %d spool files", report.rows, report.files)
        with self._cond:
            self._replayed += report.rows
            self._replay_clean = max(self._replay_clean, asked)
            self._cond.notify_all()


def _close_live_writers() -> None:
    """Orderly interpreter exit: queued rows reach the database or the spool, not the void."""
    for writer in list(_LIVE_WRITERS):
        with contextlib.suppress(Exception):
            writer.close(timeout=5.0)


atexit.register(_close_live_writers)
