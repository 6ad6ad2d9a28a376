"""Train model families on a feature table: one tracked Optuna study per family.

What the ``train-model`` flow (and ``genreops train``) does, without Prefect: choose and order
the families, tune each one in an MLflow run (or reuse a finished study of the same table and
settings), and gather the outcomes. One family failing does not cost the others their study;
the failures are reported together at the end.

A soft vote is tuned after the families it is made of: its members' parameters come from
their studies in this run, else (not chosen in this run, or failed) from the newest finished
study of that family on the same table in MLflow; with neither, the soft vote fails and says
which members to train.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genreops.core.errors import GenreopsError, TrainingError
from genreops.core.settings import Settings, get_settings
from genreops.data.feature_table import FeatureTable
from genreops.training import tracking
from genreops.training.search_space import FAMILIES, SOFT_VOTE, SearchSpace, load_search_spaces
from genreops.training.tuning import TrialReport, tune

Log = logging.Logger | logging.LoggerAdapter[Any]
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FamilyOutcome:
    """What one family's study produced (light: the model itself lives in MLflow)."""

    family: str
    run_id: str
    model_uri: str
    study_name: str
    best_params: dict[str, object]
    validation: dict[str, float]
    test: dict[str, float]
    trials: dict[str, int]
    seconds: float
    reused: bool = False  # an earlier study of the same table and settings, not retrained


@dataclass
class TrainingSummary:
    table_url: str
    schema_hash: str
    rows: dict[str, int]
    outcomes: list[FamilyOutcome] = field(default_factory=list)
    columns: str = ""  # how the table was read: label and id columns, left-out columns

    @classmethod
    def of(cls, table: FeatureTable) -> TrainingSummary:
        """An empty summary of ``table``: its URL, schema and rows per split."""
        rows = table.split.value_counts().to_dict()
        return cls(
            table.url,
            table.schema_hash,
            {str(k): int(v) for k, v in rows.items()},
            columns=table.describe_columns(),
        )


def describe_table(table: FeatureTable) -> str:
    """One line for the log: size, genres, split and how the columns were read."""
    return (
        f"{table.url}: {len(table.labels)} rows x {len(table.feature_names)} features, "
        f"{len(table.genres)} genres, split {table.split.value_counts().to_dict()} from "
        f"{table.split_source} ({table.describe_columns()})"
    )


def choose_families(
    families: Sequence[str] | None,
    spaces: Mapping[str, SearchSpace],
    search_space_file: str | None = None,
) -> list[str]:
    """The families to tune, in order: as asked (default: every one with a search space),
    without repeats, the soft vote last (it needs its members' studies).

    Fails before any study starts on an unknown family or one without a search space.
    """
    chosen = list(dict.fromkeys(families or [f for f in FAMILIES if f in spaces]))
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise TrainingError(f"unknown model family {unknown[0]!r} (known: {', '.join(FAMILIES)})")
    missing = [f for f in chosen if f not in spaces]
    if missing:
        raise TrainingError(
            f"no search space for {', '.join(missing)} in "
            f"{search_space_file or 'the default search spaces'}"
        )
    chosen.sort(key=lambda family: family == SOFT_VOTE)
    return chosen


def family_study_key(
    table: FeatureTable,
    family: str,
    space: SearchSpace,
    *,
    trials: int,
    timeout: float | None,
    seed: int,
    cv_folds: int,
    cv_max_rows: int,
    members: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """What a study is asked to do; a finished study with this key need not run again.

    A soft vote's study depends on its members' parameters too: new members, new study.
    Other families ignore ``members``.
    """
    extra = {"members": members} if family == SOFT_VOTE else {}
    return tracking.study_key(
        table.digest,
        family,
        space.as_dict(),
        trials=trials,
        timeout=timeout,
        seed=seed,
        cv_folds=cv_folds,
        cv_max_rows=cv_max_rows,
        **extra,
    )


def outcome_of_run(run: Any, family: str) -> FamilyOutcome:
    """A finished study's outcome, read back from its MLflow run (``reused``)."""
    metrics, params = run.data.metrics, run.data.params
    return FamilyOutcome(
        family=family,
        run_id=run.info.run_id,
        model_uri=run.data.tags[tracking.TAG_MODEL_URI],
        study_name=params.get("study_name", ""),
        best_params=tracking.run_params(run),
        validation={k[4:]: v for k, v in metrics.items() if k.startswith("val_")},
        test={k[5:]: v for k, v in metrics.items() if k.startswith("test_")},
        trials={
            "complete": int(metrics.get("trials_complete", 0)),
            "pruned": int(metrics.get("trials_pruned", 0)),
            "fail": int(metrics.get("trials_failed", 0)),
        },
        seconds=0.0,
        reused=True,
    )


def member_params(
    target: tracking.TrackingTarget,
    table: FeatureTable,
    members: Sequence[str],
    outcomes: Sequence[FamilyOutcome],
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each soft-vote member's tuned parameters: this run's study, else the newest one on
    this table in MLflow.

    Returns the parameters and, per member, where they came from (for the log).
    """
    found: dict[str, dict[str, Any]] = {}
    sources = []
    for member in members:
        outcome = next((o for o in outcomes if o.family == member), None)
        if outcome is not None:
            found[member] = dict(outcome.best_params)
            sources.append(f"{member}: run {outcome.run_id} (this run)")
            continue
        earlier = tracking.latest_study(target, member, table.digest)
        if earlier is not None:
            found[member] = tracking.run_params(earlier)
            sources.append(f"{member}: run {earlier.info.run_id} (earlier study of this table)")
    missing = [m for m in members if m not in found]
    if missing:
        raise TrainingError(
            f"{SOFT_VOTE}: no tuned {', '.join(missing)} model on this table (members: "
            f"{', '.join(members)}); train {'it' if len(missing) == 1 else 'them'} first or "
            f"in the same run (e.g. --family {' --family '.join(missing)} --family {SOFT_VOTE}), "
            "or change the members in the search space file"
        )
    return found, sources


def tune_family(
    table: FeatureTable,
    family: str,
    *,
    trials: int,
    timeout: float | None = None,
    seed: int = 0,
    study_storage: str | None = None,
    search_space_file: str | None = None,
    skip_trained: bool = False,
    cv_folds: int | None = None,
    members: dict[str, dict[str, Any]] | None = None,
    settings: Settings | None = None,
    advance: Callable[[int], None] | None = None,
    log: Log = _log,
) -> FamilyOutcome:
    """One family's study in its own MLflow run; the best configuration refit and logged.

    ``skip_trained``: a finished study with the same key (table, space, trials, timeout, seed,
    validation settings; a soft vote: and members) is returned instead (``reused``).
    ``cv_folds`` None: the setting. ``advance(n)`` is told of every finished trial (all of
    them at once when the study is reused).
    """
    settings = settings or get_settings()
    step = advance or (lambda n: None)
    space = load_search_spaces(Path(search_space_file) if search_space_file else None)[family]
    target = tracking.TrackingTarget.from_settings(settings)
    folds = settings.cv_folds if cv_folds is None else cv_folds
    validation = {"cv_folds": folds, "cv_max_rows": settings.cv_max_rows}
    key = family_study_key(
        table, family, space, trials=trials, timeout=timeout, seed=seed, members=members,
        **validation,
    )  # fmt: skip
    if skip_trained and (earlier := tracking.find_study(target, family, key)) is not None:
        log.info(
            "%s: already trained on this table with these settings (run %s); skipped",
            family,
            earlier.info.run_id,
        )
        step(trials)
        return outcome_of_run(earlier, family)
    run_name = f"{family}-{table.digest[:8]}-seed{seed}"
    with tracking.study_run(target, family, table, run_name=run_name, key=key) as (
        run,
        log_trial,
    ):

        def on_trial(report: TrialReport) -> None:
            log_trial(report)
            step(1)
            log.info(
                "%s trial %d %s: %s (best %s)",
                family,
                report.number,
                report.state,
                "-" if report.value is None else f"{report.value:.4f}",
                "-" if report.best_value is None else f"{report.best_value:.4f}",
            )

        result = tune(
            table,
            space,
            trials=trials,
            timeout=timeout,
            seed=seed,
            storage=study_storage,
            on_trial=on_trial,
            cv_folds=folds,
            cv_max_rows=settings.cv_max_rows,
            members=members,
        )
        model_uri = tracking.log_result(
            result,
            table,
            space.as_dict(),
            settings_summary={
                "trials": trials,
                "timeout": timeout,
                "seed": seed,
                "study_storage": (study_storage or "in-memory").split("@")[-1],
                "validation": result.scheme,
                **validation,
            },
        )
    log.info(
        "%s: val G-mean %.4f (%s), test accuracy %s (run %s)",
        family,
        result.validation.metrics["gmean"],
        result.scheme,
        f"{result.test.metrics['accuracy']:.4f}" if result.test else "-",
        run.info.run_id,
    )
    return FamilyOutcome(
        family=family,
        run_id=run.info.run_id,
        model_uri=model_uri,
        study_name=result.study_name,
        best_params=result.best_params,
        validation=result.validation.metrics,
        test=result.test.metrics if result.test else {},
        trials=result.counts,
        seconds=result.seconds,
    )


TuneOne = Callable[[str, dict[str, dict[str, Any]] | None], FamilyOutcome]


def train_families(
    table: FeatureTable,
    families: Sequence[str],
    spaces: Mapping[str, SearchSpace],
    tune_one: TuneOne,
    *,
    target: tracking.TrackingTarget,
    log: Log = _log,
) -> TrainingSummary:
    """``tune_one(family, members)`` per family in order (``members``: a soft vote's tuned
    member parameters, else None); every failure is collected and raised at the end as one
    TrainingError naming the failed families and those that finished.

    The caller decides how a family runs (the flow: as a Prefect task, ``tune_family``).
    """
    summary = TrainingSummary.of(table)
    failures = []
    for family in families:
        try:
            members = None
            if family == SOFT_VOTE:
                members, sources = member_params(
                    target, table, spaces[family].members, summary.outcomes
                )
                log.info("%s members: %s", family, "; ".join(sources))
            summary.outcomes.append(tune_one(family, members))
        except GenreopsError as error:
            # one family failing must not cost the others their study
            log.error("%s failed: %s", family, error)
            message = str(error)
            failures.append(message if message.startswith(family) else f"{family}: {message}")
    if failures:
        done = ", ".join(o.family for o in summary.outcomes) or "none"
        raise TrainingError(f"{'; '.join(failures)} (finished: {done})")
    return summary
