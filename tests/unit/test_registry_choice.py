"""Which runs become champion and challenger, and how their aliases move (no server needed)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from genreops.core.errors import RegistryError
from genreops.data.features import SCHEMA_VERSION
from genreops.training.registry import Candidate, _set_aliases, choose, matches_table

pytestmark = pytest.mark.unit


def _run(
    run_id: str,
    family: str,
    gmean: float,
    schema: str = "s2",
    start: int = 0,
    *,
    version: str = SCHEMA_VERSION,
    genres: tuple[str, ...] | None = ("blues", "rock"),
    table: str = "/data/features.parquet",
) -> Candidate:
    return Candidate(
        run_id=run_id,
        family=family,
        model_uri=f"models:/m-{run_id}",
        schema_version=version,
        schema_hash=schema,
        metrics={"val_gmean": gmean, "val_gmean_corrected": gmean},
        start_time=start,
        table_digest=f"digest{table}",
        table_url=table,
        genres=genres,
    )


def _ranked(*runs: Candidate) -> list[Candidate]:
    return sorted(runs, key=Candidate.sort_key)


def test_champion_and_challenger_come_from_different_families_when_possible() -> None:
    runs = _ranked(_run("x1", "xgboost", 0.90), _run("x2", "xgboost", 0.89), _run("k", "knn", 0.70))
    chosen, skipped = choose(runs, top=2)
    assert [c.run_id for c in chosen] == ["x1", "k"]
    assert skipped == []


def test_a_single_family_still_yields_a_challenger() -> None:
    chosen, _ = choose(_ranked(_run("a", "knn", 0.8), _run("b", "knn", 0.9)), top=2)
    assert [c.run_id for c in chosen] == ["b", "a"]


def test_runs_on_a_retired_schema_are_never_chosen() -> None:
    runs = _ranked(
        _run("v1", "xgboost", 0.99, schema="8c29dbee3f38", version="1"),
        _run("new", "random_forest", 0.90),
        _run("knn", "knn", 0.80),
    )
    chosen, skipped = choose(runs, top=2)
    assert [c.run_id for c in chosen] == ["new", "knn"]
    assert [(c.run_id, reason) for c, reason in skipped] == [
        ("v1", f"trained on retired feature schema v1; retrain on schema v{SCHEMA_VERSION}")
    ]
    assert choose(runs[:1], top=2)[0] == []


def test_the_challenger_may_use_other_columns_but_must_know_the_champions_genres() -> None:
    runs = _ranked(
        _run("public", "svc", 0.95, schema="custom-57"),
        _run("other-genres", "xgboost", 0.90, genres=("jazz", "metal")),
        _run("extracted", "knn", 0.80, schema="v2-full"),
        _run("untagged", "random_forest", 0.70, genres=None),  # logged before genres were tagged
    )
    chosen, skipped = choose(runs, top=3)
    assert [c.run_id for c in chosen] == ["public", "extracted", "untagged"]
    assert [c.run_id for c, _ in skipped] == ["other-genres"]
    assert "knows genres ['jazz', 'metal'], the champion ['blues', 'rock']" in skipped[0][1]


@pytest.mark.parametrize(
    ("table", "matches"),
    [
        ("/data/features.parquet", True),
        ("/data", True),  # the folder `extract` wrote
        ("/data/", True),
        ("digest/data", True),  # a digest prefix
        ("/dat", False),
        ("/", False),
        ("dig", False),  # too short to be a digest prefix
    ],
)
def test_a_table_is_named_by_url_folder_or_digest(table: str, matches: bool) -> None:
    assert matches_table(_run("r", "knn", 0.5), table) is matches


def test_ties_go_to_the_older_run_so_reruns_do_not_flip_aliases() -> None:
    runs = _ranked(_run("later", "knn", 0.9, start=2), _run("earlier", "xgboost", 0.9, start=1))
    chosen, _ = choose(runs, top=1)
    assert [c.run_id for c in chosen] == ["earlier"]


class _FlakyRegistry:
    """An MLflow client's alias calls over a dict; the ``fail_at``-th alias write fails once
    (a tracking server that stops between two writes is hard to time for real)."""

    def __init__(self, aliases: dict[str, str], fail_at: int) -> None:
        self.aliases = dict(aliases)
        self.writes = 0
        self.fail_at = fail_at

    def get_registered_model(self, name: str) -> Any:
        return SimpleNamespace(aliases=dict(self.aliases))

    def _write(self) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise ConnectionError("connection refused")

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._write()
        self.aliases[alias] = version

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self._write()
        del self.aliases[alias]


def test_a_failed_alias_write_puts_the_previous_pair_back_and_says_so() -> None:
    registry = _FlakyRegistry({"champion": "1", "challenger": "2"}, fail_at=2)
    with pytest.raises(RegistryError) as caught:
        _set_aliases(
            registry,
            "m",
            {"champion": "3", "challenger": "4"},
            "http://127.0.0.1:5000",
            restore_timeout=5,
        )
    assert registry.aliases == {"champion": "1", "challenger": "2"}  # champion 3 was undone
    message = str(caught.value)
    assert "setting alias challenger -> version 4" in message
    assert "previous aliases are in place" in message


def test_aliases_move_together_when_every_write_succeeds() -> None:
    registry = _FlakyRegistry({"champion": "1", "challenger": "2"}, fail_at=0)
    changes = _set_aliases(
        registry, "m", {"champion": "2", "challenger": None}, "uri", restore_timeout=5
    )
    assert registry.aliases == {"champion": "2"}
    assert changes == ["champion -> version 2", "removed challenger (no compatible run)"]
