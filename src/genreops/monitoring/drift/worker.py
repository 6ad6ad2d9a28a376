"""The drift worker process: ``python -m genreops.monitoring.drift``.

It reads frames from stdin into a rolling window and, every ``every`` requests once the
window holds ``min_samples`` (and whenever the gate opens or closes), tests the window against
the training reference, appends the test with the gate's state to ``drift_tests.jsonl``,
keeps the window for the drift views and rewrites ``state.json``. It exits on stdin EOF.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from genreops.core.files import atomic_write
from genreops.monitoring.drift.frames import FRAME_DTYPE, NOVELTY_FIELDS, RollingWindow
from genreops.monitoring.drift.record import (
    DriftTestResult,
    numeric_block,
    numeric_columns,
    read_reference,
    reference_columns,
    run_drift_test,
)
from genreops.monitoring.drift.settings import (
    DEFAULT_METHOD,
    MIN_ROWS,
    STATE_FILE,
    TESTS_FILE,
    WINDOWS_DIR,
    WINDOWS_KEPT,
    DriftError,
    DriftSettings,
)

log = logging.getLogger(__name__)

_HEARTBEAT_SECONDS = 1.0  # how often an idle worker refreshes samples_seen in state.json


def _keep_window(folder: Path, test_id: str, rows: Any) -> None:
    """Keep the tested window for the drift views (the newest ``WINDOWS_KEPT`` of them)."""
    try:
        folder.mkdir(exist_ok=True)
        np.save(folder / f"{test_id}.npy", np.asarray(rows, dtype=FRAME_DTYPE))
        kept = sorted(folder.glob("*.npy"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-WINDOWS_KEPT]:
            old.unlink(missing_ok=True)
    except OSError as error:  # the views lose a window; the gate must not stop
        log.warning("cannot keep the window of drift test %s: %s", test_id, error)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def read_state(state_dir: str | Path) -> dict[str, Any] | None:
    """The worker's ``state.json``, or None when absent or unreadable."""
    try:
        data = json.loads((Path(state_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_worker(
    stdin: BinaryIO,
    reference: pd.DataFrame,
    state_dir: str | Path,
    settings: DriftSettings,
    on_result: Callable[[DriftTestResult], None] | None = None,
    *,
    columns: Sequence[str] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Test ``stdin``'s frames against ``reference`` until EOF; returns the final state.

    ``columns`` default to every numeric reference column; frames carry them in that order,
    then ``NOVELTY_FIELDS``. ``on_result`` sees each result after it is recorded (its errors
    are logged, not raised). ``resume`` keeps the test and sample counts of an earlier
    ``state.json`` (a restarted worker). On EOF the tests already due still run, then the
    function returns.
    """
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    cols = [str(c) for c in columns] if columns is not None else numeric_columns(reference)
    ref = numeric_block(reference, cols, "drift reference")  # refuse a bad reference now
    if len(ref) < MIN_ROWS:
        raise DriftError(f"drift reference has {len(ref)} rows; needs >= {MIN_ROWS}")

    previous = (read_state(directory) if resume else None) or {}
    tests_run = int(previous.get("tests_run", 0))
    last_test: dict[str, Any] | None = previous.get("last_test")
    window = RollingWindow(len(cols), settings, int(previous.get("samples_seen", 0)))
    window.gate_open = bool(previous.get("gate_open", False))
    errors = 0
    started_at = _now()
    ready = False
    last_error: str | None = None

    def write_state() -> None:
        with window.cond:
            counts = {
                "gate_open": window.gate_open,
                "samples_seen": window.samples_seen,
                "window_size": len(window.rows),
                "frames_rejected": window.rejected_frames,
                "tests_coalesced": window.coalesced,
            }
        state = {
            **counts,
            "tests_run": tests_run,
            "last_test": last_test,
            "updated_at": _now(),
            "test_errors": errors,
            "last_error": last_error,
            "ready": ready,
            "worker_pid": os.getpid(),
            "started_at": started_at,
            "n_features": len(cols),
            "settings": asdict(settings),
        }
        atomic_write(directory / STATE_FILE, json.dumps(state), durable=True)

    reader = threading.Thread(target=window.read, args=(stdin,), name="drift-reader", daemon=True)
    reader.start()
    ready = True  # the reference is read and checked, the tests need no warm-up
    write_state()
    log.info("drift worker ready: %d columns, reference %d rows, %s", len(cols), len(ref), settings)
    written_seen = -1
    next_heartbeat = time.monotonic() + _HEARTBEAT_SECONDS
    while True:
        with window.cond:
            if not window.due and not window.eof:
                window.cond.wait(timeout=max(0.0, next_heartbeat - time.monotonic()))
            job = window.due.popleft() if window.due else None
            finished = window.eof and job is None
            seen_now = window.samples_seen
        if job is not None:
            rows, due_at, changed = job
            try:
                result = run_drift_test(
                    ref, pd.DataFrame(rows[:, : len(cols)], columns=cols), columns=cols,
                    method=settings.method,
                )  # fmt: skip
            except Exception as exc:  # a failed test must not stop the record
                errors += 1
                last_error = f"{type(exc).__name__}: {exc}"
                log.exception("drift test on %d samples failed", len(rows))
            else:
                tests_run += 1
                gate = _gate_summary(rows)
                last_test = {**result.summary(), **gate, "samples_seen": due_at}
                record = {**result.to_dict(), **gate, "samples_seen": due_at}
                _keep_window(directory / WINDOWS_DIR, result.test_id, rows[:, : len(cols)])
                with (directory / TESTS_FILE).open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                log.log(
                    logging.WARNING if changed else logging.INFO,
                    "drift test %d at request %d: gate %s (statistic %.2f of its alarm level, "
                    "%.0f%% of the window out of distribution); %.2f of %d columns drifted "
                    "(KS) in %.2f s",
                    tests_run,
                    due_at,
                    ("opened" if gate["gate_open"] else "closed")
                    if changed
                    else ("open" if gate["gate_open"] else "closed"),
                    gate["statistic"],
                    100 * gate["ood_share"],
                    result.drifted_share,
                    len(cols),
                    result.seconds,
                )
                if on_result is not None:
                    try:
                        on_result(result)
                    except Exception:
                        log.exception("on_result failed for drift test %s", result.test_id)
        if (
            job is not None
            or finished
            or (time.monotonic() >= next_heartbeat and seen_now != written_seen)
        ):
            write_state()
            written_seen = seen_now
        if time.monotonic() >= next_heartbeat:
            next_heartbeat = time.monotonic() + _HEARTBEAT_SECONDS
        if finished:
            break
    reader.join(timeout=1.0)
    if window.error:
        raise DriftError(window.error)
    return read_state(directory) or {}


def _gate_summary(rows: np.ndarray) -> dict[str, Any]:
    """What the gate said of a tested window: its newest row's verdict, the window's OOD share.

    ``dataset_drift`` is the detector's alarm (its statistic at the alarm level), which is
    what opens the gate; the per-column tests' share stays in ``drifted_share``.
    """
    score, statistic, gate = rows[:, -len(NOVELTY_FIELDS) :].T
    newest = float(statistic[-1])
    return {
        "dataset_drift": newest >= 1.0,
        "gate_open": bool(gate[-1] > 0.5),
        "statistic": round(newest, 6),
        "ood_share": round(float(np.mean(score > 1.0)), 6),  # a score over 1 is an OOD flag
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m genreops.monitoring.drift``: the worker; exits 0 on stdin EOF, 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m genreops.monitoring.drift",
        description="Record drift tests of feature frames read from stdin against a reference.",
    )
    parser.add_argument("--reference", required=True, help="Parquet file of training features")
    parser.add_argument("--state-dir", required=True, help="state.json, drift_tests.jsonl here")
    parser.add_argument("--window", type=int, default=DriftSettings.window)
    parser.add_argument("--min-samples", type=int, default=DriftSettings.min_samples)
    parser.add_argument("--every", type=int, default=DriftSettings.every)
    parser.add_argument(
        "--method", default=DEFAULT_METHOD, help="per-column stat test (see drift.stats), or auto"
    )
    parser.add_argument(
        "--columns-from-reference",
        action="store_true",
        help="test every numeric reference column instead of the feature schema's",
    )
    parser.add_argument("--resume", action="store_true", help="keep the counts of state.json")
    parser.add_argument("--nice", type=int, default=10, help="lower the worker's CPU priority")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s drift[%(process)d] %(message)s",
    )
    if args.nice > 0:
        with contextlib.suppress(OSError):
            os.nice(args.nice)
    try:
        settings = DriftSettings(
            window=args.window,
            min_samples=args.min_samples,
            every=args.every,
            method=None if args.method == "auto" else args.method,
        )
        columns = reference_columns(args.reference, from_reference=args.columns_from_reference)
        reference = read_reference(args.reference, columns)
        state = run_worker(
            sys.stdin.buffer,
            reference,
            args.state_dir,
            settings,
            columns=columns,
            resume=args.resume,
        )
    except DriftError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130
    log.info(
        "stdin closed after %s samples and %s tests; exiting",
        state.get("samples_seen"),
        state.get("tests_run"),
    )
    return 0
