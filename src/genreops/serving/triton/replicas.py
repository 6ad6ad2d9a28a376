"""More Triton replicas on the home's published repository, kept running.

``python -m genreops.serving.triton.replicas --count N`` (the native stack's ``triton-replicas``
service, when GENREOPS_TRITON_REPLICAS > 1) starts replicas 1..N of the home's server, each a
tritonserver of its own (``start_home_server(replica=i)``: ports + 10 * i, ``triton-<i>.log``,
``run/triton-<i>.json``, serving state in ``serving/replica-<i>``), and starts again one that
exits, as a Dask nanny does for its worker: clients send the requests a dead replica never ran
to the others meanwhile (genreops.serving.client). SIGTERM stops every replica, then this.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from genreops.core.errors import GenreopsError
from genreops.core.settings import Settings, get_settings
from genreops.serving.publish import reload_server
from genreops.serving.triton.home import HomeServer, start_home_server

log = logging.getLogger("genreops.serving.triton.replicas")

CHECK_SECONDS = 2.0  # how often the replicas are looked at
RETRY_SECONDS = 10.0  # after a replica failed to start


class Replicas:
    """Replicas ``first``..``first + count - 1`` of the home's server."""

    def __init__(self, settings: Settings, count: int, first: int = 1) -> None:
        self.settings = settings
        self.numbers = list(range(first, first + count))
        self.running: dict[int, HomeServer] = {}
        self.stopping = threading.Event()

    def start(self, replica: int) -> bool:
        try:
            self.running[replica] = start_home_server(
                self.settings, replica=replica, owner="stack", timeout=300.0
            )
            if self.running[replica].published:
                # a publication that came while it started pinned a newer version: load it
                # (loading what is loaded already is a no-op)
                reload_server(
                    self.running[replica].ports.http_url, self.running[replica].repository
                )
        except GenreopsError as error:
            log.error("replica %d did not start: %s", replica, error)
            return False
        ports = self.running[replica].ports
        log.info("replica %d ready: HTTP %s, gRPC %s", replica, ports.http_url, ports.grpc_url)
        return True

    def keep_running(self) -> None:
        """Start every replica, then start again any that exits, until ``stop``."""
        for replica in self.numbers:
            if not self.stopping.is_set():
                self.start(replica)
        while not self.stopping.wait(CHECK_SECONDS):
            for replica in self.numbers:
                server = self.running.get(replica)
                code = server.process.poll() if server is not None else "never started"
                if code is None or self.stopping.is_set():
                    continue
                log.warning("replica %d is not running (exit %s); starting it again", replica, code)
                if server is not None:
                    server.stop()  # its watchdog and record
                    del self.running[replica]
                if not self.start(replica):
                    self.stopping.wait(RETRY_SECONDS)

    def stop(self) -> None:
        self.stopping.set()
        for replica, server in sorted(self.running.items()):
            log.info("stopping replica %d (pid %d)", replica, server.process.pid)
            server.stop()
        self.running.clear()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m genreops.serving.triton.replicas", description=__doc__
    )
    parser.add_argument("--count", type=int, required=True, help="replicas to run")
    parser.add_argument("--first", type=int, default=1, help="number of the first replica")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    replicas = Replicas(get_settings(), options.count, options.first)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        replicas.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        replicas.keep_running()
    finally:
        replicas.stop()


if __name__ == "__main__":
    main()
