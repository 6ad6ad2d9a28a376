"""The drift record: what the gate saw, explained column by column, in a worker process.

The gate itself is ``genreops.monitoring.novelty`` (a per-request conformal score and an
online CUSUM in the predictor, cheap enough for the request path). This package keeps the
record people and the drift views read: the predictor's ``DriftMonitor.submit()`` hands each
request's feature vector, with the gate's judgement of it, to a feeder thread that writes them
to a worker process (``python -m genreops.monitoring.drift``) and returns at once. The worker
keeps a rolling window and, every ``every`` requests once the window holds ``min_samples``
(and whenever the gate opens or closes), runs per-column two-sample tests of the window
against the training reference (scipy; the tests Evidently's drift preset runs) and records
them with the gate's state in ``drift_tests.jsonl`` and ``state.json``. Nothing of it runs
on the request path.

==================== =========================================================================
``settings``         ``DriftSettings``, ``DriftError``, the names of the files the record keeps
``stats``            the per-column tests: KS, Wasserstein, ... (scipy), as Evidently picks them
``record``           one drift test of a window (``run_drift_test``), the training reference
``evidently_report`` Evidently's full DataDriftPreset report, for the drift views
``frames``           the wire format on the worker's stdin, the worker's rolling window
``worker``           the worker process: its loop, ``state.json``, its command line
``monitor``          ``DriftMonitor``: starts, feeds, restarts and stops the worker
==================== =========================================================================

The names below are the public API; import them from here.
"""

from genreops.monitoring.drift.evidently_report import evidently_report
from genreops.monitoring.drift.frames import (
    FRAME_DTYPE,
    FRAME_HEADER,
    MAX_FRAME_BYTES,
    NOVELTY_FIELDS,
    encode_frame,
)
from genreops.monitoring.drift.monitor import DriftMonitor, find_python
from genreops.monitoring.drift.record import (
    NO_FINITE,
    DriftTestResult,
    numeric_columns,
    read_reference,
    reference_columns,
    run_drift_test,
)
from genreops.monitoring.drift.settings import (
    DEFAULT_METHOD,
    LOG_FILE,
    MIN_ROWS,
    REFERENCE_FILE,
    STATE_FILE,
    TESTS_FILE,
    WINDOWS_DIR,
    WINDOWS_KEPT,
    DriftError,
    DriftSettings,
)
from genreops.monitoring.drift.worker import read_state, run_worker

__all__ = [
    "DEFAULT_METHOD",
    "FRAME_DTYPE",
    "FRAME_HEADER",
    "LOG_FILE",
    "MAX_FRAME_BYTES",
    "MIN_ROWS",
    "NOVELTY_FIELDS",
    "NO_FINITE",
    "REFERENCE_FILE",
    "STATE_FILE",
    "TESTS_FILE",
    "WINDOWS_DIR",
    "WINDOWS_KEPT",
    "DriftError",
    "DriftMonitor",
    "DriftSettings",
    "DriftTestResult",
    "encode_frame",
    "evidently_report",
    "find_python",
    "numeric_columns",
    "read_reference",
    "read_state",
    "reference_columns",
    "run_drift_test",
    "run_worker",
]
