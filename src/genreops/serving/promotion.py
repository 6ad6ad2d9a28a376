"""The canary's life after training: published beside the champion, then promoted or withdrawn.

Each step of the retraining loop is recorded the same way (``record_step``): a model event in
the monitoring store (which Grafana shows as an annotation and ``genreops models`` lists) and
MLflow tags on the registered model and on the version concerned. An MLflow registry that is
away never takes a step back: the store's event is what the loop itself reads, so a failed tag
is logged and the step goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from genreops.core.errors import RegistryError
from genreops.core.settings import Settings
from genreops.monitoring.canary import PROMOTED, PUBLISHED, WITHDRAWN, CanaryVerdict
from genreops.monitoring.store import MonitoringWriter
from genreops.serving.publish import (
    CANARY_SHARE_TAG,
    PublishResult,
    publish_and_record,
    publishing,
)
from genreops.training import registry
from genreops.training.tracking import TrackingTarget

log = logging.getLogger(__name__)


def record_step(
    settings: Settings,
    event: str,
    detail: dict[str, Any],
    *,
    version: str | None = None,
    writer: MonitoringWriter | None = None,
) -> None:
    """One step of the loop: a model event in the store, and MLflow tags (best effort)."""
    row = {"event": event, "detail": detail}
    if writer is not None:
        writer.submit_model_event(row)
        writer.flush(timeout=10)
    else:
        with MonitoringWriter(settings.monitoring_db_url, settings.monitoring_spool_dir) as own:
            own.submit_model_event(row)
    try:
        registry.tag_step(
            TrackingTarget.from_settings(settings), settings.model_name, event, detail, version
        )
    except RegistryError as error:
        log.warning("step %s is recorded in the store but not tagged in MLflow: %s", event, error)


def _published(result: PublishResult) -> dict[str, Any]:
    return {
        "repository_version": result.version,
        "champion": result.champion.label,
        "challenger": result.challenger.label,
        "canary": result.canary.label if result.canary is not None else None,
        "loaded_into": result.server_url,
    }


def publish_canary(
    settings: Settings, *, share: float | None = None, server_url: str | None = None
) -> PublishResult:
    """Publish the registry's aliases, canary included (answering ``share`` of all traffic;
    default GENREOPS_CANARY_SHARE, kept as a tag of its version so that any later
    publication serves it with the same share), and record the canary's trial start.

    Raises when the registry names no canary (nothing to put on trial).
    """
    share = settings.canary_share if share is None else share
    registry.tag_canary_share(
        TrackingTarget.from_settings(settings), settings.model_name, CANARY_SHARE_TAG, share
    )
    with publishing(settings.repository):  # no other publication between the two records
        result = publish_and_record(settings, server_url=server_url)
        if result.canary is None:
            raise RegistryError(f"{settings.model_name}@canary is not set: no canary to publish")
        detail = {**_published(result), "share": share}
        record_step(settings, PUBLISHED, detail, version=result.canary.version)
    return result


@dataclass(frozen=True)
class Conclusion:
    verdict: CanaryVerdict
    outcome: registry.CanaryOutcome
    published: PublishResult


def conclude(
    settings: Settings,
    verdict: CanaryVerdict,
    *,
    writer: MonitoringWriter | None = None,
    server_url: str | None = None,
) -> Conclusion:
    """Promote or withdraw the canary as ``verdict`` says, publish the aliases that result
    (Triton loads them) and record the step."""
    if verdict.promote is None:
        raise ValueError(f"no verdict yet: {verdict.message}")
    with publishing(settings.repository):  # the aliases, the publication and the record: one step
        return _conclude(settings, verdict, verdict.promote, writer, server_url)


def _conclude(
    settings: Settings,
    verdict: CanaryVerdict,
    promoted: bool,
    writer: MonitoringWriter | None,
    server_url: str | None,
) -> Conclusion:
    figures = verdict.figures()
    try:
        outcome = registry.conclude_canary(
            TrackingTarget.from_settings(settings),
            model_name=settings.model_name,
            version=verdict.trial.version,
            promote=promoted,
            figures=figures,
        )
    except registry.CanaryGoneError as error:  # taken off trial by hand: the trial ends here
        promoted = False
        figures["message"] = f"{verdict.trial.canary} withdrawn: {error}"
        outcome = registry.CanaryOutcome(verdict.trial.version, "", None, [])
    published = publish_and_record(settings, server_url=server_url)
    record_step(
        settings,
        PROMOTED if promoted else WITHDRAWN,
        {**_published(published), **figures, "aliases": outcome.changes},
        version=verdict.trial.version,
        writer=writer,
    )
    return Conclusion(verdict, outcome, published)
