"""Run NVIDIA Triton Inference Server natively, from the ``nvidia-pytriton`` wheel (no Docker).

The wheel ships a complete ``tritonserver`` 2.51 with the Python backend; we use only its
binary, never the PyTriton API. Three things make it work outside the wheel's own launcher:

- the Python backend needs ``triton_python_backend_stub`` for our Python version inside
  ``backends/python/``: ``prepare_backends`` copies the wheel's backends once into the state
  directory (the venv stays untouched) and refreshes the copy when the wheel changes;
- the stub embeds Python and takes its prefix from the first ``python3`` on ``PATH``, so the
  venv's ``bin`` goes first (otherwise "No module named 'numpy'");
- the copied libraries lose their ``$ORIGIN`` RPATH, and the stub would silently load the
  system's libpython, so ``LD_LIBRARY_PATH`` names our libpython directory and the wheel's
  ``nvidia_pytriton.libs``.

"Failed to initialize NVML", "DCGM unable to start" and CUDA driver warnings in the log are
harmless on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from genreops.core.allocator import SERVER_MALLOC_ENV
from genreops.serving.triton.errors import TritonServerError

logger = logging.getLogger(__name__)

DISTRIBUTION = "nvidia-pytriton"
STUB_NAME = "triton_python_backend_stub"
STAMP_NAME = ".genreops-stamp"
_INSTALL_HINT = (
    f"run `make setup` (it installs {DISTRIBUTION}==0.7.0, whose wheel ships tritonserver 2.51; "
    "Linux x86_64 with glibc >= 2.35 only)"
)


@dataclass(frozen=True)
class TritonInstall:
    """Where the wheel keeps the server; ``version`` is the wheel's (0.7.0 ships Triton 2.51)."""

    binary: Path
    backends: Path
    stub: Path
    libs: Path
    version: str


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def find_tritonserver(distribution: str = DISTRIBUTION) -> TritonInstall:
    """The server binary, backends and Python stub inside the installed wheel."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise TritonServerError(
            f"tritonserver is not installed: the Python package {distribution} is missing "
            f"from {sys.prefix}; {_INSTALL_HINT}"
        ) from None
    root = Path(str(dist.locate_file("pytriton"))) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    backends = root / "backends"
    stubs = root / "python_backend_stubs"
    stub = stubs / _python_version() / STUB_NAME
    libs = Path(str(dist.locate_file("nvidia_pytriton.libs")))
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise TritonServerError(
            f"{distribution} {dist.version} has no runnable {binary}; {_INSTALL_HINT}"
        )
    if not (backends / "python" / "libtriton_python.so").is_file():
        raise TritonServerError(
            f"{distribution} {dist.version} lacks the Python backend in {backends}"
        )
    if not stub.is_file():
        available = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
        raise TritonServerError(
            f"{distribution} {dist.version} has no Python backend stub for Python "
            f"{_python_version()} (it has: {', '.join(available) or 'none'})"
        )
    if not libs.is_dir():
        raise TritonServerError(f"{distribution} {dist.version}: library folder {libs} is missing")
    return TritonInstall(
        binary=binary, backends=backends, stub=stub, libs=libs, version=dist.version
    )


def prepare_backends(state_dir: Path, *, install: TritonInstall | None = None) -> Path:
    """``<state_dir>/triton/backends``: the wheel's backends plus our Python's stub.

    Copied once and reused while the stamp (wheel version, Python version, source) matches;
    a new copy is built aside and swapped in, so a concurrent start never sees half a folder.
    """
    install = install or find_tritonserver()
    target = Path(state_dir) / "triton" / "backends"
    stamp = (
        f"{DISTRIBUTION} {install.version}\npython {_python_version()}\n"
        f"source {install.backends}\nstub {install.stub}\n"
    )
    if _stamp_matches(target, stamp):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".backends-", dir=target.parent))
    try:
        shutil.copytree(install.backends, staging, dirs_exist_ok=True)
        stub = staging / "python" / STUB_NAME
        shutil.copy2(install.stub, stub)
        stub.chmod(0o755)
        (staging / STAMP_NAME).write_text(stamp)
        old = target.with_name(f".backends-old-{uuid.uuid4().hex}")
        with contextlib.suppress(FileNotFoundError):
            target.rename(old)
        try:
            staging.rename(target)
        except OSError:
            if not _stamp_matches(target, stamp):  # not a concurrent twin: a real failure
                raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        raise TritonServerError(f"cannot prepare Triton backends in {target}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("prepared Triton backends in %s (%s %s)", target, DISTRIBUTION, install.version)
    return target


def _stamp_matches(target: Path, stamp: str) -> bool:
    try:
        current = (target / STAMP_NAME).read_text()
    except OSError:
        return False
    return current == stamp and (target / "python" / STUB_NAME).is_file()


def triton_environment(
    install: TritonInstall, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment tritonserver and its Python stubs need (see the module docstring)."""
    env = dict(os.environ if base is None else base)
    python_bin = str(Path(sys.executable).parent)  # the venv's bin, holding its python3
    env["PATH"] = os.pathsep.join(p for p in (python_bin, env.get("PATH", "")) if p)
    # Each model instance is its own process: BLAS/OpenMP pools per stub only oversubscribe
    # the cores (measured: feature extraction took ~2x the CPU with default thread pools).
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    # The server gives large buffers back (a request's size is the client's choice); the
    # preprocessor's stubs keep freed memory through mallopt (genreops.core.allocator).
    for name, value in SERVER_MALLOC_ENV.items():
        env.setdefault(name, value)
    lib_dirs: list[str] = []
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        lib_dirs.append(str(libdir))
    base_lib = str(Path(sys.base_prefix) / "lib")
    if base_lib not in lib_dirs:
        lib_dirs.append(base_lib)
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        logger.warning(
            "this Python has no shared libpython; the Triton Python stub may load another one"
        )
    lib_dirs.append(str(install.libs))
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
    return env
