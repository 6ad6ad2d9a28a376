"""Drift gate costs: what the request path pays, and what one recorded drift test takes.

(a) Request path: the gate's judgement of a request (``NoveltyMonitor.assess``: OOD score
    against a 1,000-row reference and the detector's update) for one vector and a batch of 8;
    then, against a real ``DriftMonitor`` whose worker records drift tests meanwhile (the
    defaults: window 50, min 20, every 25; all F schema features), ``submit()`` of one vector
    and of a batch of 8, paced like requests (~1 ms apart) and in a burst (back to back, the
    queue fills and vectors are skipped), and ``state()`` reads.
(b) ``run_drift_test`` in this process (per-column scipy tests, as the worker runs them):
    window 50 x F against a reference of 1,000 x F (clean and shifted windows); plus the
    worker's start-to-ready time.

Prints a markdown block; it does not write bench/RESULTS.md.

    .venv/bin/python bench/drift_costs.py
    .venv/bin/python bench/drift_costs.py --repeats 5 --burst 50000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import scipy

from genreops.data.features import FEATURE_NAMES
from genreops.monitoring.drift import NOVELTY_FIELDS, DriftMonitor, DriftSettings, run_drift_test
from genreops.monitoring.novelty import NoveltyMonitor
from machine import describe

COLUMNS = list(FEATURE_NAMES)


def percentiles(ns: list[int]) -> tuple[float, float, float, float]:
    """median, p99, max, mean in microseconds."""
    a = np.asarray(ns, dtype=np.float64) / 1e3
    return (
        float(np.median(a)),
        float(np.percentile(a, 99)),
        float(a.max()),
        float(a.mean()),
    )


def time_calls(
    call: Callable[[np.ndarray], object],
    vectors: np.ndarray,
    batch: int,
    pause: float,
    chunk: int = 0,
) -> list[int]:
    """Per-call ns of ``call(block)``; sleeps ``pause`` after each call, or after each ``chunk``."""
    out = []
    for n, i in enumerate(range(0, len(vectors) - batch + 1, batch), start=1):
        block = vectors[i] if batch == 1 else vectors[i : i + batch]
        t0 = time.perf_counter_ns()
        call(block)
        out.append(time.perf_counter_ns() - t0)
        if pause and (not chunk or n % chunk == 0):
            time.sleep(pause)
    return out


def counted(monitor: DriftMonitor, run: Callable[[], list[int]]) -> tuple[list[int], int, int]:
    """``run()``'s timings with the vectors it got queued and skipped."""
    before = monitor.state()
    out = run()
    after = monitor.state()
    return out, after["submitted"] - before["submitted"], after["skipped"] - before["skipped"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="Evidently runs per window kind")
    parser.add_argument("--paced", type=int, default=3000, help="paced single-vector submits")
    parser.add_argument("--burst", type=int, default=20000, help="back-to-back submits")
    parser.add_argument("--judged", type=int, default=5000, help="requests judged")
    args = parser.parse_args()

    load_start = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.normal(size=(1000, len(COLUMNS))), columns=COLUMNS)
    clean = rng.normal(size=(50, len(COLUMNS)))
    shifted = rng.normal(0.5, 1.0, size=(50, len(COLUMNS)))
    lines: list[str] = []

    with tempfile.TemporaryDirectory(prefix="genreops-bench-drift-") as tmp:
        ref_path = Path(tmp) / "reference.parquet"
        reference.astype(np.float32).to_parquet(ref_path, index=False)

        # ---- (a) request path, with the worker testing in the background
        settings = DriftSettings()
        monitor = DriftMonitor(ref_path, Path(tmp) / "state", settings)
        t0 = time.perf_counter()
        monitor.start()
        start_call = time.perf_counter() - t0
        while not monitor.state().get("ready"):
            if not monitor.state()["worker_alive"]:
                print(monitor.log_path.read_text(), file=sys.stderr)
                return 1
            time.sleep(0.05)
        ready_s = time.perf_counter() - t0

        traffic = rng.normal(size=(max(args.paced, args.burst) + 8, len(COLUMNS))).astype(
            np.float32
        )
        judge = NoveltyMonitor(reference.to_numpy())
        judged_one = time_calls(judge.assess, traffic[: args.judged], 1, 0.0)
        judged_eight = time_calls(judge.assess, traffic[: args.judged], 8, 0.0)
        said = np.zeros((8, len(NOVELTY_FIELDS)), dtype=np.float32)

        def submit(block: np.ndarray) -> None:
            rows = block.reshape(-1, len(COLUMNS))
            monitor.submit(rows, said[: len(rows)])

        time_calls(submit, traffic[:200], 1, 0.001)  # warm-up
        rows: list[tuple[str, list[int], str]] = []
        t, ok, skip = counted(monitor, lambda: time_calls(submit, traffic[: args.paced], 1, 0.001))
        rows.append(("`submit()` 1 vector, 1 ms sleep between calls", t, f"{ok} / {skip}"))
        t = time_calls(lambda x: None, traffic[: args.paced], 1, 0.001)
        rows.append(("same pacing, a no-op call instead (the after-sleep cost)", t, ""))
        t, ok, skip = counted(monitor, lambda: time_calls(submit, traffic[: args.paced], 8, 0.008))
        rows.append(("`submit()` batch of 8, 8 ms sleep between calls", t, f"{ok} / {skip}"))
        t, ok, skip = counted(
            monitor, lambda: time_calls(submit, traffic[: args.burst], 1, 0.03, chunk=500)
        )
        rows.append(("`submit()` 1 vector, back to back (500, then 30 ms)", t, f"{ok} / {skip}"))
        t, ok, skip = counted(monitor, lambda: time_calls(submit, traffic[: args.burst], 1, 0.0))
        rows.append(("`submit()` 1 vector, burst: queue full, skip path", t, f"{ok} / {skip}"))

        state_ns = []
        for _ in range(20000):
            t1 = time.perf_counter_ns()
            monitor.state()
            state_ns.append(time.perf_counter_ns() - t1)
        tests_seen = monitor.state()["tests_run"]
        monitor.stop()

    # ---- (b) the record's drift test in this process
    kinds = {"clean": clean, "shifted (+0.5 sd)": shifted}
    seconds: dict[str, list[float]] = {k: [] for k in kinds}
    shares: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, window in kinds.items():
            t0 = time.perf_counter()
            result = run_drift_test(reference, pd.DataFrame(window, columns=COLUMNS))
            seconds[name].append(time.perf_counter() - t0)
            shares[name] = result.drifted_share

    load_end = os.getloadavg()[0]

    lines.append(
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: drift gate costs, "
        f"reference 1,000 x {len(COLUMNS)} (`bench/drift_costs.py`)"
    )
    lines.append("")
    lines.append("- command: `.venv/bin/python bench/drift_costs.py` " + " ".join(sys.argv[1:]))
    lines.append(
        f"- machine: {describe()}; 1-min load average {load_start:.2f} at start, "
        f"{load_end:.2f} at end"
    )
    lines.append(
        f"- versions: Python {platform.python_version()}, numpy {np.__version__}, "
        f"pandas {pd.__version__}, scipy {scipy.__version__}"
    )
    lines.append("")
    lines.append(
        "| request path (a drift test running) | calls | median us | p99 us | max us |"
        " queued / skipped |"
    )
    lines.append("|---|---:|---:|---:|---:|---|")
    rows = [
        ("`assess()` 1 vector (OOD score + detector)", judged_one, ""),
        ("`assess()` batch of 8", judged_eight, ""),
        *rows,
        ("`state()`", state_ns, ""),
    ]
    for label, data, note in rows:
        med, p99, mx, _ = percentiles(data)
        lines.append(f"| {label} | {len(data)} | {med:.2f} | {p99:.2f} | {mx:.1f} | {note} |")
    lines.append("")
    lines.append(
        f"- worker: `start()` returns in {start_call * 1000:.1f} ms; ready (reference loaded) "
        f"after {ready_s:.1f} s; {tests_seen} drift test(s) finished during (a)"
    )
    lines.append("")
    lines.append("| drift test (scipy), in process | runs | min s | median s | drifted share |")
    lines.append("|---|---:|---:|---:|---:|")
    for name, values in seconds.items():
        lines.append(
            f"| {name} | {len(values)} | {min(values):.2f} | {statistics.median(values):.2f} "
            f"| {shares[name]:.2f} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
