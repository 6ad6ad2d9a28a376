"""Where flows report to: the configured Prefect server, or one temporary server per command."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def prefect_api() -> Iterator[str | None]:
    """Make sure this process *and the Dask workers it spawns* talk to one Prefect API.

    Without ``PREFECT_API_URL`` Prefect starts a temporary server in each process that runs a
    task, so every Dask worker would start its own: slow, and the runs would be scattered. We
    start Prefect's temporary server once and export its URL, which workers inherit.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=120)
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        yield server.api_url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
