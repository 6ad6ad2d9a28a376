"""Prometheus, Alertmanager and the node exporter as plain processes, and their configuration.

The native stack runs Debian's ``prometheus`` (scraping Triton's metrics port, itself and,
when installed, ``prometheus-node-exporter`` for host CPU and memory) with the alert rules of
``configs/prometheus/alerts.yml``, sending firing alerts to Debian's ``prometheus-alertmanager``,
which delivers them to genreops' monitor service (``genreops.monitoring.service``). Ports are
configurable, so the configurations are rendered here rather than copied:
``configs/prometheus/prometheus.yml`` is exactly what ``render_prometheus_config(NATIVE_TARGETS,
rules_path="alerts.yml", alertmanagers=NATIVE_ALERTMANAGERS)`` produces.

The dashboards' queries are checked against a real Prometheus and PostgreSQL by the tests
(tests/grafana_macros.py renders them as Grafana would; tests/prometheus_http.py asks
Prometheus).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from genreops.core.errors import GenreopsError
from genreops.core.processes import http_answers, port_in_use, start_process, stop_process
from genreops.core.resources import config_file

HOST = "127.0.0.1"  # the native stack serves loopback only
ALERT_RULES = config_file("prometheus", "alerts.yml")  # shipped as genreops.configs

# Job names: the alert rules and the dashboard select on them (``up{job="triton"}``).
JOB_PROMETHEUS = "prometheus"
JOB_TRITON = "triton"
JOB_NODE = "node"
JOB_MONITOR = "monitor"  # genreops' monitor service: live-quality gauges
JOB_DASK = "dask"  # the extraction cluster's scheduler (its dashboard's /metrics)
NATIVE_TARGETS: dict[str, list[str]] = {
    JOB_PROMETHEUS: [f"{HOST}:9090"],
    JOB_TRITON: [f"{HOST}:8002"],
    JOB_NODE: [f"{HOST}:9100"],
    JOB_MONITOR: [f"{HOST}:9095"],
    JOB_DASK: [f"{HOST}:8787"],
}
NATIVE_ALERTMANAGERS = [f"{HOST}:9093"]

PROMETHEUS_BINARIES = ("prometheus",)
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian, upstream
NODE_EXPORTER_BINARIES = ("prometheus-node-exporter", "node_exporter")  # Debian, upstream
PROMETHEUS_HINT = "install Debian's package: apt-get install prometheus (or run `make setup`)"
ALERTMANAGER_HINT = (
    "install Debian's package: apt-get install prometheus-alertmanager (or run `make setup`)"
)
NODE_EXPORTER_HINT = (
    "install Debian's package: apt-get install prometheus-node-exporter (or run `make setup`)"
)


class ObservabilityError(GenreopsError):
    """Prometheus or the node exporter cannot be found, started or asked; or a bad query."""


# --- Prometheus configuration ---------------------------------------------------------------


def render_prometheus_config(
    targets: Mapping[str, Sequence[str]],
    *,
    rules_path: str | Path | None = None,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
    alertmanagers: Sequence[str] = (),
) -> str:
    """A ``prometheus.yml`` with one static scrape job per entry of ``targets``.

    ``targets`` maps a job name to ``host:port`` addresses (``{"triton": ["127.0.0.1:8002"]}``);
    a relative ``rules_path`` is resolved by Prometheus next to the config file; firing alerts
    are sent to the ``alertmanagers`` (``host:port``).
    """
    jobs = []
    for job, addresses in targets.items():
        if not addresses:
            continue
        if isinstance(addresses, str):
            raise ObservabilityError(f"targets of job {job!r} must be a list of host:port")
        jobs.append({"job_name": job, "static_configs": [{"targets": list(addresses)}]})
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval}
    }
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
        }
    if rules_path is not None:
        config["rule_files"] = [str(rules_path)]
    config["scrape_configs"] = jobs
    header = "# Rendered by genreops.platform.observability.render_prometheus_config.\n"
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def render_alert_rules(pending: str | None = None) -> str:
    """The shipped alert rules; with ``pending`` (``"0s"``, ``"30s"``) every rule's ``for:``
    replaced, so an alert fires that soon after its condition holds (demos and tests; the
    shipped durations are promtool-tested)."""
    text = ALERT_RULES.read_text()
    if pending is None:
        return text
    rules = yaml.safe_load(text)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = pending
    return yaml.safe_dump(rules, sort_keys=False)


def render_alertmanager_config(
    receiver_url: str,
    *,
    group_wait: str = "10s",
    group_interval: str = "1m",
    repeat_interval: str = "4h",
) -> str:
    """An ``alertmanager.yml`` sending every alert (and its resolution) to one webhook.

    The webhook is genreops' monitor service (``POST /alerts``), which records each alert and
    forwards it to the user's own URL; people add e-mail or chat receivers here.
    """
    config = {
        "route": {
            "receiver": "genreops-monitor",
            "group_by": ["alertname"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": "genreops-monitor",
                "webhook_configs": [{"url": receiver_url, "send_resolved": True}],
            }
        ],
    }
    header = "# Rendered by genreops.platform.observability.render_alertmanager_config.\n"
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


# --- processes --------------------------------------------------------------------------------


def _find(names: Sequence[str], hint: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        if Path(f"/usr/bin/{name}").is_file():  # PATH without /usr/bin (cron, some services)
            return f"/usr/bin/{name}"
    raise ObservabilityError(f"{names[0]} is not installed: {hint}")


def find_prometheus() -> str:
    """The ``prometheus`` binary; ObservabilityError saying how to install it otherwise."""
    return _find(PROMETHEUS_BINARIES, PROMETHEUS_HINT)


def find_alertmanager() -> str:
    """The Alertmanager binary (Debian's ``prometheus-alertmanager`` or ``alertmanager``)."""
    return _find(ALERTMANAGER_BINARIES, ALERTMANAGER_HINT)


def find_node_exporter() -> str:
    """The node exporter binary (Debian's ``prometheus-node-exporter`` or ``node_exporter``)."""
    return _find(NODE_EXPORTER_BINARIES, NODE_EXPORTER_HINT)


def _check_port(name: str, host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ObservabilityError(f"cannot start {name}: {port} is not a valid port")
    if port_in_use(host, port):
        raise ObservabilityError(
            f"cannot start {name}: {host}:{port} is already in use (another {name} or "
            "service listens there; stop it or pick another port)"
        )


def _start(
    name: str,
    argv: list[str],
    url: str,
    ready_path: str,
    expect: str,
    log_path: Path | None,
    timeout: float,
) -> subprocess.Popen[bytes]:
    """Start one of these servers and wait until ``url + ready_path`` answers ``expect``."""
    try:
        return start_process(
            name,
            argv,
            ready=lambda: http_answers(f"{url}{ready_path}", expect=expect),
            url=url,
            log_path=log_path,
            timeout=timeout,
        )
    except GenreopsError as error:
        raise ObservabilityError(str(error)) from error


def start_prometheus(
    config_path: Path,
    data_dir: Path,
    *,
    port: int = 9090,
    host: str = HOST,
    log_path: Path | None = None,
    retention: str = "15d",
    timeout: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Run Prometheus on ``config_path`` and wait until ``/-/ready`` says so.

    ``--web.enable-lifecycle`` lets the stack reload a rewritten config with
    ``POST /-/reload``. A config Prometheus refuses fails here with the end of its log.
    """
    binary = find_prometheus()
    _check_port("Prometheus", host, port)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://{host}:{port}"
    argv = [
        binary,
        f"--config.file={Path(config_path).resolve()}",
        f"--storage.tsdb.path={data_dir.resolve()}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address={host}:{port}",
        "--web.enable-lifecycle",
    ]
    return _start("Prometheus", argv, url, "/-/ready", "Prometheus", log_path, timeout)


def start_alertmanager(
    config_path: Path,
    data_dir: Path,
    *,
    port: int = 9093,
    host: str = HOST,
    log_path: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Run Alertmanager on ``config_path`` alone (no cluster gossip) and wait until ready."""
    binary = find_alertmanager()
    _check_port("Alertmanager", host, port)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://{host}:{port}"
    argv = [
        binary,
        f"--config.file={Path(config_path).resolve()}",
        f"--storage.path={data_dir.resolve()}",
        f"--web.listen-address={host}:{port}",
        "--cluster.listen-address=",  # a single instance: no gossip port on 0.0.0.0:9094
    ]
    return _start("Alertmanager", argv, url, "/-/ready", "OK", log_path, timeout)


def start_node_exporter(
    *,
    port: int = 9100,
    host: str = HOST,
    log_path: Path | None = None,
    timeout: float = 30.0,
) -> subprocess.Popen[bytes]:
    """Run the node exporter (host CPU, memory, disks) and wait until it serves metrics."""
    binary = find_node_exporter()
    _check_port("the node exporter", host, port)
    url = f"http://{host}:{port}"
    argv = [binary, f"--web.listen-address={host}:{port}"]
    return _start("node exporter", argv, url, "/metrics", "# HELP", log_path, timeout)


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop Prometheus or the node exporter (SIGTERM, then SIGKILL); idempotent."""
    stop_process(process, timeout=timeout)
