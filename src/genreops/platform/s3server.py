"""The embedded S3-compatible server of the native stack and the tests: npm's ``s3rver``.

Why s3rver 3.7.1: it is a real HTTP S3 server that keeps every bucket and object as plain files
in one directory, so data survives restarts (moto_server is in-memory only), and it needs only
Node, which the machine has. With boto3 it handles everything genreops and MLflow's artifact
proxy use (Put/Get/Head/Delete object, ListObjectsV2 with delimiter and pagination, multipart
upload, user metadata); PyPI's ``local-s3-server`` 0.2.2 was tried and lacks multipart uploads,
delimiters and metadata. Two quirks are handled here: its continuation tokens use DES, which
Node >= 17 only allows with ``--openssl-legacy-provider``, and it accepts only the fixed keys
``S3RVER`` / ``S3RVER`` (and bucket names of 3-63 characters).

Installed by ``make setup`` into ``tools/s3/node_modules`` from ``tools/s3/package-lock.json``.
Node packages cannot ship in the Python wheel: an installed genreops finds the server in
``GENREOPS_S3_SERVER_DIR`` (default: the checkout's ``tools/s3`` when there is one).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from genreops.core.errors import GenreopsError
from genreops.core.processes import http_answers, port_in_use, start_process, stop_process
from genreops.core.settings import Settings, get_settings
from genreops.data.storage import S3Config

ACCESS_KEY_ID = "S3RVER"
SECRET_ACCESS_KEY = "S3RVER"  # noqa: S105 (s3rver's fixed public dummy key)
DEFAULT_PORT = 4568  # s3rver's own default; 9000 and 5000 belong to others
# The source checkout's copy; absent when genreops is installed from a wheel.
CHECKOUT_DIR = Path(__file__).resolve().parents[3] / "tools" / "s3"
_SCRIPT = Path("node_modules") / "s3rver" / "bin" / "s3rver.js"
_INSTALL_HINT = (
    "run `make setup` in a checkout, or install it anywhere with `npm ci --prefix DIR` "
    "(DIR holding the checkout's tools/s3/package.json and package-lock.json) and set "
    "GENREOPS_S3_SERVER_DIR=DIR"
)


def server_dir(settings: Settings | None = None) -> Path:
    """Where s3rver's ``node_modules`` lives: ``GENREOPS_S3_SERVER_DIR``, else the checkout's."""
    configured = (settings or get_settings()).s3_server_dir
    return configured if configured is not None else CHECKOUT_DIR


def endpoint_url(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> str:
    return f"http://{host}:{port}"


def s3_config(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> S3Config:
    """Client settings for an embedded server (its fixed dummy keys)."""
    return S3Config(
        endpoint_url=endpoint_url(host, port),
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )


def find_s3_server_command(tools_dir: Path | None = None) -> list[str]:
    """The argv prefix that runs s3rver; raises GenreopsError saying how to install it."""
    base = tools_dir or server_dir()
    node = shutil.which("node")
    if node is None:
        raise GenreopsError(
            f"the embedded S3 server needs Node.js (`node` is not on PATH); install it "
            f"(Debian: apt-get install nodejs npm), then {_INSTALL_HINT}"
        )
    script = base / _SCRIPT
    if not script.is_file():
        raise GenreopsError(
            f"the embedded S3 server (s3rver) is not installed in {base} "
            f"(GENREOPS_S3_SERVER_DIR): {_INSTALL_HINT}"
        )
    command = [node]
    if _node_major(node) >= 17:
        command.append("--openssl-legacy-provider")  # s3rver's DES continuation tokens
    return [*command, str(script)]


def _node_major(node: str) -> int:
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        raise GenreopsError(f"cannot run {node} --version: {error}") from error


def start_s3_server(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    log_path: Path | None = None,
    *,
    timeout: float = 30.0,
    verbose: bool = False,
    detach: bool = False,
    tools_dir: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start s3rver on ``data_dir`` and wait until it answers; returns the process.

    Args:
        data_dir: where buckets live (one sub-folder per bucket); created if missing. Keep
            nothing else in it: every sub-folder is served as a bucket.
        log_path: server output goes here (appended); without it, to a temporary file used
            only for error messages.
        verbose: log every request (otherwise only startup and errors).
        detach: start in a new session so the server outlives the caller's terminal.
    """
    command = find_s3_server_command(tools_dir)
    url = endpoint_url(host, port)
    if port_in_use(host, port):
        raise GenreopsError(
            f"cannot start the embedded S3 server: {host}:{port} is already in use "
            "(another S3 server or service is listening there; stop it or pick another port)"
        )
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [*command, "--directory", str(data_dir), "--address", host, "--port", str(port)]
    if not verbose:
        argv.append("--silent")
    return start_process(
        "the embedded S3 server",
        argv,
        ready=lambda: http_answers(url + "/"),  # any status: the listing needs no keys
        url=url,
        log_path=log_path,
        timeout=timeout,
        new_session=detach,
    )


def stop_s3_server(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a server started by start_s3_server (SIGTERM, then SIGKILL); idempotent."""
    stop_process(process, timeout=timeout)
