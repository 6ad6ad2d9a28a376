"""The native local stack: every server the pipeline needs, as plain processes on 127.0.0.1.

``genreops stack up|down|status``. Services, in start order (``down`` goes backwards):

============  ==============================================================================
s3            the embedded S3 server (s3rver), buckets kept in ``<home>/s3`` across restarts
mlflow        MLflow tracking server: SQLite under home (or a database URL), artifacts on S3
prefect       Prefect server: SQLite under home (or ``GENREOPS_PREFECT_DATABASE_URL``)
deployments   ``python -m genreops.flows.deployments``: serves every flow as a Prefect deployment
triton        Triton on the published repository, explicit model control (``genreops publish``
              hot-loads into it); with nothing published it runs with no model loaded
monitor       ``genreops monitor``: live-quality gauges, the alert receiver
alertmanager  Debian's prometheus-alertmanager, delivering every alert to the monitor; skipped
              (with how to get it) when absent
prometheus    Debian's prometheus scraping Triton and the monitor, alerting through
              Alertmanager; skipped (with how to get it) when absent
drift-ui      ``evidently ui`` on ``<home>/drift/workspace``
============  ==============================================================================

Each service runs in its own process group (``down`` stops its workers too) with its output in
``<home>/logs/<service>.log``; what the stack started is recorded in ``<home>/run/<service>.json``
(pid and process start time, so a reused pid is never signalled). Triton's record is the
``run/triton.json`` of ``genreops serve``, so both commands see the same server; a server that
``genreops serve`` started is shown and used but never stopped by the stack.

``up`` also writes ``<home>/stack.env`` (``export`` lines for a shell to ``source``); the
settings read it below every explicit setting, so commands find the running stack by
themselves. ``down`` removes it.

Modules: ``services`` (what runs where: order, ports, endpoints, the env file), ``records``
(the stack's use of the one pid-record format, genreops.core.pidfiles), ``prefect_api`` (the
Prefect server through Prefect's own client: health, deployments served), ``starters`` (one per
service) and ``lifecycle`` (the Stack: status, up, down).
"""

from genreops.platform.stack.lifecycle import ServiceStatus, Stack, down, status, up
from genreops.platform.stack.records import read_record, stop_record
from genreops.platform.stack.services import (
    DEPENDENCIES,
    HOST,
    SERVICES,
    Endpoints,
    Port,
    StackError,
    busy_ports,
    duplicate_ports,
    render_env_file,
    select_services,
    service_ports,
    stack_environment,
)

__all__ = [
    "DEPENDENCIES",
    "HOST",
    "SERVICES",
    "Endpoints",
    "Port",
    "ServiceStatus",
    "Stack",
    "StackError",
    "busy_ports",
    "down",
    "duplicate_ports",
    "read_record",
    "render_env_file",
    "select_services",
    "service_ports",
    "stack_environment",
    "status",
    "stop_record",
    "up",
]
