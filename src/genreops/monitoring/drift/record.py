"""One drift test: a window of recent requests against the training reference, per column.

``run_drift_test`` is what the worker records; ``reference_columns``/``read_reference`` read
the training reference a published predictor ships beside it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genreops.monitoring.drift.evidently_report import evidently_scores
from genreops.monitoring.drift.settings import DEFAULT_METHOD, MIN_ROWS, DriftError
from genreops.monitoring.drift.stats import column_score

NO_FINITE = "no finite values"


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


def numeric_block(frame: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
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
    """Test ``columns`` (default: every numeric reference column) of ``current`` for drift.

    ``engine="stattests"`` runs, per column, the two-sample test Evidently's DataDriftPreset
    would (``method``, its default threshold, missing values dropped; see
    ``genreops.monitoring.drift.stats``) with scipy: the same scores and verdicts in ~0.1 s.
    ``engine="report"`` runs Evidently's whole preset, which also builds a chart per column
    and costs 10-30 s of CPU (and ~10 s to import Evidently the first time): only for reports
    people look at, never for the record. Dataset drift means the share of drifted columns is
    >= ``drift_share`` (Evidently's own rule). Non-finite values count as missing. A column
    with no finite value in the window is reported drifted (method ``"no finite values"``,
    score None) without testing it.
    """
    started = time.perf_counter()
    scorers = {"stattests": _stattest_scores, "report": evidently_scores}
    if engine not in scorers:
        raise DriftError(f"engine={engine!r}: use one of {', '.join(scorers)}")
    if not 0.0 < drift_share <= 1.0:
        raise DriftError(f"drift_share={drift_share} must be in (0, 1]")
    cols = [str(c) for c in columns] if columns is not None else numeric_columns(reference)
    if not cols:
        raise DriftError("no numeric columns to test for drift")
    ref = numeric_block(reference, cols, "drift reference")
    cur = numeric_block(current, cols, "drift window")
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


def _stattest_scores(
    ref: pd.DataFrame, cur: pd.DataFrame, cols: list[str], method: str | None
) -> dict[str, dict[str, Any]]:
    """Each column through the test Evidently's DataDriftPreset would run (scipy, no charts)."""
    return {
        c: column_score(
            ref[c].dropna().to_numpy(np.float64), cur[c].dropna().to_numpy(np.float64), method
        )
        for c in cols
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
