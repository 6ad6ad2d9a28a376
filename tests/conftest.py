"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

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
FIRST = ("tests/e2e/test_platform.py",)  # the longest module starts at once on its worker


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test`: ``-n 2 --dist loadgroup``) every module runs whole on
    one worker, so its module fixtures (a running stack, a server) are built once, and every
    module that uses the published ensemble runs on the same worker, so that session fixture
    (training, publishing, a tritonserver) is built once. The two longest units go first:
    xdist hands out units in this order, and a long one last would keep one core idle."""
    uses_ensemble = {
        item.nodeid.split("::")[0]
        for item in items
        if SHARED_ENSEMBLE in getattr(item, "fixturenames", ())
    }

    def group(item: pytest.Item) -> str:
        module = item.nodeid.split("::")[0]
        return SHARED_ENSEMBLE if module in uses_ensemble else module

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: (group(item) != SHARED_ENSEMBLE, group(item) not in FIRST))


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
