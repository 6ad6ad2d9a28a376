"""The drift record: what the gate saw, explained column by column, in a worker process.

The gate itself is ``genreops.monitoring.novelty`` (a per-request
 conformal score and an online CUSUM in
the predictor, cheap enough for the request path). This module keeps the record people and
the drift views read: the predictor's ``DriftMonitor.submit()`` hands each request's feature
vector, with the gate's judgement of it, to a feeder thread that writes them to a worker
process
(``python -m genreops.monitoring.drift``) and returns at once. The worker keeps a rolling window
and, every ``every`` requests once the window holds ``min_samples`` (and whenever the gate
opens or closes), runs Evidently's per-column stat tests on the window against the training
reference and records the test with the gate's state in ``drift_tests.jsonl`` and
``state.json``. Evidently's reports cost seconds, so they never run on the request path.

Wire format on the worker's stdin: frames of a 4-byte little-endian payload length followed by
the payload, ``rows x (n_features + 3)`` little-endian float32 values: each row's features,
then its novelty score, detector statistic and gate (0 or 1): ``NOVELTY_FIELDS``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

import genreops
from genreops.core.errors import GenreopsError
from genreops.core.files import atomic_write
from genreops.core.processes import log_tail, stop_process
from genreops.core.settings import default

log = logging.getLogger(__name__)

REFERENCE_FILE = "reference.parquet"  # the training reference beside each published predictor
STATE_FILE = "state.json"
TESTS_FILE = "drift_tests.jsonl"
LOG_FILE = "worker.log"
WINDOWS_DIR = "windows"  # each test's window, for the drift views
WINDOWS_KEPT = 200
FRAME_HEADER = struct.Struct("<I")
FRAME_DTYPE = np.dtype("<f4")
MAX_FRAME_BYTES = 64 * 1024 * 1024  # a larger length prefix means a corrupt stream
_READ_BYTES = 1 << 20
MIN_ROWS = 2  # fewest rows a two-sample test can use
DEFAULT_METHOD = "ks"
NO_FINITE = "no finite values"
# what the gate said of each row, after its features in a frame (see the module docstring)
NOVELTY_FIELDS = ("ood_score", "drift_statistic", "gate_open")
_HEARTBEAT_SECONDS = 1.0  # how often an idle worker refreshes samples_seen in state.json
_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)*)?")


class DriftError(GenreopsError):
    """Drift settings, data or the drift worker cannot be used as asked."""


# ------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class DriftSettings:
    """How often the record is written and on how many recent requests.

    ``method`` is Evidently's stat test for the numerical features; ``None`` lets Evidently
    choose, which switches to Wasserstein distance (threshold 0.1) for references of more
    than 1,000 rows and then flags a third of the columns of a clean 200-row window.
    """

    window: int = default("drift_window")
    min_samples: int = default("drift_min_samples")
    every: int = default("drift_test_every")
    method: str | None = DEFAULT_METHOD

    def __post_init__(self) -> None:
        problems = []
        if self.window < MIN_ROWS:
            problems.append(f"window={self.window} (needs >= {MIN_ROWS})")
        if not MIN_ROWS <= self.min_samples <= self.window:
            problems.append(f"min_samples={self.min_samples} (needs {MIN_ROWS}..window)")
        if self.every < 1:
            problems.append(f"every={self.every} (needs >= 1)")
        if self.method is not None and not self.method.strip():
            problems.append("method='' (name an Evidently stat test, or None for its choice)")
        if problems:
            raise DriftError("invalid drift settings: " + "; ".join(problems))

    def to_argv(self) -> list[str]:
        """The worker's command-line options for these settings."""
        return [
            "--window", str(self.window),
            "--min-samples", str(self.min_samples),
            "--every", str(self.every),
            "--method", self.method or "auto",
        ]  # fmt: skip


# ------------------------------------------------------------------------------- drift test


@dataclass(frozen=True)
class DriftTestResult:
    """One drift test; ``to_dict()`` is what ``drift_tests.jsonl`` and the stores record."""

    test_id: str
    tested_at: str
    window_size: int
    reference_size: int
    drift_share: float
    drifted_share: float
    dataset_drift: bool
    column_scores: dict[str, dict[str, Any]]
    seconds: float

    @property
    def drifted_columns(self) -> list[str]:
        return [name for name, score in self.column_scores.items() if score["drifted"]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftTestResult:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def summary(self) -> dict[str, Any]:
        """Everything but the per-column scores (small enough for state.json)."""
        out = {k: v for k, v in self.to_dict().items() if k != "column_scores"}
        out["drifted_columns"] = self.drifted_columns
        out["columns"] = len(self.column_scores)
        return out


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [
        str(c)
        for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    ]


def _numeric_block(frame: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DriftError(f"{what} lacks {len(missing)} drift column(s): {_names(missing)}")
    block = frame[columns]
    numeric = set(numeric_columns(block))
    wrong = [c for c in columns if c not in numeric]
    if wrong:
        raise DriftError(f"{what} has non-numeric drift column(s): {_names(wrong)}")
    values = block.to_numpy(dtype=np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan  # Evidently drops missing values; inf breaks charts
    return pd.DataFrame(values, columns=columns)


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def run_drift_test(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    drift_share: float = 0.5,
    columns: Sequence[str] | None = None,
    method: str | None = DEFAULT_METHOD,
    engine: str = "stattests",
) -> DriftTestResult:
    """Test ``columns`` (default: every numeric reference column) for drift with Evidently.

    ``engine="stattests"`` calls, per column, the stat test Evidently's DataDriftPreset would
    pick (``method``, its default threshold, missing values dropped): the same scores and
    verdicts in ~0.1 s. ``engine="report"`` runs the whole preset, which also builds a chart
    per column and costs 10-30 s of CPU: only for reports people look at, never for the gate.
    Dataset drift means the share of drifted columns is >= ``drift_share`` (Evidently's own
    rule). Non-finite values count as missing. A column with no finite value in the window is
    reported drifted (method ``"no finite values"``, score None) without asking Evidently.
    The first call imports Evidently (~10 s).
    """
    started = time.perf_counter()
    scorers = {"stattests": _stattest_scores, "report": _evidently_scores}
    if engine not in scorers:
        raise DriftError(f"engine={engine!r}: use one of {', '.join(scorers)}")
    if not 0.0 < drift_share <= 1.0:
        raise DriftError(f"drift_share={drift_share} must be in (0, 1]")
    cols = [str(c) for c in columns] if columns is not None else numeric_columns(reference)
    if not cols:
        raise DriftError("no numeric columns to test for drift")
    ref = _numeric_block(reference, cols, "drift reference")
    cur = _numeric_block(current, cols, "drift window")
    if len(ref) < MIN_ROWS or len(cur) < MIN_ROWS:
        raise DriftError(
            f"a drift test needs >= {MIN_ROWS} rows on each side; reference has {len(ref)}, "
            f"window has {len(cur)}"
        )
    thin = [c for c in cols if int(ref[c].notna().sum()) < MIN_ROWS]
    if thin:
        raise DriftError(f"drift reference has < {MIN_ROWS} finite values in: {_names(thin)}")

    scores: dict[str, dict[str, Any]] = {}
    empty = [c for c in cols if not cur[c].notna().any()]
    for c in empty:
        scores[c] = {"score": None, "method": NO_FINITE, "threshold": None, "drifted": True}
    testable = [c for c in cols if c not in scores]
    if testable:
        scores.update(scorers[engine](ref[testable], cur[testable], testable, method))
    ordered = {c: scores[c] for c in cols}
    drifted = sum(1 for s in ordered.values() if s["drifted"])
    share = drifted / len(cols)
    return DriftTestResult(
        test_id=uuid.uuid4().hex,
        tested_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        window_size=len(cur),
        reference_size=len(ref),
        drift_share=float(drift_share),
        drifted_share=share,
        dataset_drift=share >= drift_share,
        column_scores=ordered,
        seconds=round(time.perf_counter() - started, 4),
    )


def _import_evidently() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import evidently
        from evidently.presets import DataDriftPreset  # noqa: F401
    return evidently


def _stattest_scores(
    ref: pd.DataFrame, cur: pd.DataFrame, cols: list[str], method: str | None
) -> dict[str, dict[str, Any]]:
    """Each column through the Evidently stat test its DataDriftPreset would run, no charts."""
    _import_evidently()
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    out: dict[str, dict[str, Any]] = {}
    for c in cols:
        reference, current = ref[c].dropna(), cur[c].dropna()
        try:
            test = get_stattest(reference, current, ColumnType.Numerical, method)
        except ValueError as exc:
            raise DriftError(f"Evidently stat test {method!r} is unusable here: {exc}") from exc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant columns make scipy warn
            result = test(reference, current, ColumnType.Numerical, None)
        score = float(result.drift_score)
        out[c] = {
            "score": score if math.isfinite(score) else None,
            "method": test.display_name,
            "threshold": float(result.actual_threshold),
            "drifted": bool(result.drifted),
        }
    return out


def evidently_report(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    cols: list[str],
    method: str | None,
    timestamp: datetime | None = None,
) -> Any:
    """Evidently's DataDriftPreset snapshot (with a chart per column: seconds of CPU)."""
    _import_evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=cols)
    # include_tests: each column's pass/fail verdict, so "drifted" never depends on guessing
    # whether the method's score is a p-value (low = drift) or a distance (high = drift).
    report = Report([DataDriftPreset(columns=cols, method=method)], include_tests=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant columns make numpy warn inside Evidently
        try:
            return report.run(
                current_data=Dataset.from_pandas(cur, data_definition=definition),
                reference_data=Dataset.from_pandas(ref, data_definition=definition),
                timestamp=timestamp,
            )
        except (ValueError, KeyError) as exc:
            raise DriftError(f"Evidently could not test drift (method {method!r}): {exc}") from exc


def _evidently_scores(
    ref: pd.DataFrame, cur: pd.DataFrame, cols: list[str], method: str | None
) -> dict[str, dict[str, Any]]:
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    _import_evidently()
    display: dict[str, str] = {}  # Evidently reports a method it chose by display name
    if method is not None:
        try:
            display[method] = get_registered_stattest(method, ColumnType.Numerical).display_name
        except ValueError as exc:
            raise DriftError(f"Evidently stat test {method!r} is unusable here: {exc}") from exc

    data = evidently_report(ref, cur, cols, method).dict()
    values: dict[str, tuple[Any, Any, Any]] = {}
    for metric in data.get("metrics", []):
        config = metric.get("config", {})
        if str(config.get("type", "")).endswith(":ValueDrift"):
            values[str(config["column"])] = (
                metric.get("value"),
                config.get("method"),
                config.get("threshold"),
            )
    verdicts: dict[str, bool] = {}
    for test in data.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if str(params.get("type", "")).endswith(":ValueDrift"):
            status = getattr(test.get("status"), "value", test.get("status"))
            verdicts[str(params["column"])] = str(status).upper() == "FAIL"
    out: dict[str, dict[str, Any]] = {}
    for c in cols:
        if c not in values:
            raise DriftError(f"Evidently returned no drift score for column {c!r}")
        score, name, threshold = values[c]
        score_f = float(score) if score is not None else math.nan
        threshold_f = float(threshold) if threshold is not None else math.nan
        name = display.get(str(name), str(name))
        if c in verdicts:
            drifted = verdicts[c]
        else:  # no test verdict: p-values drift when low, distances when high
            is_p = "p_value" in name.lower()
            drifted = score_f < threshold_f if is_p else score_f >= threshold_f
        out[c] = {
            "score": score_f if math.isfinite(score_f) else None,
            "method": name,
            "threshold": threshold_f if math.isfinite(threshold_f) else None,
            "drifted": bool(drifted),
        }
    return out


# ----------------------------------------------------------------------------------- frames


def encode_frame(features: np.ndarray) -> bytes:
    """One frame for the worker: a vector ``[n_features]`` or a batch ``[rows, n_features]``."""
    payload = np.ascontiguousarray(features, dtype=FRAME_DTYPE).tobytes()
    return FRAME_HEADER.pack(len(payload)) + payload


class _Window:
    """The rolling window, filled by the reader thread; it marks when a test is due.

    A test falls due every ``every`` rows once ``min_samples`` are in, and at every row where
    the gate opens or closes. A due test takes a copy of the window at that moment. If another
    falls due while a test is still running, the newer copy replaces the waiting one (counted
    in ``coalesced``), unless the waiting one marks a gate change: those are never lost.
    """

    def __init__(self, n_features: int, settings: DriftSettings, seen: int = 0) -> None:
        self.n_features = n_features
        self.width = n_features + len(NOVELTY_FIELDS)
        self.settings = settings
        self.rows: deque[np.ndarray] = deque(maxlen=settings.window)
        self.cond = threading.Condition()
        self.samples_seen = seen
        self.last_due = seen
        self.due: deque[tuple[np.ndarray, int, bool]] = deque()  # rows, seen, gate changed
        self.coalesced = 0
        self.rejected_frames = 0
        self.gate_open = False
        self.eof = False
        self.error: str | None = None

    def add(self, values: np.ndarray) -> None:
        s = self.settings
        gate_column = self.width - 1
        with self.cond:
            for row in values:
                self.rows.append(row)
                self.samples_seen += 1
                gate = bool(row[gate_column] > 0.5)
                changed, self.gate_open = gate != self.gate_open, gate
                periodic = (
                    len(self.rows) >= s.min_samples and self.samples_seen - self.last_due >= s.every
                )
                if changed or periodic:
                    if self.due and not self.due[-1][2]:
                        self.due.pop()
                        self.coalesced += 1
                    self.due.append((np.array(self.rows), self.samples_seen, changed))
                    self.last_due = self.samples_seen
            if self.due:
                self.cond.notify_all()

    def read(self, stream: BinaryIO) -> None:
        """Reader thread: drain ``stream`` into the window until EOF, so the pipe never fills.

        Takes whatever is available per read (up to 1 MiB): while a report holds the GIL each
        read waits up to the switch interval for it, so frame-by-frame reads would take in only
        a few hundred frames a second.
        """
        read_some = getattr(stream, "read1", stream.read)
        buffer = bytearray()
        try:
            while True:
                chunk = read_some(_READ_BYTES)
                if not chunk:
                    if buffer:
                        log.warning("stdin ended inside a frame; %d bytes dropped", len(buffer))
                    return
                buffer += chunk
                blocks, used = self._frames(buffer)
                del buffer[:used]
                if blocks:
                    self.add(blocks[0] if len(blocks) == 1 else np.concatenate(blocks))
        except _CorruptStreamError as exc:
            self.error = str(exc)
        except (OSError, ValueError) as exc:  # a closed or broken stdin ends the worker too
            self.error = f"reading stdin failed: {exc}"
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def _frames(self, buffer: bytearray) -> tuple[list[np.ndarray], int]:
        """The complete frames at the start of ``buffer`` and how many bytes they take."""
        row_bytes = self.width * FRAME_DTYPE.itemsize
        blocks: list[np.ndarray] = []
        offset = 0
        while len(buffer) - offset >= FRAME_HEADER.size:
            (size,) = FRAME_HEADER.unpack_from(buffer, offset)
            if size > MAX_FRAME_BYTES:
                raise _CorruptStreamError(
                    f"frame of {size} bytes (limit {MAX_FRAME_BYTES}): corrupt stream"
                )
            start = offset + FRAME_HEADER.size
            if start + size > len(buffer):
                break
            if size == 0 or size % row_bytes:
                self.rejected_frames += 1
                if self.rejected_frames <= 5:
                    log.warning(
                        "dropped a frame of %d bytes: not whole rows of %d float32 values",
                        size,
                        self.width,
                    )
            else:
                count = size // FRAME_DTYPE.itemsize  # copied: the buffer is reused
                values = np.frombuffer(buffer, dtype=FRAME_DTYPE, count=count, offset=start)
                blocks.append(values.reshape(-1, self.width).copy())
            offset = start + size
        return blocks, offset


class _CorruptStreamError(Exception):
    pass


# ----------------------------------------------------------------------------------- worker


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
    ref = _numeric_block(reference, cols, "drift reference")  # refuse a bad reference now
    if len(ref) < MIN_ROWS:
        raise DriftError(f"drift reference has {len(ref)} rows; needs >= {MIN_ROWS}")

    previous = (read_state(directory) if resume else None) or {}
    tests_run = int(previous.get("tests_run", 0))
    last_test: dict[str, Any] | None = previous.get("last_test")
    window = _Window(len(cols), settings, int(previous.get("samples_seen", 0)))
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
    write_state()
    _import_evidently()  # the slow part of the first test, done before any is due
    ready = True
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
    what opens the gate; Evidently's per-column share stays in ``drifted_share``.
    """
    score, statistic, gate = rows[:, -len(NOVELTY_FIELDS) :].T
    newest = float(statistic[-1])
    return {
        "dataset_drift": newest >= 1.0,
        "gate_open": bool(gate[-1] > 0.5),
        "statistic": round(newest, 6),
        "ood_share": round(float(np.mean(score > 1.0)), 6),  # a score over 1 is an OOD flag
    }


# ---------------------------------------------------------------------------------- columns


def reference_columns(reference_path: str | Path, *, from_reference: bool = False) -> list[str]:
    """The drift columns: the feature schema's names, or every numeric reference column.

    Reads only the Parquet schema, so a monitor can size its frames without loading data.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(reference_path)
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise DriftError(f"drift reference {path}: cannot read a Parquet schema ({exc})") from exc
    numeric = [
        f.name
        for f in schema
        if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
        and not f.name.startswith("__index_level_")
    ]
    if from_reference:
        if not numeric:
            raise DriftError(f"drift reference {path} has no numeric columns")
        return numeric
    from genreops.data.features import FEATURE_NAMES

    missing = [c for c in FEATURE_NAMES if c not in numeric]
    if missing:
        raise DriftError(
            f"drift reference {path} lacks {len(missing)} numeric feature column(s) of the "
            f"schema ({_names(missing)}); use --columns-from-reference to test its own columns"
        )
    return list(FEATURE_NAMES)


def read_reference(reference_path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    try:
        return pd.read_parquet(reference_path, columns=list(columns))
    except (OSError, ValueError, KeyError) as exc:
        raise DriftError(f"drift reference {reference_path}: cannot read ({exc})") from exc


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
    parser.add_argument("--method", default=DEFAULT_METHOD, help="Evidently stat test, or auto")
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


# ---------------------------------------------------------------------------------- monitor


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


if __name__ == "__main__":
    sys.exit(main())
