"""Progress hooks for flows called in-process (the CLI draws bars with them).

Kept in its own module: Prefect ships the flow function to Dask workers by value, and a hook
held in the flow module's globals (a closure over a live progress bar) would travel with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

_hooks: list[Callable[[int], None]] = []


@contextmanager
def report_progress(callback: Callable[[int], None]) -> Iterator[None]:
    """Call ``callback(n)`` each time a flow finishes ``n`` more items."""
    _hooks.append(callback)
    try:
        yield
    finally:
        _hooks.remove(callback)


def advance(n: int) -> None:
    for hook in list(_hooks):
        hook(n)
