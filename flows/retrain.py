"""Prefect flow ``retrain``: the champion's table plus the labeled clips, trained, registered
as the ``canary`` version and published beside the champion; and how the monitor starts it.

The monitor (genreops.monitoring.retraining) decides when; ``start_retrain_run`` creates a
flow run of the deployment ``retrain/retrain`` on the Prefect server (Prefect 3's open-source
server runs deployments on demand through its API; its automations could also react to
events, but the decision needs the monitoring store, which the monitor already reads, and one
place that rate-limits). ``retrain_run_state`` tells the monitor whether that run is still
scheduled or running, so it never starts a second one, and how it ended when it failed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from genreops.flows.train import train_model
from prefect import flow, get_run_logger

from genreops.core.errors import RegistryError
from genreops.core.settings import Settings, get_settings
from genreops.data.augment import augment_table
from genreops.data.extraction import ExtractOptions
from genreops.data.storage import is_s3_url
from genreops.monitoring.retraining import RetrainReason, RunState
from genreops.monitoring.store import MonitoringStore
from genreops.serving.promotion import publish_canary, record_step
from genreops.training import registry
from genreops.training.tracking import TAG_FAMILY, TAG_TABLE_URL, TrackingTarget

DEPLOYMENT = "retrain/retrain"
MIN_DRIFT_REFERENCE = 20  # labeled clips needed to judge drift against them alone


def _served_pair(settings: Settings) -> tuple[str, list[str]]:
    """The champion's training table and the families of the champion and challenger."""
    import mlflow

    target = TrackingTarget.from_settings(settings)
    target.activate()
    client = mlflow.MlflowClient()
    aliases = client.get_registered_model(settings.model_name).aliases or {}
    if "champion" not in aliases:
        raise RegistryError(
            f"no champion registered for {settings.model_name}: nothing to retrain yet"
        )
    tags = []
    for alias in ("champion", "challenger"):
        if alias in aliases:
            version = client.get_model_version(settings.model_name, aliases[alias])
            tags.append(client.get_run(str(version.run_id)).data.tags)
    table = tags[0].get(TAG_TABLE_URL, "")
    if not table:
        raise RegistryError("the champion's run does not say which table it trained on")
    return table, list(dict.fromkeys(t.get(TAG_FAMILY, "") for t in tags if t.get(TAG_FAMILY)))


def _drift_reference(settings: Settings, table_url: str, run_id: str, clip_ids: set[str]) -> int:
    """The labeled clips' rows, in the canary's columns, as its drift reference: once it is
    promoted, the gate judges traffic against what it was retrained for, so the traffic that
    made it retrain no longer counts as drift. Fewer than MIN_DRIFT_REFERENCE rows: the
    training sample stays the reference. Returns the rows logged."""
    import io

    import mlflow
    import pyarrow.parquet as pq

    from genreops.data.storage import read_bytes
    from genreops.training.tracking import log_drift_reference

    table = pq.read_table(io.BytesIO(read_bytes(table_url, s3=settings.s3))).to_pandas()
    rows = table[table["clip_id"].isin(clip_ids)]
    if len(rows) < MIN_DRIFT_REFERENCE:
        return 0
    target = TrackingTarget.from_settings(settings)
    target.activate()
    schema = mlflow.artifacts.load_dict(f"runs:/{run_id}/feature_schema.json")
    log_drift_reference(target, run_id, rows[list(schema["feature_names"])])
    return len(rows)


def with_members(families: list[str], search_space_file: Path | None = None) -> list[str]:
    """``families`` plus a soft vote's members before it: on a new table the vote needs its
    members tuned in the same run (a champion that is a soft vote made the run fail)."""
    from genreops.training.search_space import SOFT_VOTE, load_search_spaces

    if SOFT_VOTE not in families:
        return families
    spaces = load_search_spaces(search_space_file)
    members = list(spaces[SOFT_VOTE].members)
    return list(dict.fromkeys([*members, *(f for f in families if f != SOFT_VOTE), SOFT_VOTE]))


def _output_url(settings: Settings, base_table: str, stamp: str) -> str:
    if is_s3_url(base_table):
        bucket = base_table.split("/", 3)[2]
        return f"s3://{bucket}/retrain/{stamp}"
    return str(settings.data_dir.resolve() / "retrain" / stamp)


@flow(name="retrain")
def retrain(
    reason: str = "asked for",
    features_url: str | None = None,
    families: list[str] | None = None,
    trials: int | None = None,
    canary_share: float | None = None,
) -> dict[str, Any]:
    """Train on the champion's table plus every labeled clip; register the best as ``canary``
    and publish it: it answers GENREOPS_CANARY_SHARE of the traffic until the monitor promotes
    or withdraws it.

    Each labeled clip (`genreops feedback`, `predict --expect-labels-from-folders`) is read
    from where it was served from (a path or s3:// URL), extracted like any other clip and
    added with its latest label; clips that cannot be read, or whose genre the table does not
    know, are listed and left out. The grown table is written next to the base (under
    `retrain/<time>/`) and is the MLflow dataset input of the new runs.

    Args:
        reason: why (the monitor says: drift that persisted, or accuracy that fell).
        features_url: the base table; default: the one the champion was trained on.
        families: model families to tune; default: the champion's and the challenger's.
        trials: Optuna trials per family; default GENREOPS_RETRAIN_TRIALS.
        canary_share: share of all traffic the canary answers; default GENREOPS_CANARY_SHARE.
    """
    logger = get_run_logger()
    settings = get_settings()
    champion_table, served_families = _served_pair(settings)
    base = features_url or champion_table
    with MonitoringStore(settings.monitoring_db_url) as store:
        labels = store.latest_labels()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    record_step(
        settings, "retrain-started", {"reason": reason, "labels": len(labels), "base": base}
    )
    grown = augment_table(
        base,
        sorted(labels.items()),
        _output_url(settings, base, stamp),
        options=ExtractOptions(
            window_seconds=settings.window_seconds,
            min_seconds=settings.min_seconds,
            max_seconds=settings.max_seconds,
            max_file_bytes=settings.max_file_bytes,
        ),
        s3=settings.s3,
    )
    for line in grown.left_out:
        logger.warning("left out %s", line)
    logger.info(
        "%s: %d base rows + %d labeled clips (%d relabeled, %d left out)",
        grown.url, grown.base_rows, grown.added, grown.replaced, len(grown.left_out),
    )  # fmt: skip
    train_model(
        grown.url,
        families=with_members(families or served_families, settings.search_space_file),
        trials=trials or settings.retrain_trials,
    )
    canary = registry.register_canary(
        TrackingTarget.from_settings(settings),
        grown.url,
        model_name=settings.model_name,
        reason=reason,
    )
    reference_rows = _drift_reference(settings, grown.url, canary.candidate.run_id, set(labels))
    detail = {
        "reason": reason,
        "table": grown.url,
        "base_rows": grown.base_rows,
        "added": grown.added,
        "relabeled": grown.replaced,
        "left_out": len(grown.left_out),
        "canary": f"{settings.model_name}/{canary.version}",
        "family": canary.candidate.family,
        "val_gmean": canary.candidate.score,
        "run_id": canary.candidate.run_id,
        "drift_reference_rows": reference_rows,  # 0: its training sample
    }
    record_step(settings, "retrain-finished", detail, version=canary.version)
    logger.info("canary: version %s (%s)", canary.version, canary.reason)
    share = settings.canary_share if canary_share is None else canary_share
    published = publish_canary(settings, share=share)
    logger.info(
        "published as repository version %d: the canary answers %.0f%% of the traffic%s",
        published.version, 100 * share,
        f" (loaded into {published.server_url})" if published.loaded else "",
    )  # fmt: skip
    return {**detail, "repository_version": published.version}


def start_retrain_run(reason: RetrainReason, settings: Settings | None = None) -> str:
    """A flow run of the ``retrain`` deployment, started now, with the monitor's trials and
    canary share (``settings``; default: this process's); returns its id."""
    from prefect.deployments import run_deployment

    settings = settings or get_settings()
    parameters = {
        "reason": reason.message,
        "trials": settings.retrain_trials,
        "canary_share": settings.canary_share,
    }
    run = run_deployment(DEPLOYMENT, parameters=parameters, timeout=0, as_subflow=False)
    return str(run.id)  # type: ignore[union-attr]


def retrain_run_state(run_id: str) -> RunState:
    """Whether that flow run is still scheduled, pending or running; if it ended without
    completing, its state and Prefect's message."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
    state = run.state
    if state is None or not state.is_final():
        return RunState(active=True)
    if state.is_completed():
        return RunState(active=False)
    return RunState(active=False, failure=f"{state.type.value}: {state.message or 'no message'}")
