#!/usr/bin/env python3
"""Rewrite docs/RELIABILITY.md from the figures the reliability tests recorded.

The tests (``make reliability`` full size, ``make test`` fast subset) write one JSON file per
result into ``test-output/reliability/<section>/<name>.json`` (tests/helpers.py
``record_reliability``). This script only reads those files: it works with any subset of
them, says "not run" for a section without records and lists files it cannot read, so a
partly failed run still produces a report.

Usage: ``python tools/reliability_report.py [--records DIR] [--output FILE]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECORDS = ROOT / "test-output" / "reliability"
DEFAULT_OUTPUT = ROOT / "docs" / "RELIABILITY.md"
SECTIONS = ("bad_inputs", "faults", "load", "security")
TITLES = {
    "bad_inputs": "Bad input at every door",
    "faults": "Faults under traffic",
    "load": "Load: soak and overload",
    "security": "Security",
}
NOT_RUN = "not run"
DASH = "–"


@dataclass
class Records:
    """Every readable record by section (sorted by name), plus what could not be read."""

    by_section: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    measured: list[dt.datetime] = field(default_factory=list)

    def section(self, name: str) -> list[dict[str, Any]]:
        return self.by_section.get(name, [])

    def modes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for records in self.by_section.values():
            for record in records:
                mode = str(record.get("mode", "unknown"))
                counts[mode] = counts.get(mode, 0) + 1
        return counts


def load_records(folder: Path) -> Records:
    """Read ``<folder>/<section>/*.json``; unreadable files are reported, never fatal."""
    found = Records()
    if not folder.is_dir():
        return found
    for section_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(section_dir.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as error:
                found.problems.append(f"{path.relative_to(folder)}: {error}")
                continue
            data.setdefault("name", path.stem)
            found.by_section.setdefault(section_dir.name, []).append(data)
            found.measured.append(dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC))
    return found


# --- formatting ---------------------------------------------------------------------------


def number(value: Any) -> float | None:
    """A finite number, or None (missing, wrong type, bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value == value else None  # NaN is missing


def count(value: Any) -> str:
    n = number(value)
    return DASH if n is None else f"{n:,.0f}"


def decimal(value: Any, digits: int = 1, unit: str = "") -> str:
    n = number(value)
    return DASH if n is None else f"{n:,.{digits}f}{unit}"


def yes_no(value: Any, yes: str = "yes", no: str = "**no**") -> str:
    if value is None:
        return DASH
    return yes if bool(value) else no


def cell(text: Any) -> str:
    """Table-safe text: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|") or DASH


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def total(records: Iterable[Mapping[str, Any]], key: str) -> float | None:
    values = [number(r.get(key)) for r in records]
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def memory_growth(record: Mapping[str, Any]) -> float | None:
    growth = number(record.get("memory_growth_pct"))
    if growth is not None:
        return growth
    start, end = number(record.get("memory_start_mb")), number(record.get("memory_end_mb"))
    if start and end is not None:
        return (end - start) / start * 100.0
    return None


def signed_pct(value: float | None) -> str:
    return DASH if value is None else f"{value:+.1f} %"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def check_result(passed: Any) -> str:
    if passed is True:
        return "passed"
    if passed is False:
        return "**FAILED**"
    return "skipped"


# --- headline -----------------------------------------------------------------------------


def bad_input_figures(record: Mapping[str, Any]) -> str:
    text = (
        f"{count(record.get('tried'))} tried, {count(record.get('rejected_correctly'))} "
        f"rejected correctly, {count(record.get('crashes'))} crashes"
    )
    wrong = number(record.get("wrong_reason"))
    if wrong:
        text += f", {count(wrong)} with the wrong reason"
    return text


def fault_figures(record: Mapping[str, Any]) -> str:
    survived = record.get("survived")
    state = DASH if survived is None else ("survived" if survived else "**NOT survived**")
    return (
        f"injected {count(record.get('injected'))}, {state}, "
        f"{count(record.get('rows_lost'))} rows lost"
    )


def load_figures(record: Mapping[str, Any]) -> str:
    name = str(record.get("name"))
    parts = []
    if name == "soak" or number(record.get("duration_s")) is not None:
        parts.append(decimal(record.get("duration_s"), 0, " s"))
    parts += [
        f"{count(record.get('requests'))} requests",
        f"{count(record.get('failures'))} failures",
    ]
    if name == "overload" or number(record.get("shed")):
        parts.append(f"{count(record.get('shed'))} shed")
    parts += [
        f"p50 {decimal(record.get('p50_ms'), 1, ' ms')}",
        f"p99 {decimal(record.get('p99_ms'), 1, ' ms')}",
        f"memory {signed_pct(memory_growth(record))}",
    ]
    recovered = record.get("recovered")
    if recovered is not None:
        parts.append("recovered" if recovered else "**did not recover**")
    return ", ".join(parts)


def headline(records: Records) -> list[str]:
    rows: list[list[str]] = []
    doors = records.section("bad_inputs")
    for record in doors:
        rows.append(["Bad input", str(record["name"]), bad_input_figures(record), _mode(record)])
    if doors:
        sums = {k: total(doors, k) for k in ("tried", "rejected_correctly", "crashes")}
        sums["wrong_reason"] = total(doors, "wrong_reason")
        rows.append(
            ["Bad input", f"**total** ({plural(len(doors), 'door')})", bad_input_figures(sums), ""]
        )
    else:
        rows.append(["Bad input", DASH, NOT_RUN, ""])

    faults = records.section("faults")
    for record in faults:
        rows.append(["Faults", str(record["name"]), fault_figures(record), _mode(record)])
    if faults:
        survived = sum(1 for r in faults if r.get("survived") is True)
        rows.append(
            [
                "Faults",
                f"**total** ({plural(len(faults), 'fault')})",
                f"{count(total(faults, 'injected'))} injected, {survived} of {len(faults)} "
                f"survived, {count(total(faults, 'rows_lost'))} rows lost",
                "",
            ]
        )
    else:
        rows.append(["Faults", DASH, NOT_RUN, ""])

    load = {str(r["name"]): r for r in records.section("load")}
    for phase in ("soak", "overload"):
        if phase in load:
            rows.append(["Load", phase, load_figures(load[phase]), _mode(load[phase])])
        else:
            rows.append(["Load", phase, NOT_RUN, ""])
    for name, record in load.items():
        if name not in ("soak", "overload"):
            rows.append(["Load", name, load_figures(record), _mode(record)])

    checks = records.section("security")
    if checks:
        passed = sum(1 for r in checks if r.get("passed") is True)
        failed = [str(r["name"]) for r in checks if r.get("passed") is False]
        skipped = [str(r["name"]) for r in checks if r.get("passed") not in (True, False)]
        text = f"{passed} of {len(checks)} checks passed"
        if failed:
            text += f"; **failed: {', '.join(failed)}**"
        if skipped:
            text += f"; skipped: {', '.join(skipped)}"
        rows.append(["Security", "checks", text, _modes(checks)])
    else:
        rows.append(["Security", "checks", NOT_RUN, ""])
    return table(["Area", "Item", "Figures", "Mode"], rows)


def _mode(record: Mapping[str, Any]) -> str:
    return str(record.get("mode", DASH))


def _modes(records: Iterable[Mapping[str, Any]]) -> str:
    return ", ".join(sorted({_mode(r) for r in records}))


# --- sections -----------------------------------------------------------------------------


def _extra(record: Mapping[str, Any], known: Iterable[str]) -> str:
    skip = {"section", "name", "mode", *known}
    extra = {k: v for k, v in record.items() if k not in skip}
    return ", ".join(f"{k}: {v}" for k, v in extra.items())


BAD_INPUT_KEYS = (
    "tried", "rejected_correctly", "wrong_reason", "crashes", "good_total", "good_answered",
    "memory_start_mb", "memory_end_mb", "server_ready_after", "kinds", "rss_by_pass_mb",
)  # fmt: skip


def memory_by_pass(records: list[dict[str, Any]]) -> list[str]:
    """RSS of each server process after every pass of the same traffic (issue 14): the first
    pass is the warm-up baseline, the last shows whether anything kept growing."""
    series = [r for r in records if isinstance(r.get("rss_by_pass_mb"), dict)]
    if not series:
        return []
    passes = max(len(v) for r in series for v in r["rss_by_pass_mb"].values())
    rows = []
    for r in series:
        for process, values in r["rss_by_pass_mb"].items():
            first, last = number(values[0]), number(values[-1])
            growth = None if not first or last is None else (last / first - 1) * 100
            cells = [decimal(v) for v in values] + [DASH] * (passes - len(values))
            rows.append([r["name"], process, *cells, signed_pct(growth)])
    title = "Memory over repeated passes (RSS MB after each pass; pass 1 is the baseline):"
    lines = ["", title, ""]
    headers = ["Door", "Process", *(f"pass {i + 1}" for i in range(passes)), "pass 1 → last"]
    return lines + table(headers, rows)


def bad_input_section(records: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            r["name"],
            count(r.get("tried")),
            count(r.get("rejected_correctly")),
            count(r.get("wrong_reason")),
            count(r.get("crashes")),
            f"{count(r.get('good_answered'))} of {count(r.get('good_total'))}",
            f"{decimal(r.get('memory_start_mb'))} → {decimal(r.get('memory_end_mb'))}",
            yes_no(r.get("server_ready_after")),
            _mode(r),
        ]
        for r in records
    ]
    rows.append(
        [
            "**total**",
            count(total(records, "tried")),
            count(total(records, "rejected_correctly")),
            count(total(records, "wrong_reason")),
            count(total(records, "crashes")),
            f"{count(total(records, 'good_answered'))} of {count(total(records, 'good_total'))}",
            "",
            "",
            "",
        ]
    )
    lines = table(
        [
            "Door",
            "Tried",
            "Rejected correctly",
            "Wrong reason",
            "Crashes",
            "Good files answered",
            "Memory MB (start → end)",
            "Server ready after",
            "Mode",
        ],
        rows,
    )
    kinds = sorted({k for r in records if isinstance(r.get("kinds"), dict) for k in r["kinds"]})
    if kinds:
        lines += ["", "Bad files by kind and door:", ""]
        lines += table(
            ["Kind", *(str(r["name"]) for r in records)],
            [[kind, *(count((r.get("kinds") or {}).get(kind)) for r in records)] for kind in kinds],
        )
    lines += memory_by_pass(records)
    extras = [(r["name"], _extra(r, BAD_INPUT_KEYS)) for r in records]
    lines += _extras(extras)
    return lines


FAULT_KEYS = ("fault", "injected", "survived", "rows_lost", "served", "stored", "detail")


def fault_section(records: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            r["name"],
            r.get("fault", DASH),
            count(r.get("injected")),
            yes_no(r.get("survived")),
            count(r.get("rows_lost")),
            count(r.get("served")),
            count(r.get("stored")),
            _mode(r),
        ]
        for r in records
    ]
    survived = sum(1 for r in records if r.get("survived") is True)
    rows.append(
        [
            "**total**",
            "",
            count(total(records, "injected")),
            f"{survived} of {len(records)}",
            count(total(records, "rows_lost")),
            count(total(records, "served")),
            count(total(records, "stored")),
            "",
        ]
    )
    lines = table(
        ["Fault", "What was done", "Injected", "Survived", "Rows lost", "Served", "Stored", "Mode"],
        rows,
    )
    details = [(r["name"], r.get("detail")) for r in records if r.get("detail")]
    if details:
        lines += ["", "What happened:", ""]
        lines += [f"- **{name}**: {cell(text)}" for name, text in details]
    lines += _extras([(r["name"], _extra(r, FAULT_KEYS)) for r in records])
    return lines


LOAD_KEYS = (
    "duration_s", "target_rate", "requests", "failures", "shed", "p50_ms", "p99_ms",
    "memory_start_mb", "memory_end_mb", "memory_growth_pct", "recovered", "capacity_rps",
)  # fmt: skip


def load_section(records: list[dict[str, Any]]) -> list[str]:
    order = {"soak": 0, "overload": 1}
    records = sorted(records, key=lambda r: (order.get(str(r["name"]), 2), str(r["name"])))
    rows = [
        [
            r["name"],
            decimal(r.get("duration_s"), 0, " s"),
            decimal(r.get("target_rate"), 1, "/s"),
            decimal(r.get("capacity_rps"), 1, "/s"),
            count(r.get("requests")),
            count(r.get("failures")),
            count(r.get("shed")),
            decimal(r.get("p50_ms"), 1),
            decimal(r.get("p99_ms"), 1),
            f"{decimal(r.get('memory_start_mb'))} → {decimal(r.get('memory_end_mb'))}",
            signed_pct(memory_growth(r)),
            yes_no(r.get("recovered")),
            _mode(r),
        ]
        for r in records
    ]
    lines = table(
        [
            "Phase",
            "Duration",
            "Target rate",
            "Measured capacity",
            "Requests",
            "Failures",
            "Shed",
            "p50 ms",
            "p99 ms",
            "Memory MB (start → end)",
            "Memory growth",
            "Recovered",
            "Mode",
        ],
        rows,
    )
    lines += _extras([(r["name"], _extra(r, LOAD_KEYS)) for r in records])
    return lines


def security_section(records: list[dict[str, Any]]) -> list[str]:
    lines = table(
        ["Check", "Result", "Mode"],
        [[r.get("check", r["name"]), check_result(r.get("passed")), _mode(r)] for r in records],
    )
    details = [(r["name"], r.get("detail")) for r in records if r.get("detail")]
    if details:
        lines += ["", "What each check found:", ""]
        for name, text in details:
            first, *rest = str(text).splitlines() or [""]
            lines.append(f"- **{name}**: {cell(first)}")
            lines += [f"  - {cell(line)}" for line in rest if line.strip()]
    known = ("check", "passed", "detail")
    lines += _extras([(r["name"], _extra(r, known)) for r in records])
    return lines


def _extras(pairs: Iterable[tuple[Any, str]]) -> list[str]:
    present = [(name, text) for name, text in pairs if text]
    if not present:
        return []
    return ["", "Other figures:", "", *(f"- **{n}**: {cell(t)}" for n, t in present)]


SECTION_RENDERERS = {
    "bad_inputs": bad_input_section,
    "faults": fault_section,
    "load": load_section,
    "security": security_section,
}


# --- the document -------------------------------------------------------------------------


def describe_machine() -> str:
    """bench/machine.py's line (what the benchmarks record), plus the memory size."""
    text = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    helper = ROOT / "bench" / "machine.py"
    if helper.is_file():
        spec = importlib.util.spec_from_file_location("_bench_machine", helper)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            with contextlib.suppress(Exception):  # a report must not fail on the machine line
                spec.loader.exec_module(module)
                text = str(module.describe())
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                text += f", {int(line.split()[1]) / 1024**2:.0f} GiB memory"
                break
    except (OSError, ValueError, IndexError):
        pass
    return text


def render(records: Records, *, machine: str, generated: dt.datetime) -> str:
    modes = records.modes()
    lines = [
        "# Reliability and security",
        "",
        "<!-- Generated by tools/reliability_report.py from test-output/reliability/; "
        "do not edit by hand: rerun `make reliability`. -->",
        "",
        "How genreops holds up under hostile input, faults, sustained load and the security "
        "checks of issue 6. Every figure below was measured by a test and recorded as JSON; "
        "this page is rebuilt from those records.",
        "",
        "## Headline",
        "",
        *headline(records),
        "",
    ]
    if modes.get("fast"):
        lines += [
            f"{modes['fast']} of {sum(modes.values())} records are from the **fast** subset "
            "(`make test`); `make reliability` measures the full size.",
            "",
        ]
    for section in SECTIONS:
        lines += [f"## {TITLES[section]}", ""]
        found = records.section(section)
        if found:
            lines += SECTION_RENDERERS[section](found)
        else:
            lines.append(f"{NOT_RUN.capitalize()}.")
        lines.append("")
    for section, found in records.by_section.items():
        if section not in SECTIONS:
            lines += [f"## Other: {section}", ""]
            lines += [f"- **{r['name']}**: {cell(_extra(r, ()))}" for r in found]
            lines.append("")
    if records.problems:
        lines += ["## Records that could not be read", ""]
        lines += [f"- {cell(p)}" for p in records.problems]
        lines.append("")
    if records.measured:
        first, last = min(records.measured), max(records.measured)
        when = f"{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC"
    else:
        when = NOT_RUN
    mode_text = ", ".join(f"{n} {m}" for m, n in sorted(modes.items())) or NOT_RUN
    lines += [
        "## How these figures were measured",
        "",
        f"- Machine: {machine}",
        f"- Measured: {when}; report written {generated:%Y-%m-%d %H:%M} UTC",
        f"- Records: {mode_text} (fast: the subset `make test` runs; full: `make reliability`)",
        "- Rerun: `make reliability` (runs `pytest -m reliability` with "
        "GENREOPS_RELIABILITY=full, then this report, even when a test fails); "
        "`python tools/reliability_report.py` rebuilds this page from the last records.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, default=DEFAULT_RECORDS, help="records folder")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown to write")
    args = parser.parse_args(argv)
    records = load_records(args.records)
    text = render(records, machine=describe_machine(), generated=dt.datetime.now(dt.UTC))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    tmp.write_text(text)
    tmp.replace(args.output)
    counted = sum(len(v) for v in records.by_section.values())
    print(f"wrote {args.output} from {counted} records in {args.records}")
    for problem in records.problems:
        print(f"unreadable record: {problem}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
