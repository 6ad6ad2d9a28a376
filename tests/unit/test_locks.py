"""The two locks agree: runtime.txt (the Compose image) is lock.txt (`make setup`) minus the
dev tools, at the same versions (`make lock` compiles runtime.txt constrained by lock.txt)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements"
DEV_TOOLS = ("pytest", "pytest-timeout", "pytest-xdist", "ruff", "mypy", "pre-commit", "pip-audit")


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (REQUIREMENTS / name).read_text().splitlines():
        found = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        if found:
            pins[found.group(1).lower()] = found.group(2)
    return pins


def test_runtime_lock_is_the_dev_lock_without_dev_tools() -> None:
    dev, runtime = _pins("lock.txt"), _pins("runtime.txt")
    assert runtime, "requirements/runtime.txt pins nothing"
    assert {name: (dev.get(name), v) for name, v in runtime.items() if dev.get(name) != v} == {}
    for tool in DEV_TOOLS:
        assert tool in dev and tool not in runtime, tool
    for needed in ("prefect", "mlflow", "nvidia-pytriton", "numpy"):
        assert needed in runtime, needed
