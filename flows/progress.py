"""Progress hooks for flows called in-process (the CLI draws bars with them).

Kept in its own module: Prefect ships the flow function to Dask workers by value, and a hook
held in the flow module's globals (a closure over a live progress bar) would travel with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

_hooks: list[tuple[Callable[[int], None], Callable[[int], None] | None]] = []


@contextmanager
def report_progress(
    advance: Callable[[int], None], set_total: Callable[[int], None] | None = None
) -> Iterator[None]:
    """Call ``advance(n)`` as a flow finishes ``n`` more items, ``set_total`` once it knows."""
    hook = (advance, set_total)
    _hooks.append(hook)
    try:
        yield
    finally:
        _hooks.remove(hook)


def start(total: int) -> None:
    for _, set_total in list(_hooks):
        if set_total is not None:
            set_total(total)


def advance(n: int) -> None:
    for hook, _ in list(_hooks):
        hook(n)
