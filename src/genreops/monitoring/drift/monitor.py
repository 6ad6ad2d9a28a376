"""The predictor's side of the drift record: ``DriftMonitor`` supervises the worker process
and feeds it frames from a thread, so the request path never waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import genreops
from genreops.core.processes import log_tail, stop_process
from genreops.monitoring.drift.frames import (
    FRAME_DTYPE,
    FRAME_HEADER,
    NOVELTY_FIELDS,
    encode_frame,
)
from genreops.monitoring.drift.record import reference_columns
from genreops.monitoring.drift.settings import (
    LOG_FILE,
    STATE_FILE,
    TESTS_FILE,
    DriftError,
    DriftSettings,
)
from genreops.monitoring.drift.worker import read_state

log = logging.getLogger(__name__)

_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)*)?")


def find_python(python: str | Path | None = None) -> str:
    """The interpreter for the worker.

    Inside Triton's Python backend ``sys.executable`` is the backend stub, not Python, so it
    is used only when it looks like one; then ``python3`` on PATH.
    """
    if python is not None:
        path = Path(python)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise DriftError(f"drift worker python {path} is not an executable file")
        return str(path)
    exe = sys.executable
    if exe and _PYTHON_NAME.fullmatch(Path(exe).name) and os.access(exe, os.X_OK):
        return exe
    found = shutil.which("python3")
    if found is None:
        raise DriftError(
            f"no Python for the drift worker: sys.executable is {exe!r} and python3 is not on "
            "PATH; pass python=..."
        )
    return found


@dataclass
class _Counters:
    submitted: int = 0
    skipped: int = 0
    dropped: int = 0
    restarts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class DriftMonitor:
    """The predictor's side of the record: feeds the worker, reads its state cheaply.

    ``submit()`` never blocks: vectors go to a bounded in-memory queue that a feeder thread
    writes to the worker's stdin every ``feed_interval`` seconds (polling, so a submit wakes no
    thread). When ``queue_size`` submissions are waiting (the worker is slow to read, stalled
    or restarting) further vectors are skipped for the record and counted in ``skipped`` (the
    gate itself, in the predictor, sees every request). Vectors lost because the worker died,
    or still waiting at ``stop()``, are counted in ``dropped``. ``state()`` re-reads
    ``state.json`` at most every ``refresh_interval`` seconds, otherwise it returns a cached
    value.

    The first ``start()`` begins afresh (the previous ``state.json`` is removed); a worker
    that dies is restarted with ``--resume`` by the feeder thread when the next vectors
    arrive, at most once per ``restart_interval`` seconds, doubling up to
    ``max_restart_interval`` while restarts keep failing.
    """

    def __init__(
        self,
        reference_path: str | Path,
        state_dir: str | Path,
        settings: DriftSettings | None = None,
        python: str | Path | None = None,
        *,
        columns_from_reference: bool = False,
        queue_size: int = 1024,
        feed_interval: float = 0.02,
        restart_interval: float = 5.0,
        max_restart_interval: float = 300.0,
        refresh_interval: float = 0.2,
        stop_timeout: float = 5.0,
    ) -> None:
        self.reference_path = Path(reference_path)
        self.state_dir = Path(state_dir)
        self.settings = settings or DriftSettings()
        self.python = python
        self.columns_from_reference = columns_from_reference
        self.restart_interval = restart_interval
        self.max_restart_interval = max_restart_interval
        self.refresh_interval = refresh_interval
        self.stop_timeout = stop_timeout
        self.columns: list[str] = []
        self._python = ""
        self.queue_size = queue_size
        self.feed_interval = feed_interval
        self._pending: deque[bytes] = deque()
        self._stopping = threading.Event()
        self._counts = _Counters()
        self._proc: subprocess.Popen[bytes] | None = None
        self._proc_lock = threading.Lock()
        self._started_at = 0.0
        self._next_start = 0.0
        self._delay = restart_interval
        self._feeder: threading.Thread | None = None
        self._running = False
        self._state: dict[str, Any] = {}
        self._checked_at = -math.inf
        self._file_key: tuple[int, int] | None = None

    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_FILE

    @property
    def tests_path(self) -> Path:
        return self.state_dir / TESTS_FILE

    # -- lifecycle

    def start(self) -> None:
        """Spawn the worker and the feeder thread; returns before the worker is ready."""
        if self._running:
            return
        self._python = find_python(self.python)
        if not self.reference_path.is_file():
            raise DriftError(f"drift reference {self.reference_path} does not exist")
        self.columns = reference_columns(
            self.reference_path, from_reference=self.columns_from_reference
        )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()  # a fresh gate: no verdict from an earlier server run
        self._state, self._file_key = {}, None
        self._checked_at = -math.inf
        self._delay = self.restart_interval
        with self._proc_lock:
            self._spawn(resume=False)
        self._running = True
        self._stopping = threading.Event()
        self._feeder = threading.Thread(target=self._feed, name="drift-feeder", daemon=True)
        self._feeder.start()

    def stop(self, timeout: float | None = None) -> None:
        """Close the worker's stdin, wait for it to exit (``stop_timeout``), then kill it."""
        wait = self.stop_timeout if timeout is None else timeout
        self._running = False
        self._stopping.set()
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            feeder.join(timeout=1.0)  # longer only while it writes to a stalled worker
        with self._proc_lock:
            proc = self._proc
            if proc is None:
                return
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                log.info("drift worker %d still busy after %.0f s; stopping it", proc.pid, wait)
                stop_process(proc, timeout=5.0)
        if feeder is not None:
            feeder.join(timeout=5.0)
        self._drop_pending()

    def __enter__(self) -> DriftMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request path

    def submit(self, features: np.ndarray, judgement: np.ndarray) -> None:
        """Queue ``[batch, n_features]`` vectors with the gate's ``[batch, 3]`` judgement of
        them (``NOVELTY_FIELDS``) for the record.

        Never blocks; rows are skipped (counted) when the queue is full or the monitor is not
        running. Raises DriftError when the shapes do not fit the reference's columns.
        """
        values = np.asarray(features, dtype=FRAME_DTYPE)
        extra = np.asarray(judgement, dtype=FRAME_DTYPE)
        if values.ndim == 1:
            values, extra = values[None, :], extra.reshape(1, -1)
        rows = values.shape[0] if values.ndim == 2 else 0
        if not self._running:
            with self._counts.lock:
                self._counts.skipped += rows
            return
        if (
            values.ndim != 2
            or values.shape[1] != len(self.columns)
            or extra.shape != (rows, len(NOVELTY_FIELDS))
        ):
            raise DriftError(
                f"drift monitor expects [batch, {len(self.columns)}] features and "
                f"[batch, {len(NOVELTY_FIELDS)}] judgements, got shapes "
                f"{list(np.shape(features))} and {list(np.shape(judgement))}"
            )
        if rows == 0:
            return
        if len(self._pending) >= self.queue_size:
            with self._counts.lock:
                self._counts.skipped += rows
            return
        self._pending.append(encode_frame(np.hstack([values, extra])))  # thread-safe append
        with self._counts.lock:
            self._counts.submitted += rows

    def state(self) -> dict[str, Any]:
        """The worker's last state.json plus this side's view (liveness, counters)."""
        if time.monotonic() - self._checked_at >= self.refresh_interval:
            self._refresh()
        out = dict(self._state)
        out.setdefault("gate_open", False)
        out.setdefault("tests_run", 0)
        proc = self._proc
        alive = proc is not None and proc.poll() is None
        with self._counts.lock:
            out.update(
                worker_alive=alive,
                worker_pid=proc.pid if proc is not None else None,
                worker_exit_code=None if alive or proc is None else proc.returncode,
                submitted=self._counts.submitted,
                skipped=self._counts.skipped,
                dropped=self._counts.dropped,
                restarts=self._counts.restarts,
                queued=len(self._pending),
            )
        return out

    # -- internals

    def _refresh(self) -> None:
        self._checked_at = time.monotonic()
        try:
            info = self.state_path.stat()
        except OSError:
            if self._file_key is not None:
                self._file_key, self._state = None, {}
            return
        key = (info.st_mtime_ns, info.st_size)
        if key == self._file_key:
            return
        data = read_state(self.state_dir)
        if data is not None:  # keep the last good state on a torn or odd read
            self._file_key, self._state = key, data

    def _spawn(self, *, resume: bool) -> None:
        """Start a worker; the caller holds ``_proc_lock``."""
        argv = [
            self._python,
            "-m",
            "genreops.monitoring.drift",
            "--reference", str(self.reference_path),
            "--state-dir", str(self.state_dir),
            *self.settings.to_argv(),
        ]  # fmt: skip
        if self.columns_from_reference:
            argv.append("--columns-from-reference")
        if resume:
            argv.append("--resume")
        env = dict(os.environ)
        package_root = str(Path(genreops.__file__).resolve().parents[1])  # the genreops in use
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, "1")  # a report must not take every core from serving
        env.setdefault("DO_NOT_TRACK", "true")
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                bufsize=0,
                start_new_session=True,  # a terminal's Ctrl-C must not hit it; EOF stops it
            )
        self._started_at = time.monotonic()
        self._next_start = self._started_at + self._delay
        log.info("drift worker started (pid %d), log %s", self._proc.pid, self.log_path)

    def _worker(self) -> subprocess.Popen[bytes] | None:
        """The live worker, restarting a dead one when the backoff allows; None meanwhile."""
        with self._proc_lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                return proc
            if not self._running:
                return None
            now = time.monotonic()
            if now < self._next_start:
                return None
            if proc is not None:
                lived = now - self._started_at
                self._delay = (
                    self.restart_interval
                    if lived >= self.max_restart_interval
                    else min(self._delay * 2, self.max_restart_interval)
                )
                log.warning(
                    "drift worker %d exited with code %s after %.0f s; restarting. Log %s:\n%s",
                    proc.pid,
                    proc.returncode,
                    lived,
                    self.log_path,
                    log_tail(self.log_path, 10),
                )
                if proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
            try:
                self._spawn(resume=True)
            except OSError as exc:
                self._next_start = now + self._delay
                log.error("cannot restart the drift worker: %s", exc)
                return None
            with self._counts.lock:
                self._counts.restarts += 1
            return self._proc

    def _feed(self) -> None:
        stopping = self._stopping
        while not stopping.wait(self.feed_interval):
            frames: list[bytes] = []
            with contextlib.suppress(IndexError):
                while len(frames) < 1024:
                    frames.append(self._pending.popleft())
            if not frames:
                continue
            proc = self._worker()
            if not self._write(proc, b"".join(frames)):
                with self._counts.lock:
                    self._counts.dropped += self._rows_in(frames)

    def _rows_in(self, frames: list[bytes]) -> int:
        width = (len(self.columns) + len(NOVELTY_FIELDS)) * FRAME_DTYPE.itemsize
        return sum((len(f) - FRAME_HEADER.size) // width for f in frames)

    @staticmethod
    def _write(proc: subprocess.Popen[bytes] | None, data: bytes) -> bool:
        if proc is None or proc.stdin is None:
            return False
        view = memoryview(data)
        try:
            while view:
                written = proc.stdin.write(view)
                if written is None:  # only for non-blocking pipes, which this is not
                    return False
                view = view[written:]
        except (OSError, ValueError):  # broken pipe: the worker died; closed: stopping
            return False
        return True

    def _drop_pending(self) -> None:
        frames: list[bytes] = []
        with contextlib.suppress(IndexError):
            while True:
                frames.append(self._pending.popleft())
        if frames:
            with self._counts.lock:
                self._counts.dropped += self._rows_in(frames)
