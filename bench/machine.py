"""The machine line every benchmark records next to its figures, and where they are recorded."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def describe() -> str:
    """CPU model, core count and kernel, e.g. "AMD EPYC ..., 2 cores, Linux 6.1"."""
    model = platform.processor() or platform.machine() or "unknown cpu"
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = found.group(1).strip() if found else model
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def record(text: str, section: str, intro: str, path: Path = RESULTS) -> None:
    """Add ``text`` at the end of ``section`` (a "## ..." heading) of the results file,
    creating the file, or the section with its ``intro``, if needed."""
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    if section not in current.splitlines():
        current = current.rstrip("\n") + f"\n\n{section}\n\n{intro}\n"
    lines = current.splitlines(keepends=True)
    start = lines.index(section + "\n") if section + "\n" in lines else lines.index(section)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    before = "".join(lines[:end]).rstrip("\n") + "\n\n"
    after = "".join(lines[end:])
    path.write_text(before + text.rstrip("\n") + "\n" + ("\n" + after if after else ""))
