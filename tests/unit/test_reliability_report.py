"""tools/reliability_report.py: docs/RELIABILITY.md from whatever records a run left behind."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.unit

TOOL = Path(__file__).resolve().parents[2] / "tools" / "reliability_report.py"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reliability_report", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def write(folder: Path, section: str, name: str, mode: str = "full", **figures: Any) -> None:
    path = folder / section / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"section": section, "name": name, "mode": mode, **figures}))


def door(tried: int, rejected: int, crashes: int = 0, **more: Any) -> dict[str, Any]:
    return {
        "tried": tried,
        "rejected_correctly": rejected,
        "wrong_reason": tried - rejected - crashes,
        "crashes": crashes,
        "good_total": 10,
        "good_answered": 10,
        "memory_start_mb": 400.0,
        "memory_end_mb": 401.5,
        "server_ready_after": True,
        "kinds": {"random_bytes": tried // 2, "zero_length": tried - tried // 2},
        **more,
    }


def full_run(folder: Path) -> None:
    write(folder, "bad_inputs", "load_audio", **door(210, 210))
    write(folder, "bad_inputs", "ensemble", **door(205, 203, crashes=1))
    write(
        folder,
        "bad_inputs",
        "memory_oversized",
        **door(3, 3),
        rss_by_pass_mb={"tritonserver#1": [200.0, 201.0, 202.0], "preprocessor#1": [500, 550, 600]},
    )
    write(
        folder,
        "faults",
        "database_restart",
        fault="stopped PostgreSQL for 5 s under traffic",
        injected=1,
        survived=True,
        rows_lost=0,
        served=500,
        stored=500,
        detail="spool replayed 37 rows",
    )
    write(
        folder,
        "faults",
        "triton_stub_killed",
        fault="SIGKILL to the predictor's stub",
        injected=2,
        survived=False,
        rows_lost=3,
        served=None,
        stored=None,
        detail="server unready for 40 s",
    )
    write(
        folder,
        "load",
        "soak",
        duration_s=300.0,
        target_rate=40.0,
        requests=12000,
        failures=0,
        shed=0,
        p50_ms=12.34,
        p99_ms=45.67,
        memory_start_mb=600.0,
        memory_end_mb=606.0,
        memory_growth_pct=1.0,
        recovered=None,
        capacity_rps=50.0,
    )
    write(
        folder,
        "load",
        "overload",
        duration_s=60.0,
        target_rate=100.0,
        requests=6000,
        failures=0,
        shed=900,
        p50_ms=30.0,
        p99_ms=250.0,
        memory_start_mb=606.0,
        memory_end_mb=610.0,
        memory_growth_pct=0.66,
        recovered=True,
        capacity_rps=50.0,
    )
    write(folder, "security", "sql_parameterized", check="sql_parameterized", passed=True,
          detail="6 sites\nsrc/x.py:1 literal")  # fmt: skip
    write(folder, "security", "dependency_audit", mode="fast", check="dependency_audit",
          passed=None, detail="skipped: offline")  # fmt: skip


def test_full_run_headline_and_sections(report: ModuleType, tmp_path: Path) -> None:
    records = tmp_path / "records"
    full_run(records)
    output = tmp_path / "docs" / "RELIABILITY.md"
    assert report.main(["--records", str(records), "--output", str(output)]) == 0
    text = output.read_text()
    headline = text.split("## Headline", 1)[1].split("\n## ", 1)[0]
    # per door and total
    assert (
        "| Bad input | load_audio | 210 tried, 210 rejected correctly, 0 crashes | full |"
        in headline
    )
    assert "1 crashes, 1 with the wrong reason" in headline
    assert "**total** (3 doors) | 418 tried, 416 rejected correctly, 1 crashes" in headline
    # per fault and total
    assert "injected 1, survived, 0 rows lost" in headline
    assert "injected 2, **NOT survived**, 3 rows lost" in headline
    assert "3 injected, 1 of 2 survived, 3 rows lost" in headline
    # soak and overload
    assert (
        "| Load | soak | 300 s, 12,000 requests, 0 failures, p50 12.3 ms, p99 45.7 ms, " in headline
    )
    assert "memory +1.0 %" in headline
    assert "6,000 requests, 0 failures, 900 shed" in headline and "recovered" in headline
    # security, with the skipped check named
    assert "1 of 2 checks passed; skipped: dependency_audit" in headline
    # detail tables, modes, machine, date and how to rerun
    assert "| ensemble | 205 | 203 | 1 | 1 | 10 of 10 | 400.0 → 401.5 | yes | full |" in text
    assert "| zero_length |" in text
    # memory over repeated passes: every process, pass 1 as the baseline
    assert "| memory_oversized | tritonserver#1 | 200.0 | 201.0 | 202.0 | +1.0 % |" in text
    assert "| memory_oversized | preprocessor#1 | 500.0 | 550.0 | 600.0 | +20.0 % |" in text
    assert "rss_by_pass_mb" not in text
    assert "server unready for 40 s" in text
    assert "| sql_parameterized | passed | full |" in text
    assert "  - src/x.py:1 literal" in text
    assert "| dependency_audit | skipped | fast |" in text
    assert "1 of 9 records are from the **fast** subset" in text
    assert "- Machine: " in text and "cores" in text
    assert "make reliability" in text.split("## How these figures were measured")[1]
    assert "not run" not in text.lower()


def test_partial_data_says_not_run(report: ModuleType, tmp_path: Path) -> None:
    records = tmp_path / "records"
    write(records, "bad_inputs", "client", mode="fast", tried=20)  # most figures missing
    (records / "faults").mkdir(parents=True)
    (records / "faults" / "broken.json").write_text("{not json")
    output = tmp_path / "out.md"
    assert report.main(["--records", str(records), "--output", str(output)]) == 0
    text = output.read_text()
    assert "| Bad input | client | 20 tried, – rejected correctly, – crashes | fast |" in text
    assert "| Faults | – | not run |" in text
    assert "| Load | soak | not run |" in text and "| Load | overload | not run |" in text
    assert "| Security | checks | not run |" in text
    for title in ("Faults under traffic", "Load: soak and overload", "Security"):
        assert f"## {title}\n\nNot run." in text
    assert "faults/broken.json" in text.split("## Records that could not be read")[1]


def test_no_records_at_all(report: ModuleType, tmp_path: Path) -> None:
    output = tmp_path / "out.md"
    assert report.main(["--records", str(tmp_path / "missing"), "--output", str(output)]) == 0
    text = output.read_text()
    assert text.count("not run") >= 5
    assert "Measured: not run" in text
