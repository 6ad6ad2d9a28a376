"""How the monitor starts the retrain flow, on the session's real Prefect server (the flow
itself, with its canary, is run in tests/integration/test_canary.py)."""

from __future__ import annotations

from uuid import UUID

import pytest

from genreops.core.settings import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_the_monitor_starts_the_retrain_deployment_and_sees_it_until_it_ends() -> None:
    """The Prefect side of the monitor's trigger, on the session's real Prefect server."""
    from genreops.flows.deployments import DEPLOYMENTS, register
    from genreops.flows.retrain import retrain_run_state, start_retrain_run
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    from genreops.monitoring.retraining import RetrainReason

    (spec,) = [s for s in DEPLOYMENTS if s.name == "retrain"]
    assert register(get_settings(), [spec]) == ["retrain/retrain"]
    run_id = start_retrain_run(RetrainReason("drift", "the gate stayed open"))
    assert retrain_run_state(run_id).active  # scheduled: no worker polls its pool in this test
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        settings = get_settings()  # the monitor's trials and canary share go with the run
        assert run.parameters == {
            "reason": "the gate stayed open",
            "trials": settings.retrain_trials,
            "canary_share": settings.canary_share,
        }
        assert run.state is not None and run.state.type == StateType.SCHEDULED
        client.set_flow_run_state(run.id, Cancelled(message="stopped by hand"), force=True)
    ended = retrain_run_state(run_id)  # the monitor records it as a failed run
    assert not ended.active and ended.failure == "CANCELLED: stopped by hand"
