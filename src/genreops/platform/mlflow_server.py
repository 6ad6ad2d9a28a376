"""The MLflow tracking server of the native stack: a database store, artifacts proxied to S3.

Clients then need only the server URL: artifact uploads and downloads go through the server
(``--artifacts-destination``), so the S3 keys stay with the server process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from genreops.core.errors import GenreopsError
from genreops.core.processes import http_answers, port_in_use, start_process, stop_process
from genreops.data.storage import S3Config

DEFAULT_PORT = 5000


def server_url(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> str:
    return f"http://{host}:{port}"


def start_mlflow_server(
    backend_store_uri: str,
    artifacts_destination: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    s3: S3Config | None = None,
    log_path: Path | None = None,
    timeout: float = 120.0,
) -> subprocess.Popen[bytes]:
    """Start ``mlflow server`` and wait for ``/health``; an s3:// destination uses ``s3``."""
    url = server_url(host, port)
    if port_in_use(host, port):
        raise GenreopsError(f"cannot start MLflow: {host}:{port} is already in use")
    env = {
        **os.environ,
        # one worker and no job runner: otherwise ~9 extra processes on a 2-core laptop
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    if s3 is not None:
        if s3.endpoint_url:
            env["MLFLOW_S3_ENDPOINT_URL"] = s3.endpoint_url
        if s3.access_key_id and s3.secret_access_key:
            env["AWS_ACCESS_KEY_ID"] = s3.access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = s3.secret_access_key
        env["AWS_DEFAULT_REGION"] = s3.region
    argv = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri", backend_store_uri,
        "--artifacts-destination", artifacts_destination,
        "--host", host,
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    return start_process(
        "MLflow",
        argv,
        ready=lambda: http_answers(f"{url}/health", expect="OK"),
        url=url,
        log_path=log_path,
        env=env,
        timeout=timeout,
    )


def stop_mlflow_server(process: subprocess.Popen[bytes]) -> None:
    stop_process(process, timeout=20)
