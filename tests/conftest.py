"""Fixtures shared by every test layer."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from helpers import DATABASE, SERVER, postgres_or_skip, synthetic_feature_frame

# Offline machines: telemetry only produces errors. Set before Prefect or MLflow is imported.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# a stack left running by `make demo` must not lend its endpoints to the tests
os.environ.setdefault("GENREOPS_USE_STACK_ENV", "false")


SHARED_ENSEMBLE = "published_ensemble"  # the session fixture too costly to build twice
FIRST = "tests/e2e/test_platform.py"  # the longest module: it starts at once on its worker
TESTS = Path(__file__).resolve().parent


@functools.cache
def _ensemble_modules() -> frozenset[str]:
    """Test modules (node ids) that use the published ensemble: read from their source, as the
    xdist controller collects nothing itself."""
    root = TESTS.parent
    return frozenset(
        path.relative_to(root).as_posix()
        for path in TESTS.rglob("test_*.py")
        if SHARED_ENSEMBLE in path.read_text()
    )


def _unit_of_work(nodeid: str) -> str:
    """What one worker runs whole: a module (its module fixtures are built once), or every
    module using the published ensemble together (that session fixture is built once)."""
    module = nodeid.split("::", 1)[0]
    return SHARED_ENSEMBLE if module in _ensemble_modules() else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` runs ``pytest -n 2``: modules are spread over the workers by
    ``_unit_of_work``, in collection order (the longest units first, see below)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit_of_work(nodeid)

    config.option.loadscopereorder = False  # our order, not "most tests first"
    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The two longest units first: units are handed out in this order, and a long one
    last would keep one core idle at the end."""
    rank = {SHARED_ENSEMBLE: 0, FIRST: 1}  # the rest keep their order after these
    items.sort(key=lambda item: rank.get(_unit_of_work(item.nodeid), 2))


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect's own test harness: a real temporary Prefect server and database for the session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        # Exported so Dask worker processes report to the same server instead of each
        # starting a temporary one (see flows/runtime.py).
        os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
        try:
            yield
        finally:
            os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture
def feature_frame() -> Callable[..., pd.DataFrame]:
    return synthetic_feature_frame


@pytest.fixture(scope="session")
def make_schema() -> Iterator[Callable[[], str]]:
    """Fresh schemas ``test_<session>_<n>`` in genreops_test; only those are dropped afterwards."""
    psycopg2 = postgres_or_skip()
    connection = psycopg2.connect(f"{SERVER}/{DATABASE}", connect_timeout=5)
    connection.autocommit = True
    session = uuid.uuid4().hex[:10]
    made: list[str] = []

    def make() -> str:
        name = f"test_{session}_{len(made)}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{name}"')  # generated identifier
        made.append(name)
        return name

    try:
        yield make
    finally:
        with connection.cursor() as cursor:
            for name in made:
                cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        connection.close()
