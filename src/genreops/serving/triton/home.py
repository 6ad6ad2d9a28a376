"""The Triton server of a GENREOPS_HOME: started on the published repository, recorded in
``<home>/run/triton.json`` so that other commands find it (``publish`` hot-loads into it,
``serve --stop`` and ``stack down`` stop it), and stopped from that record.

``genreops serve`` runs it in the foreground or detached; the stack starts its Triton the same
way (same record, its own owner tag).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreops.core.pidfiles import SERVE_OWNER
from genreops.core.settings import Settings
from genreops.serving.publish import MODELS, read_history
from genreops.serving.triton import server
from genreops.serving.triton.server import HOST, TritonPorts, settings_ports


@dataclass(frozen=True)
class HomeServer:
    """A started server and what it serves."""

    process: subprocess.Popen[bytes]
    ports: TritonPorts
    repository: Path
    published: int | None  # the repository version it serves; None: nothing published yet
    log_path: Path
    pid_file: Path

    def stop(self) -> None:
        """Stop the server (and its stubs and watchdog) and remove its record."""
        server.stop_triton(self.process)
        self.pid_file.unlink(missing_ok=True)


def start_home_server(
    settings: Settings,
    *,
    repository: Path | None = None,
    ports: TritonPorts | None = None,
    host: str = HOST,
    log_path: Path | None = None,
    owner: str = SERVE_OWNER,
    extra: dict[str, Any] | None = None,
    timeout: float = 180.0,
    say: Callable[[str], None] | None = None,
    replica: int = 0,
) -> HomeServer:
    """Start Triton on the published repository of ``settings.home`` and record it.

    ``repository`` None: the setting's (created if missing: a server with nothing published
    yet is ready for ``genreops publish``); ``ports`` None: the settings'; ``log_path`` None:
    ``triton.log`` in the settings' log folder. The published models are loaded at start
    (the fallback is loaded by the predictor's BLS call). ``say`` hears one line before the
    start, which can take a minute. ``replica`` i > 0 is one more server on the same repository:
    its own ports (``settings_ports``), log, record and serving state (GENREOPS_SERVING_REPLICA).
    """
    home = settings.home.resolve()
    repository = (repository or settings.repository).resolve()
    ports = ports or settings_ports(settings, replica)
    log_name = f"triton-{replica}.log" if replica else "triton.log"
    log_path = log_path or settings.log_dir.resolve() / log_name
    repository.mkdir(parents=True, exist_ok=True)
    published = read_history(repository)["current"]
    if say is not None:
        say(f"starting Triton on {repository} (log {log_path}) ...")
    process = server.start_triton(
        repository,
        state_dir=home,
        ports=ports,
        log_path=log_path,
        load_models=list(MODELS) if published else [],
        host=host,
        timeout=timeout,
        # the Python stubs read the settings too: an absolute home, whatever their cwd
        env={"GENREOPS_HOME": str(home), "GENREOPS_SERVING_REPLICA": str(replica)},
    )
    pid_file = server.server_pid_file(home, replica)
    server.write_pid_file(
        pid_file, process, ports, repository, log_path=log_path, owner=owner, extra=extra
    )
    return HomeServer(process, ports, repository, published, log_path, pid_file)


def stop_home_server(settings: Settings) -> bool:
    """Stop the server recorded for ``settings.home``; False when none was running."""
    record = server.server_pid_file(settings.home, settings.serving_replica)
    return server.stop_from_pid_file(record)
