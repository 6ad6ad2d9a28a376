"""Real servers for integration tests: the embedded S3 server (s3rver) on a free port."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from genreops import s3server
from genreops.storage import S3Config
from helpers import free_port


@dataclass
class S3Server:
    """A running embedded S3 server; ``restart()`` keeps the port and the data directory."""

    data_dir: Path
    log_path: Path
    port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return s3server.endpoint_url(self.host, self.port)

    @property
    def config(self) -> S3Config:
        return s3server.s3_config(self.host, self.port)

    def start(self) -> None:
        self.process = s3server.start_s3_server(
            self.data_dir, self.host, self.port, self.log_path, timeout=60
        )

    def stop(self) -> None:
        if self.process is not None:
            s3server.stop_s3_server(self.process)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The real embedded S3 server (s3rver) for the whole session, data in a temp directory."""
    base = tmp_path_factory.mktemp("s3server")
    server = S3Server(data_dir=base / "data", log_path=base / "s3rver.log", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
