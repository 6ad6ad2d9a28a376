"""Evidently's own DataDriftPreset report: for the drift views, and to check the record by.

A report builds a chart per column and costs seconds of CPU, so it never runs for the gate.
"""

from __future__ import annotations

import math
import warnings
from datetime import datetime
from typing import Any

import pandas as pd

from genreops.monitoring.drift.settings import DriftError
from genreops.monitoring.drift.stats import METHODS


def import_evidently() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import evidently
        from evidently.presets import DataDriftPreset  # noqa: F401
    return evidently


def evidently_report(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    cols: list[str],
    method: str | None,
    timestamp: datetime | None = None,
) -> Any:
    """Evidently's DataDriftPreset snapshot (with a chart per column: seconds of CPU)."""
    import_evidently()
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


def evidently_scores(
    ref: pd.DataFrame, cur: pd.DataFrame, cols: list[str], method: str | None
) -> dict[str, dict[str, Any]]:
    """Per-column scores as ``run_drift_test`` records them, read from Evidently's report."""
    # Evidently names a method it was given by its name, one it chose by its display name
    display = {name: test.display_name for name, test in METHODS.items()}

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
