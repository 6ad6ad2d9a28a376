"""Atomic file replacement: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` that replaces it only if the block succeeds.

    For writers that need a path (soundfile, pyarrow); the sibling lives in the same folder so
    the final rename stays on one filesystem and is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes | str, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data``; ``durable`` also fsyncs it before the rename."""
    with atomic_target(path) as temporary, temporary.open("wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
