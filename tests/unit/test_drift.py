"""Drift tests and the drift record's worker loop, in this process (Evidently runs for real)."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genreops.monitoring.drift import (
    LOG_FILE,
    NO_FINITE,
    NOVELTY_FIELDS,
    STATE_FILE,
    TESTS_FILE,
    DriftError,
    DriftMonitor,
    DriftSettings,
    DriftTestResult,
    encode_frame,
    find_python,
    read_state,
    reference_columns,
    run_drift_test,
    run_worker,
)

pytestmark = pytest.mark.unit

COLUMNS = [f"f{i:02d}" for i in range(20)]


def gaussian(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(shift, 1.0, size=(rows, len(COLUMNS))), columns=COLUMNS)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return gaussian(500, seed=0)


# ------------------------------------------------------------------------------- drift test


def test_clean_window_has_no_dataset_drift(reference: pd.DataFrame) -> None:
    result = run_drift_test(reference, gaussian(100, seed=1))
    assert not result.dataset_drift
    assert result.drifted_share < 0.25
    assert result.window_size == 100
    assert result.reference_size == 500
    assert list(result.column_scores) == COLUMNS
    for score in result.column_scores.values():
        assert score["method"] == "K-S p_value"
        assert score["threshold"] == pytest.approx(0.05)
        assert score["drifted"] == (score["score"] < 0.05)
    assert result.drifted_share == len(result.drifted_columns) / len(COLUMNS)
    assert len(result.test_id) == 32
    assert result.tested_at.endswith("+00:00")
    assert result.seconds > 0
    # one JSON line of drift_tests.jsonl, and back
    line = json.dumps(result.to_dict(), allow_nan=False)
    assert DriftTestResult.from_dict(json.loads(line)) == result


def test_shifted_window_drifts(reference: pd.DataFrame) -> None:
    result = run_drift_test(reference, gaussian(100, seed=2, shift=1.0), drift_share=0.5)
    assert result.dataset_drift
    assert result.drifted_share > 0.8
    assert result.drift_share == 0.5
    drifted = result.column_scores["f00"]
    assert drifted["drifted"] and drifted["score"] < drifted["threshold"]


def test_share_threshold_decides_the_verdict(reference: pd.DataFrame) -> None:
    """Half of the tested columns shifted: dataset drift at share 0.5 (>=), none at 0.55."""
    current = reference.iloc[::5].copy()  # a sample of the reference itself: clean
    current[COLUMNS[:4]] += 3.0
    columns = COLUMNS[:8]
    at_half = run_drift_test(reference, current, drift_share=0.5, columns=columns)
    assert list(at_half.column_scores) == columns
    assert at_half.drifted_columns == COLUMNS[:4]
    assert at_half.drifted_share == 0.5
    assert at_half.dataset_drift
    above = run_drift_test(reference, current, drift_share=0.55, columns=columns)
    assert above.drifted_share == 0.5
    assert not above.dataset_drift


def test_constant_missing_and_infinite_values(reference: pd.DataFrame) -> None:
    ref = reference.copy()
    ref["f00"] = 3.0
    current = gaussian(60, seed=4)
    current["f00"] = 3.0  # constant on both sides: no drift
    current["f01"] = np.nan  # nothing to test: reported drifted, no Evidently call
    current.loc[:5, "f02"] = np.inf  # counted as missing
    current["label"] = "x"  # ignored: not a drift column
    result = run_drift_test(ref, current, columns=COLUMNS)
    assert result.column_scores["f00"]["drifted"] is False
    assert result.column_scores["f01"] == {
        "score": None,
        "method": NO_FINITE,
        "threshold": None,
        "drifted": True,
    }
    assert result.column_scores["f02"]["score"] is not None
    json.dumps(result.to_dict(), allow_nan=False)


def test_every_column_empty_needs_no_evidently(reference: pd.DataFrame) -> None:
    current = pd.DataFrame(np.nan, index=range(5), columns=COLUMNS)
    result = run_drift_test(reference, current)
    assert result.dataset_drift
    assert result.drifted_share == 1.0


@pytest.mark.parametrize(
    ("current", "columns", "drift_share", "message"),
    [
        (gaussian(1, seed=5), None, 0.5, "window has 1"),
        (gaussian(10, seed=5).drop(columns=["f03"]), None, 0.5, "lacks 1 drift column(s): f03"),
        (gaussian(10, seed=5).assign(f04="a"), None, 0.5, "non-numeric drift column(s): f04"),
        (gaussian(10, seed=5), None, 0.0, "drift_share=0.0"),
        (gaussian(10, seed=5), [], 0.5, "no numeric columns"),
    ],
)
def test_unusable_inputs_are_refused(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str] | None,
    drift_share: float,
    message: str,
) -> None:
    with pytest.raises(DriftError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_drift_test(reference, current, columns=columns, drift_share=drift_share)


def test_reference_without_enough_values_is_refused(reference: pd.DataFrame) -> None:
    ref = reference.copy()
    ref["f05"] = np.nan
    with pytest.raises(DriftError, match="reference has < 2 finite values in: f05"):
        run_drift_test(ref, gaussian(10, seed=6))


def test_unknown_stat_test_is_a_drift_error(reference: pd.DataFrame) -> None:
    with pytest.raises(DriftError, match="no-such-test"):
        run_drift_test(reference, gaussian(10, seed=6), method="no-such-test")


@pytest.mark.parametrize("method", ["ks", None, "wasserstein"])
def test_the_gates_stat_tests_agree_with_evidentlys_full_report(
    reference: pd.DataFrame, method: str | None
) -> None:
    current = reference.iloc[::4].reset_index(drop=True)  # unchanged columns
    current[COLUMNS[10:]] += np.linspace(0.2, 1.0, 10)  # drifting ones, some barely
    current.iloc[:9, 4] = np.nan
    current.iloc[3, 5] = np.inf
    fast = run_drift_test(reference, current, method=method)
    full = run_drift_test(reference, current, method=method, engine="report")
    assert fast.column_scores == full.column_scores
    assert 0.0 < fast.drifted_share < 1.0  # the comparison covers both verdicts
    assert fast.dataset_drift == full.dataset_drift


@pytest.mark.parametrize("reference_rows", [500, 1500])
@pytest.mark.parametrize("method", ["ks", None, "wasserstein", "jensenshannon"])
def test_the_scipy_tests_are_evidentlys_own(reference_rows: int, method: str | None) -> None:
    """Each column's test, score, threshold and verdict equal what Evidently's own stat test
    functions give, also where ``method=None`` picks chi-square, Z or Jensen-Shannon (columns
    of a few distinct values). Evidently's legacy registry is used here as the yardstick only.
    """
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    from genreops.monitoring.drift.stats import column_score

    rng = np.random.default_rng(reference_rows)
    columns = {
        "continuous": (rng.normal(size=reference_rows), rng.normal(0.3, 1.0, size=60)),
        "constant": (np.full(reference_rows, 3.0), np.full(60, 3.0)),
        "binary": (rng.integers(0, 2, reference_rows) * 1.0, rng.integers(0, 2, 60) * 1.0),
        "binary shifted": (rng.integers(0, 2, reference_rows) * 1.0, np.ones(60)),
        "four values": (rng.integers(0, 4, reference_rows) * 0.5, rng.integers(1, 4, 60) * 0.5),
        "twenty-five values": (rng.integers(0, 25, reference_rows) * 1.0,
                               rng.integers(0, 25, 60) * 1.0),
    }  # fmt: skip
    for name, (reference, current) in columns.items():
        ours = column_score(reference, current, method)
        test = get_stattest(pd.Series(reference), pd.Series(current), ColumnType.Numerical, method)
        theirs = test(pd.Series(reference), pd.Series(current), ColumnType.Numerical, None)
        assert ours["method"] == test.display_name, name
        assert ours["threshold"] == pytest.approx(theirs.actual_threshold), name
        assert ours["drifted"] == bool(theirs.drifted), name
        if np.isfinite(theirs.drift_score):
            assert ours["score"] == pytest.approx(float(theirs.drift_score), rel=1e-9), name
        else:
            assert ours["score"] is None, name


def test_unknown_engine_is_refused(reference: pd.DataFrame) -> None:
    with pytest.raises(DriftError, match="engine='fast'"):
        run_drift_test(reference, gaussian(10, seed=6), engine="fast")


# --------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 1, "min_samples": 1}, "window=1"),
        ({"window": 10, "min_samples": 20}, "min_samples=20"),
        ({"every": 0}, "every=0"),
        ({"method": " "}, "method=''"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DriftError, match=message):
        DriftSettings(**kwargs)  # type: ignore[arg-type]


def test_settings_round_trip_through_the_worker_command_line() -> None:
    settings = DriftSettings(window=30, min_samples=10, every=5)
    argv = settings.to_argv()
    assert argv[argv.index("--every") + 1] == "5"
    assert argv[argv.index("--method") + 1] == "ks"
    assert DriftSettings(method=None).to_argv()[-1] == "auto"


# ----------------------------------------------------------------------------------- worker


def frames(
    block: pd.DataFrame, batch: int, gate: np.ndarray | bool = False, score: float = 0.5
) -> bytes:
    """Frames as the predictor sends them: features, then the gate's judgement of each row."""
    values = block.to_numpy(dtype=np.float32)
    judged = np.zeros((len(values), len(NOVELTY_FIELDS)), dtype=np.float32)
    judged[:, 0] = score
    judged[:, 1] = np.where(gate, 1.0, 0.1)
    judged[:, 2] = gate
    rows = np.hstack([values, judged])
    return b"".join(encode_frame(rows[i : i + batch]) for i in range(0, len(rows), batch))


def records(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / TESTS_FILE).read_text().splitlines()]


def test_worker_loop_records_tests_and_state(reference: pd.DataFrame, tmp_path: Path) -> None:
    settings = DriftSettings(window=60, min_samples=40, every=40)
    clean = gaussian(80, seed=7)
    stream = io.BytesIO(
        frames(clean.iloc[:30], batch=1)
        + encode_frame(np.zeros(7, dtype=np.float32))  # wrong width: dropped, counted
        + frames(clean.iloc[30:], batch=10)
        + encode_frame(np.zeros((2, 23)))[:-12]  # cut short by EOF: ignored
    )
    seen: list[DriftTestResult] = []

    def broken_hook(result: DriftTestResult) -> None:
        seen.append(result)
        raise RuntimeError("store down")  # must not stop the worker

    state = run_worker(stream, reference, tmp_path, settings, on_result=broken_hook)

    assert state == read_state(tmp_path)
    assert state["gate_open"] is False
    assert state["samples_seen"] == 80
    assert state["window_size"] == 60
    assert state["frames_rejected"] == 1
    assert state["ready"] is True
    assert state["n_features"] == 20
    # tests fall due at 40 and 80 samples; a finite stream's last due test always runs, the
    # first may be replaced by it if the reader got there before the test started
    assert state["tests_run"] + state["tests_coalesced"] == 2
    lines = records(tmp_path)
    assert len(lines) == state["tests_run"] == len(seen)
    assert [line["test_id"] for line in lines] == [r.test_id for r in seen]
    last = lines[-1]
    assert last["samples_seen"] == 80
    assert last["window_size"] == 60
    assert last["gate_open"] is False and last["dataset_drift"] is False
    assert last["statistic"] == pytest.approx(0.1) and last["ood_share"] == 0.0
    assert set(last["column_scores"]) == set(COLUMNS)
    assert state["last_test"]["test_id"] == last["test_id"]
    assert state["last_test"]["drifted_share"] == last["drifted_share"]
    assert "column_scores" not in state["last_test"]
    windows = list((tmp_path / "windows").glob("*.npy"))
    assert np.load(windows[0]).shape[1] == len(COLUMNS)  # the views get features only

    # a restarted worker keeps its counters; a fresh one does not
    resumed = run_worker(io.BytesIO(b""), reference, tmp_path, settings, resume=True)
    assert resumed["tests_run"] == state["tests_run"]
    assert resumed["samples_seen"] == 80
    fresh = run_worker(io.BytesIO(b""), reference, tmp_path, settings)
    assert fresh["tests_run"] == 0


def test_every_gate_change_is_recorded_with_the_detector_verdict(
    reference: pd.DataFrame, tmp_path: Path
) -> None:
    """Tests are periodic, plus one at each row where the gate opens or closes; those are
    never coalesced away, even when they arrive in one burst."""
    settings = DriftSettings(window=30, min_samples=30, every=100)
    gate = np.zeros(90, dtype=bool)
    gate[35:70] = True  # opens at row 36, closes at row 71
    traffic = pd.concat([gaussian(35, 9), gaussian(35, 10, shift=2.0), gaussian(20, 11)])
    stream = io.BytesIO(frames(traffic, batch=90, gate=gate, score=1.5))
    state = run_worker(stream, reference, tmp_path, settings)
    lines = records(tmp_path)
    assert [(r["samples_seen"], r["gate_open"]) for r in lines] == [(36, True), (71, False)]
    assert [r["dataset_drift"] for r in lines] == [True, False]
    assert lines[0]["ood_share"] == 1.0  # every row scored 1.5 (> 1: out of distribution)
    assert lines[0]["drifted_share"] < lines[1]["drifted_share"]  # Evidently's explanation
    assert state["gate_open"] is False and state["tests_run"] == 2


def test_worker_refuses_a_reference_without_the_columns(tmp_path: Path) -> None:
    with pytest.raises(DriftError, match="lacks 1 drift column"):
        run_worker(io.BytesIO(b""), gaussian(10, 0), tmp_path, DriftSettings(), columns=["zz"])
    assert not (tmp_path / STATE_FILE).exists()


def test_corrupt_stream_is_an_error(reference: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(DriftError, match="corrupt stream"):
        run_worker(io.BytesIO(b"\xff\xff\xff\xff"), reference, tmp_path, DriftSettings())


# ------------------------------------------------------------------------ columns, monitor


def test_reference_columns(tmp_path: Path) -> None:
    from genreops.data.features import FEATURE_NAMES

    table = gaussian(5, 0).assign(genre="rock", clip_id="a.wav")
    table.index = [10, 11, 12, 13, 14]  # stored as __index_level_0__: not a feature
    table.to_parquet(tmp_path / "own.parquet", index=True)
    assert reference_columns(tmp_path / "own.parquet", from_reference=True) == COLUMNS
    with pytest.raises(DriftError, match=f"lacks {len(FEATURE_NAMES)} numeric feature column"):
        reference_columns(tmp_path / "own.parquet")
    full = pd.DataFrame(np.zeros((3, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    full.to_parquet(tmp_path / "full.parquet")
    assert reference_columns(tmp_path / "full.parquet") == list(FEATURE_NAMES)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DriftError, match="cannot read a Parquet schema"):
        reference_columns(tmp_path / "bad.parquet")


def test_find_python(tmp_path: Path) -> None:
    assert os.access(find_python(), os.X_OK)
    assert find_python(sys.executable) == sys.executable
    with pytest.raises(DriftError, match="not an executable file"):
        find_python(tmp_path / "python3")


def test_monitor_refuses_bad_setup_before_spawning(tmp_path: Path) -> None:
    missing = DriftMonitor(tmp_path / "none.parquet", tmp_path / "state", DriftSettings())
    with pytest.raises(DriftError, match="does not exist"):
        missing.start()
    gaussian(5, 0).to_parquet(tmp_path / "ref.parquet")
    schema_less = DriftMonitor(tmp_path / "ref.parquet", tmp_path / "state", DriftSettings())
    with pytest.raises(DriftError, match="feature column"):
        schema_less.start()
    assert not (tmp_path / "state" / LOG_FILE).exists()  # nothing was started


def test_monitor_not_started_skips(tmp_path: Path) -> None:
    monitor = DriftMonitor(tmp_path / "ref.parquet", tmp_path, DriftSettings())
    monitor.submit(np.zeros((3, 20), dtype=np.float32), np.zeros((3, len(NOVELTY_FIELDS))))
    state = monitor.state()
    assert state["skipped"] == 3
    assert state["worker_alive"] is False
    assert state["gate_open"] is False
