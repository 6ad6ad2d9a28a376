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
