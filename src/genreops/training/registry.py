"""The model registry: rank training runs, register the best two, keep the aliases honest.

Ranking is by validation G-mean (ties: corrected G-mean, balanced accuracy, then the older
run). Each family's best run is considered first so champion and challenger come from
different families when they can — the challenger answers while drift holds, and a model that
fails differently is a better fallback. A run whose feature schema differs from the
champion's is never paired with it. Every write happens only when the state differs, so
re-running with nothing new changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from tenacity import RetryCallState, Retrying, stop_before_delay, wait_exponential

from genreops.core.errors import RegistryError
from genreops.core.settings import Settings
from genreops.data.features import RETIRED_SCHEMAS, SCHEMA_VERSION
from genreops.training.search_space import FAMILIES
from genreops.training.tracking import (
    KIND_TRAINING,
    TAG_FAMILY,
    TAG_GENRES,
    TAG_KIND,
    TAG_MODEL_URI,
    TAG_SCHEMA_HASH,
    TAG_SCHEMA_VERSION,
    TAG_TABLE_DIGEST,
    TAG_TABLE_URL,
    TrackingTarget,
    experiment_name,
)

log = logging.getLogger(__name__)

ALIASES = ("champion", "challenger")
CANARY = "canary"  # a retrained version on trial beside the champion (not in ALIASES)
MANAGED_ALIASES = (*ALIASES, CANARY)  # what an alias change reads and puts back as one
RANK_METRIC = "val_gmean"
_TIEBREAK = ("val_gmean_corrected", "val_balanced_accuracy")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
TAG_ROLE = "genreops.role"
TAG_REASON = "genreops.reason"
TAG_CANARY = "genreops.canary"  # on a canary version: published, promoted or withdrawn
TAG_STEP = "genreops.loop."  # + a model event's name, on the registered model: its newest


@dataclass(frozen=True)
class Candidate:
    """A finished training run that could be registered."""

    run_id: str
    family: str
    model_uri: str
    schema_version: str
    schema_hash: str
    metrics: dict[str, float]
    start_time: int
    table_digest: str = ""
    table_url: str = ""
    genres: tuple[str, ...] | None = None  # None: a run logged before genres were tagged

    @property
    def score(self) -> float:
        return self.metrics.get(RANK_METRIC, 0.0)

    def sort_key(self) -> tuple[float, ...]:
        return (
            -self.score,
            *(-self.metrics.get(m, 0.0) for m in _TIEBREAK),
            float(self.start_time),
        )


@dataclass(frozen=True)
class Assignment:
    rank: int
    alias: str | None
    version: str
    candidate: Candidate
    reason: str


@dataclass
class RegistrySummary:
    model_name: str
    candidates: int
    assignments: list[Assignment]
    skipped: list[tuple[Candidate, str]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def _check_name(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise RegistryError(
            f"model name {name!r}: use letters, digits, '_', '.', '-' (at most 255 characters)"
        )
    return name


def collect_candidates(client: Any, families: Sequence[str] = FAMILIES) -> list[Candidate]:
    """Finished training runs with a logged model, best first."""
    experiments = [client.get_experiment_by_name(experiment_name(f)) for f in families]
    ids = [e.experiment_id for e in experiments if e is not None]
    if not ids:
        return []
    runs = client.search_runs(
        ids,
        filter_string=f"tags.`{TAG_KIND}` = '{KIND_TRAINING}' and attributes.status = 'FINISHED'",
        max_results=50000,
    )
    candidates = []
    for run in runs:
        tags = run.data.tags
        if TAG_MODEL_URI not in tags or RANK_METRIC not in run.data.metrics:
            continue  # a study that failed before logging its model
        candidates.append(
            Candidate(
                run_id=run.info.run_id,
                family=tags.get(TAG_FAMILY, "?"),
                model_uri=tags[TAG_MODEL_URI],
                schema_version=tags.get(TAG_SCHEMA_VERSION, "?"),
                schema_hash=tags.get(TAG_SCHEMA_HASH, "?"),
                metrics=dict(run.data.metrics),
                start_time=int(run.info.start_time or 0),
                table_digest=tags.get(TAG_TABLE_DIGEST, ""),
                table_url=tags.get(TAG_TABLE_URL, ""),
                genres=tuple(json.loads(tags[TAG_GENRES])) if TAG_GENRES in tags else None,
            )
        )
    return sorted(candidates, key=Candidate.sort_key)


def matches_table(candidate: Candidate, table: str) -> bool:
    """Was the run trained on ``table``: its URL, the folder holding it, or a digest prefix?"""
    url = candidate.table_url
    folder = table.rstrip("/") + "/"
    in_folder = url.startswith(folder) and "/" not in url[len(folder) :]
    return (
        url == table or in_folder or (len(table) >= 6 and candidate.table_digest.startswith(table))
    )


def choose(
    ranked: Sequence[Candidate], top: int
) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """The champion and up to ``top - 1`` compatible runners-up, families first.

    Runs on a retired feature schema are never chosen (their columns mean other things now).
    A runner-up must know the champion's genres, as it answers in the champion's place; it
    may use other feature columns (each served model picks its own).
    """
    skipped: list[tuple[Candidate, str]] = []
    usable = []
    for candidate in ranked:
        if candidate.schema_version in RETIRED_SCHEMAS:
            skipped.append(
                (
                    candidate,
                    f"trained on retired feature schema v{candidate.schema_version}; "
                    f"retrain on schema v{SCHEMA_VERSION}",
                )
            )
        else:
            usable.append(candidate)
    if not usable:
        return [], skipped
    best_per_family: dict[str, Candidate] = {}
    for candidate in usable:
        best_per_family.setdefault(candidate.family, candidate)
    leaders = sorted(best_per_family.values(), key=Candidate.sort_key)
    ordered = leaders + [c for c in usable if c not in leaders]
    champion = ordered[0]
    chosen = [champion]
    for candidate in ordered[1:]:
        if len(chosen) >= top:
            break
        if None not in (candidate.genres, champion.genres) and candidate.genres != champion.genres:
            skipped.append(
                (
                    candidate,
                    f"knows genres {list(candidate.genres or ())}, the champion "
                    f"{list(champion.genres or ())}",
                )
            )
            continue
        chosen.append(candidate)
    return chosen, skipped


def _reason(rank: int, candidate: Candidate, total: int) -> str:
    figures = ", ".join(
        f"{name}={candidate.metrics[name]:.4f}"
        for name in (RANK_METRIC, *_TIEBREAK, "test_gmean", "test_accuracy")
        if name in candidate.metrics
    )
    return (
        f"rank {rank} of {total} finished runs by {RANK_METRIC} ({figures}); "
        f"family {candidate.family}; run {candidate.run_id}; schema {candidate.schema_hash}"
    )


def _version_tags(candidate: Candidate) -> dict[str, str]:
    tags = {
        "genreops.family": candidate.family,
        "genreops.run_id": candidate.run_id,
        "genreops.schema_version": candidate.schema_version,
        "genreops.schema_hash": candidate.schema_hash,
    }
    for name in (RANK_METRIC, "val_accuracy", "test_gmean", "test_accuracy"):
        if name in candidate.metrics:
            tags[f"genreops.{name}"] = f"{candidate.metrics[name]:.6f}"
    return tags


def _ensure_registered_model(client: Any, name: str, changes: list[str]) -> Any:
    try:
        return client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    changes.append(f"created registered model {name}")
    client.create_registered_model(
        name, description="Genre classifiers from genreops; see the champion/challenger aliases."
    )
    return client.get_registered_model(name)


def register_best(
    target: TrackingTarget,
    *,
    model_name: str = "genre-classifier",
    top: int = 2,
    families: Sequence[str] = FAMILIES,
    table: str | None = None,
    restore_timeout: float = 120.0,
) -> RegistrySummary:
    """Register the top runs as versions of ``model_name``; set champion/challenger aliases.

    ``table`` (a table URL or a digest prefix) ranks only the runs trained on that table: runs
    on other tables (the synthetic demo corpus, say) have scores that are not comparable.

    Versions and their tags are written first, the aliases last and all together: if the
    tracking server fails part-way, the previous aliases are restored (waiting up to
    ``restore_timeout`` seconds for the server) and a RegistryError names what failed.
    """
    if top < 1:
        raise RegistryError("top must be at least 1")
    name = _check_name(model_name)
    target.activate()
    client = mlflow.MlflowClient()
    try:
        ranked = collect_candidates(client, families)
        if not ranked:
            raise RegistryError(
                f"no finished training runs in {target.tracking_uri} "
                f"(experiments {', '.join(experiment_name(f) for f in families)}); "
                "run `genreops train` first"
            )
        if table:
            tables = sorted({c.table_url for c in ranked if c.table_url})
            ranked = [c for c in ranked if matches_table(c, table)]
            if not ranked:
                raise RegistryError(
                    f"no finished training run on table {table!r}; runs exist on "
                    f"{len(tables)} table(s): {', '.join(tables[:5]) or 'none recorded'}"
                )
        chosen, skipped = choose(ranked, top)
        summary = RegistrySummary(name, len(ranked), [], skipped)
        _ensure_registered_model(client, name, summary.changes)
        by_run: dict[str, Any] = {}
        for existing in client.search_model_versions(f"name='{name}'"):
            known = by_run.get(existing.run_id or "")
            if known is None or int(existing.version) < int(known.version):
                by_run[existing.run_id or ""] = existing

        # 1. every chosen run has a version (new versions carry their evidence as tags)
        for rank, candidate in enumerate(chosen, start=1):
            version: Any = by_run.get(candidate.run_id)
            if version is None:
                version = mlflow.register_model(
                    candidate.model_uri, name, tags=_version_tags(candidate)
                )
                by_run[candidate.run_id] = version
                summary.changes.append(
                    f"registered {candidate.run_id} as version {version.version}"
                )
            alias = ALIASES[rank - 1] if rank <= len(ALIASES) else None
            summary.assignments.append(
                Assignment(
                    rank,
                    alias,
                    str(version.version),
                    candidate,
                    _reason(rank, candidate, len(ranked)),
                )
            )

        # 2. roles and reasons, written only where they differ
        roles = {a.version: (a.alias or f"rank-{a.rank}", a.reason) for a in summary.assignments}
        for version in client.search_model_versions(f"name='{name}'"):
            role, reason = roles.get(str(version.version), ("retired", None))
            tags = dict(version.tags or {})
            if tags.get(TAG_ROLE, "retired" if role == "retired" else None) != role:
                client.set_model_version_tag(name, version.version, TAG_ROLE, role)
                summary.changes.append(f"version {version.version}: role {role}")
            if reason is not None and tags.get(TAG_REASON) != reason:
                client.set_model_version_tag(name, version.version, TAG_REASON, reason)

        # 3. aliases last, champion first, so a reader never sees a challenger without one;
        #    all or nothing: a failed write puts the previous aliases back (see _set_aliases)
        wanted: dict[str, str | None] = {
            a.alias: a.version for a in summary.assignments if a.alias is not None
        }
        wanted.update(dict.fromkeys(ALIASES[len(summary.assignments) :]))
        summary.changes += _set_aliases(
            client, name, wanted, target.tracking_uri, restore_timeout=restore_timeout
        )
        return summary
    except MlflowException as error:
        raise RegistryError(f"model registry at {target.tracking_uri}: {error.message}") from error


def register_with_settings(
    settings: Settings,
    *,
    model_name: str | None = None,
    top: int = 2,
    table: str | None = None,
    restore_timeout: float = 120.0,
) -> RegistrySummary:
    """``register_best`` on the settings' tracking store; ``model_name`` None: the setting."""
    return register_best(
        TrackingTarget.from_settings(settings),
        model_name=model_name or settings.model_name,
        top=top,
        table=table,
        restore_timeout=restore_timeout,
    )


def register_canary(
    target: TrackingTarget,
    table: str,
    *,
    model_name: str = "genre-classifier",
    families: Sequence[str] = FAMILIES,
    reason: str = "",
) -> Assignment:
    """Register the best run trained on ``table`` and point the ``canary`` alias at it.

    The champion and challenger aliases stay: a canary earns its promotion on live traffic
    first. It must know the champion's genres, as it answers in the champion's place.
    """
    name = _check_name(model_name)
    target.activate()
    client = mlflow.MlflowClient()
    try:
        ranked = [c for c in collect_candidates(client, families) if matches_table(c, table)]
        chosen, _skipped = choose(ranked, 1)
        if not chosen:
            raise RegistryError(f"no finished training run on table {table!r} to register")
        best = chosen[0]
        _ensure_registered_model(client, name, [])
        aliases = client.get_registered_model(name).aliases or {}
        if "champion" in aliases:
            champion = client.get_model_version(name, aliases["champion"])
            run = client.get_run(str(champion.run_id))
            genres = run.data.tags.get(TAG_GENRES)
            if genres and best.genres is not None and tuple(json.loads(genres)) != best.genres:
                raise RegistryError(
                    f"the retrained run {best.run_id} knows genres {list(best.genres)}, the "
                    f"champion {json.loads(genres)}: it cannot answer in its place"
                )
        existing = [v for v in client.search_model_versions(f"name='{name}'")
                    if v.run_id == best.run_id]  # fmt: skip
        version = (
            existing[0]
            if existing
            else mlflow.register_model(best.model_uri, name, tags=_version_tags(best))
        )
        why = _reason(1, best, len(ranked)) + (f"; retrained because {reason}" if reason else "")
        client.set_model_version_tag(name, version.version, TAG_ROLE, CANARY)
        client.set_model_version_tag(name, version.version, TAG_REASON, why)
        client.set_registered_model_alias(name, CANARY, version.version)
        return Assignment(1, CANARY, str(version.version), best, why)
    except MlflowException as error:
        raise RegistryError(f"model registry at {target.tracking_uri}: {error.message}") from error


def _current_aliases(client: Any, name: str) -> dict[str, str]:
    aliases = client.get_registered_model(name).aliases or {}
    return {alias: str(version) for alias, version in aliases.items() if alias in MANAGED_ALIASES}


def _write_alias(client: Any, name: str, alias: str, version: str | None) -> None:
    if version is None:
        client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, version)


def _show_aliases(aliases: dict[str, str | None]) -> str:
    return ", ".join(
        f"{alias} -> {'none' if aliases.get(alias) is None else 'version ' + str(aliases[alias])}"
        for alias in ALIASES
    )


def _set_aliases(
    client: Any,
    name: str,
    wanted: dict[str, str | None],
    tracking_uri: str,
    *,
    restore_timeout: float,
) -> list[str]:
    """Move the aliases to ``wanted`` (None: remove) as one change: all of them or none.

    MLflow sets one alias per request, so a tracking server that stops between two writes
    would leave a champion of one ranking next to a challenger of another: a pair nobody
    chose, which serving would publish. The previous aliases are read right before the first
    write; when a write fails, every alias is put back as it was (retrying while the server
    is away, up to ``restore_timeout`` seconds) and the error says what failed and in which
    state the aliases are.
    """
    previous = _current_aliases(client, name)  # the last read: nothing is written before it
    steps = [
        (alias, version) for alias, version in wanted.items() if previous.get(alias) != version
    ]
    changes: list[str] = []
    for alias, version in steps:
        try:
            _write_alias(client, name, alias, version)
        except Exception as error:  # MLflow wraps connection errors; anything else: same answer
            doing = (
                f"removing alias {alias}"
                if version is None
                else f"setting alias {alias} -> version {version}"
            )
            cause = _message(error)
            old = {a: previous.get(a) for a in ALIASES}
            new = {a: wanted.get(a, previous.get(a)) for a in ALIASES}
            outcome = _restore_aliases(client, name, previous, restore_timeout)
            if outcome is None:
                state = f"the previous aliases are in place ({_show_aliases(old)})"
            else:
                state = (
                    f"the previous aliases could not be restored within "
                    f"{restore_timeout:.0f} s ({outcome}); they may be half-set: run "
                    f"register-best again once the server answers (intended: "
                    f"{_show_aliases(new)}; before: {_show_aliases(old)})"
                )
            raise RegistryError(
                f"model registry at {tracking_uri}: {doing} of {name} failed ({cause}); {state}"
            ) from error
        changes.append(
            f"removed {alias} (no compatible run)"
            if version is None
            else f"{alias} -> version {version}"
        )
    return changes


def _restore_aliases(
    client: Any, name: str, previous: dict[str, str], timeout: float
) -> str | None:
    """Put every alias back as in ``previous``; None when done, else the last error."""

    def restore() -> None:
        now = _current_aliases(client, name)
        for alias in MANAGED_ALIASES:
            if now.get(alias) != previous.get(alias):
                _write_alias(client, name, alias, previous.get(alias))
        if _current_aliases(client, name) != previous:
            raise RegistryError("the aliases changed again while they were being restored")

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning("restoring the aliases of %s failed (%s); retrying", name, _message(error))

    try:
        Retrying(
            stop=stop_before_delay(timeout),
            wait=wait_exponential(multiplier=1, max=10),
            before_sleep=warn,
            reraise=True,
        )(restore)
    except Exception as error:
        return _message(error)
    return None


class CanaryGoneError(RegistryError):
    """The ``canary`` alias no longer names the version on trial (moved or removed by hand)."""


@dataclass(frozen=True)
class CanaryOutcome:
    """What a promotion or withdrawal changed in the registry."""

    canary: str  # the version on trial
    champion: str  # the champion after it
    challenger: str | None
    changes: list[str]


def conclude_canary(
    target: TrackingTarget,
    *,
    model_name: str,
    version: str,
    promote: bool,
    figures: dict[str, Any],
    restore_timeout: float = 60.0,
) -> CanaryOutcome:
    """Promote the canary ``version`` (it becomes the champion, the champion becomes the
    challenger) or withdraw it (the aliases stay); either way the ``canary`` alias goes, all
    aliases as one change, and the version's tags say what happened and on which figures.

    Refuses when the ``canary`` alias no longer names ``version`` (someone moved it).
    """
    name = _check_name(model_name)
    target.activate()
    client = mlflow.MlflowClient()
    try:
        aliases = _current_aliases(client, name)
        if aliases.get(CANARY) != version:
            raise CanaryGoneError(
                f"{name}@{CANARY} is {aliases.get(CANARY) or 'not set'}, not version {version}: "
                "that canary is no longer on trial"
            )
        wanted: dict[str, str | None] = {CANARY: None}
        if promote:
            wanted.update(champion=version, challenger=aliases.get("champion"))
        changes = _set_aliases(
            client, name, wanted, target.tracking_uri, restore_timeout=restore_timeout
        )
        state = "promoted" if promote else "withdrawn"
        client.set_model_version_tag(name, version, TAG_CANARY, state)
        client.set_model_version_tag(name, version, TAG_ROLE, "champion" if promote else state)
        client.set_model_version_tag(name, version, f"{TAG_CANARY}.figures", json.dumps(figures))
        if promote and aliases.get("champion"):
            client.set_model_version_tag(name, aliases["champion"], TAG_ROLE, "challenger")
        after = _current_aliases(client, name)
    except MlflowException as error:
        raise RegistryError(f"model registry at {target.tracking_uri}: {error.message}") from error
    return CanaryOutcome(version, after.get("champion", ""), after.get("challenger"), changes)


def tag_canary_share(target: TrackingTarget, model_name: str, tag: str, share: float) -> None:
    """The share of traffic the current canary answers, as a tag of its version."""
    name = _check_name(model_name)
    target.activate()
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, CANARY)
        client.set_model_version_tag(name, version.version, tag, f"{share:g}")
    except MlflowException as error:
        raise RegistryError(
            f"model registry at {target.tracking_uri}: no canary to publish ({error.message})"
        ) from error


def tag_step(
    target: TrackingTarget,
    model_name: str,
    event: str,
    detail: dict[str, Any],
    version: str | None = None,
) -> None:
    """A step of the retraining loop as MLflow tags: ``genreops.loop.<event>`` on the
    registered model (its newest occurrence) and, when given, on the version it concerns."""
    name = _check_name(model_name)
    target.activate()
    client = mlflow.MlflowClient()
    value = json.dumps(detail, default=str)[:5000]  # MLflow caps tag values
    try:
        client.set_registered_model_tag(name, TAG_STEP + event, value)
        if version is not None:
            client.set_model_version_tag(name, version, TAG_STEP + event, value)
    except MlflowException as error:
        raise RegistryError(f"model registry at {target.tracking_uri}: {error.message}") from error


def _message(error: BaseException | None) -> str:
    return str(getattr(error, "message", None) or error)


@dataclass(frozen=True)
class VersionRow:
    version: str
    aliases: list[str]
    family: str
    run_id: str
    schema_hash: str
    metrics: dict[str, float]
    created: int


def list_versions(target: TrackingTarget, model_name: str = "genre-classifier") -> list[VersionRow]:
    """Every version of the model with its aliases, family, schema and key metrics."""
    name = _check_name(model_name)
    target.activate()
    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            return []
        aliases: dict[str, list[str]] = {}
        for alias, version in (client.get_registered_model(name).aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        rows = []
        for version in versions:
            run = client.get_run(version.run_id) if version.run_id else None
            tags = run.data.tags if run else {}
            rows.append(
                VersionRow(
                    version=str(version.version),
                    aliases=sorted(aliases.get(str(version.version), []), key=_alias_order),
                    family=tags.get(TAG_FAMILY, "?"),
                    run_id=version.run_id or "",
                    schema_hash=tags.get(TAG_SCHEMA_HASH, "?"),
                    metrics=dict(run.data.metrics) if run else {},
                    created=int(version.creation_timestamp or 0),
                )
            )
        return sorted(rows, key=lambda r: -int(r.version))
    except MlflowException as error:
        raise RegistryError(f"model registry at {target.tracking_uri}: {error.message}") from error


def _alias_order(alias: str) -> int:
    return ALIASES.index(alias) if alias in ALIASES else len(ALIASES)
