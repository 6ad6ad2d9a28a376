"""Prefect flow ``register-best``: the best two runs become champion and challenger."""

from __future__ import annotations

from prefect import flow, get_run_logger

from genreops.core.settings import get_settings
from genreops.training import registry


@flow(name="register-best")
def register_best(
    top: int = 2,
    model_name: str | None = None,
    table: str | None = None,
    restore_timeout_seconds: float = 120.0,
) -> registry.RegistrySummary:
    """Rank finished training runs by validation G-mean and register the top ones.

    The champion and challenger aliases move together: if the tracking server fails between
    the alias writes, the previous aliases are restored and the run fails with the reason.

    Args:
        top: how many versions to keep ranked (1: champion only; 2: champion and challenger).
        model_name: registered model name (default: the `GENREOPS_MODEL_NAME` setting).
        table: rank only runs trained on this table (its URL or a digest prefix); default:
            every finished run.
        restore_timeout_seconds: how long to keep trying to restore the previous aliases
            when the tracking server fails part-way.
    """
    logger = get_run_logger()
    summary = registry.register_with_settings(
        get_settings(),
        model_name=model_name,
        top=top,
        table=table,
        restore_timeout=restore_timeout_seconds,
    )
    for assignment in summary.assignments:
        logger.info(
            "%s: version %s — %s",
            assignment.alias or f"rank {assignment.rank}",
            assignment.version,
            assignment.reason,
        )
    for candidate, reason in summary.skipped:
        logger.warning("skipped run %s: %s", candidate.run_id, reason)
    logger.info("%s", "; ".join(summary.changes) if summary.changed else "nothing changed")
    return summary
