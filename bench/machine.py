"""The machine line every benchmark records next to its figures."""

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
