"""The stack's Prefect server, asked through Prefect's own client: health, deployments served.

Prefect's client retries 429/502/503 answers and dropped connections with a back-off (a
loaded server answers 503 now and then). Probes, which their callers poll anyway, fail fast
instead: one probe never waits out a back-off.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

from genreops.platform.stack.services import DEPLOYMENT_TAG

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.responses import DeploymentResponse


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def prefect_client(
    api_url: str, *, timeout: float = 30.0, probe: bool = False
) -> Iterator[SyncPrefectClient]:
    """Prefect's synchronous client on ``api_url``, whatever ``PREFECT_API_URL`` says elsewhere.

    ``probe``: no retries (neither Prefect's nor the connection pool's). A loopback API is never
    reached through a proxy named in the environment.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    updates: dict[Any, Any] = {PREFECT_API_URL: api_url.rstrip("/")}
    httpx_settings: dict[str, Any] = {"timeout": timeout}
    if _loopback(api_url):
        httpx_settings["trust_env"] = False
    if probe:
        updates[PREFECT_CLIENT_MAX_RETRIES] = 0
        httpx_settings["transport"] = httpx.HTTPTransport(retries=0)
    with (
        temporary_settings(updates=updates),
        get_client(httpx_settings=httpx_settings, sync_client=True) as client,
    ):
        yield client


def prefect_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """The Prefect server at ``api_url`` answers its health check."""
    with prefect_client(api_url, timeout=timeout, probe=True) as client:
        return client.api_healthcheck() is None


# Limit of one listing; the server's own default (PREFECT_SERVER_API_DEFAULT_LIMIT) is 200 too.
LIST_LIMIT = 200


def read_deployments(
    client: SyncPrefectClient, tags: Sequence[str] = ()
) -> list[DeploymentResponse]:
    """Every deployment (with all of ``tags``), in name order.

    Sort and limit are always sent: this server (Prefect 3.8.8 on the locked FastAPI) answers
    422 to the explicit nulls the client sends for them otherwise.
    """
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
    from prefect.client.schemas.sorting import DeploymentSort

    wanted = DeploymentFilter(tags=DeploymentFilterTags(all_=list(tags))) if tags else None
    return client.read_deployments(
        deployment_filter=wanted, sort=DeploymentSort.NAME_ASC, limit=LIST_LIMIT
    )


def flow_names(client: SyncPrefectClient, flow_ids: Iterable[UUID]) -> dict[UUID, str]:
    """The names of the flows with these ids.

    Through Prefect's client, but not ``read_flows``: it sends a null for every filter left
    out, which this server refuses (422), and an empty filter is not "any" (an empty flow-run
    filter keeps only flows that have runs). So the body names only the filter we mean.
    """
    from prefect.client.schemas.objects import Flow

    ids = [str(flow_id) for flow_id in dict.fromkeys(flow_ids)]
    if not ids:
        return {}
    body = {"flows": {"id": {"any_": ids}}, "limit": LIST_LIMIT}
    flows = Flow.model_validate_list(client.request("POST", "/flows/filter", json=body).json())
    return {flow.id: flow.name for flow in flows}


def served_deployments(api_url: str, since: dt.datetime) -> list[str]:
    """``flow/deployment`` names of our deployments that a worker polled after ``since``.

    A worker polls its work pool every few seconds and the server records it (``last_polled``), so
    this tells a live deployments process from deployments left in the database.
    """
    import httpx
    from prefect.exceptions import PrefectException

    try:
        with prefect_client(api_url, timeout=5.0, probe=True) as client:
            polled = [
                deployment
                for deployment in read_deployments(client, tags=[DEPLOYMENT_TAG])
                if (last := _aware(deployment.last_polled)) is not None and last >= since
            ]
            names = flow_names(client, (deployment.flow_id for deployment in polled))
    except (httpx.HTTPError, PrefectException, OSError, ValueError):
        return []
    return sorted(f"{names.get(d.flow_id, '?')}/{d.name}" for d in polled)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)
