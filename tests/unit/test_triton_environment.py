"""The environment tritonserver and its Python stubs start with."""

from __future__ import annotations

from pathlib import Path

import pytest

from genreops.core.allocator import (
    KEEP_FREED,
    M_MMAP_THRESHOLD,
    SERVER_MALLOC_ENV,
    keep_freed_memory,
)
from genreops.serving.triton.install import TritonInstall, triton_environment

pytestmark = pytest.mark.unit

INSTALL = TritonInstall(
    binary=Path("/opt/triton/bin/tritonserver"),
    backends=Path("/opt/triton/backends"),
    stub=Path("/opt/triton/backends/python/triton_python_backend_stub"),
    libs=Path("/opt/triton/lib"),
    version="test",
)


def test_stubs_get_one_thread_pools_and_the_server_returns_large_buffers() -> None:
    env = triton_environment(INSTALL, base={"PATH": "/usr/bin"})
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    for name, value in SERVER_MALLOC_ENV.items():
        assert env[name] == value
    # the server's own heap must not keep request-sized buffers (issue 14)
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) <= 1024 * 1024
    assert "MALLOC_TRIM_THRESHOLD_" not in env
    assert str(INSTALL.libs) in env["LD_LIBRARY_PATH"].split(":")
    assert env["PATH"].endswith("/usr/bin")


def test_the_users_own_settings_win() -> None:
    base = {"OMP_NUM_THREADS": "4", "MALLOC_TRIM_THRESHOLD_": "0", "LD_LIBRARY_PATH": "/mine"}
    env = triton_environment(INSTALL, base=base)
    assert env["OMP_NUM_THREADS"] == "4"
    assert env["MALLOC_TRIM_THRESHOLD_"] == "0"
    assert env["LD_LIBRARY_PATH"].split(":")[-1] == "/mine"


def test_a_stub_keeps_freed_memory_through_mallopt() -> None:
    """The preprocessor's stubs call this in initialize; glibc accepts both values."""
    assert keep_freed_memory()
    # large enough for every block of a 30 s clip's features, small enough that a payload
    # over it (an oversized request's copy) is its own mapping and goes back when freed
    assert 16 * 1024 * 1024 <= KEEP_FREED[M_MMAP_THRESHOLD] <= 64 * 1024 * 1024


def test_a_new_server_removes_the_shared_memory_a_killed_one_left_on_its_port(
    tmp_path: Path,
) -> None:
    """Only a clean stop removes the Python backend's regions; a SIGKILLed server leaves them
    in /dev/shm. The next server on the same (free) port removes its prefix's, no other's."""
    from genreops.serving.triton.server import TritonPorts, _remove_stale_shm, shm_prefix

    mine, other = shm_prefix(TritonPorts(8000, 8001, 8002)), shm_prefix(TritonPorts(8010))
    for name in (f"{mine}a1", f"{mine}b2", f"{other}c3", "PostgreSQL.1"):
        (tmp_path / name).write_bytes(b"x")
    _remove_stale_shm(mine, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PostgreSQL.1", f"{other}c3"]
