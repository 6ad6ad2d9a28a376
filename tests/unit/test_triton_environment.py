"""The environment tritonserver and its Python stubs start with."""

from __future__ import annotations

from pathlib import Path

import pytest

from genreops.triton_server import MALLOC_KEEP_FREED, TritonInstall, triton_environment

pytestmark = pytest.mark.unit

INSTALL = TritonInstall(
    binary=Path("/opt/triton/bin/tritonserver"),
    backends=Path("/opt/triton/backends"),
    stub=Path("/opt/triton/backends/python/triton_python_backend_stub"),
    libs=Path("/opt/triton/lib"),
    version="test",
)


def test_stubs_get_one_thread_pools_and_keep_freed_memory() -> None:
    env = triton_environment(INSTALL, base={"PATH": "/usr/bin"})
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    for name, value in MALLOC_KEEP_FREED.items():
        assert env[name] == value
    assert str(INSTALL.libs) in env["LD_LIBRARY_PATH"].split(":")
    assert env["PATH"].endswith("/usr/bin")


def test_the_users_own_settings_win() -> None:
    base = {"OMP_NUM_THREADS": "4", "MALLOC_TRIM_THRESHOLD_": "0", "LD_LIBRARY_PATH": "/mine"}
    env = triton_environment(INSTALL, base=base)
    assert env["OMP_NUM_THREADS"] == "4"
    assert env["MALLOC_TRIM_THRESHOLD_"] == "0"
    assert env["LD_LIBRARY_PATH"].split(":")[-1] == "/mine"
