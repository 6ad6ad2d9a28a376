"""Brings back a Triton model whose Python-backend stub process died.

Triton 2.51 neither restarts a stub that was killed (OOM killer, a crash in native code, a
stray ``kill``) nor marks its model unready: every request routed to that instance fails with
"Stub process '<instance>' is not healthy" until someone reloads the model, and reloading an
unchanged model is a no-op. This watchdog runs beside the server (``start_triton`` starts it),
notices such a death and reloads the model with its own configuration plus a fresh
``genreops_restart`` parameter, which makes Triton build new instances and swap them in while
the healthy ones keep answering.

A dead stub is told from a stopped one by its state: Triton reaps the stubs it stops itself
(unload, reload, shutdown) within milliseconds, while one that died on its own stays a zombie
child of the server; only a zombie older than ``ZOMBIE_GRACE_SECONDS`` counts (a restart on a
stub Triton was about to reap would reload the model behind a publish's or rollback's back).

Known limit: when the stub died with a request in flight, Triton never finishes unloading
the old version: its healthy stubs stay, idle (~250 MB each), until the server stops, and
stopping then takes Triton's 30 s exit timeout.

Run as ``python -m genreops.serving.triton.watchdog --pid PID --url http://127.0.0.1:8000``;
it exits
when the server does.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from genreops.core.processes import children, cmdline, pid_alive
from genreops.serving.triton.control import is_ready, restart_model_instances
from genreops.serving.triton.install import STUB_NAME

log = logging.getLogger("genreops.serving.triton.watchdog")
RESTART_DONE = "has new instances"  # logged once a restart has swapped the new instances in

POLL_SECONDS = 1.0
# Triton reaps the stubs it stops within ~0.1 s (measured: <= 0.07 s over 12 reloads under
# traffic); a zombie older than this died on its own
ZOMBIE_GRACE_SECONDS = 3.0


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, zombies included."""
    return children(pid)


def stub_model(pid: int) -> str | None:
    """The model a live stub process serves (``<repo>/<model>/<version>/model.py`` in its
    command line), or None when ``pid`` is no stub."""
    argv = cmdline(pid)
    if argv is None or len(argv) < 2 or not argv[0].endswith(STUB_NAME):
        return None
    model_file = Path(argv[1])
    return model_file.parent.parent.name if model_file.name == "model.py" else None


class StubWatch:
    """What the watchdog knows between polls: which stub serves which model, since when a
    stub has been a zombie, which deaths were already handled (a zombie stays until the
    server exits)."""

    def __init__(
        self,
        server_pid: int,
        *,
        grace: float = ZOMBIE_GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server_pid = server_pid
        self.grace = grace
        self.clock = clock
        self.models: dict[int, str] = {}
        self.exited_at: dict[int, float] = {}
        self.handled: set[int] = set()

    def poll(self) -> list[str]:
        """Models with a stub that has stayed an unreaped zombie for ``grace`` seconds (each
        model once). A stub Triton stops itself (unload, reload) is a zombie too, for the few
        milliseconds until Triton reaps it: reloading then would race with a publish."""
        children = _children(self.server_pid)
        now = self.clock()
        dead: list[str] = []
        for pid in children:
            if pid in self.handled:
                continue
            if pid_alive(pid):
                if pid not in self.models and (model := stub_model(pid)) is not None:
                    self.models[pid] = model
            elif pid in self.models:
                exited = self.exited_at.setdefault(pid, now)
                if now - exited >= self.grace:
                    self.handled.add(pid)
                    if self.models[pid] not in dead:
                        dead.append(self.models[pid])
        gone = set(self.models) - set(children)  # reaped: stopped by Triton itself
        for pid in gone:
            del self.models[pid]
            self.exited_at.pop(pid, None)
        self.handled &= set(children)
        return dead


def watch(server_pid: int, url: str, *, interval: float = POLL_SECONDS) -> None:
    """Poll until the server exits; restart the model of every stub that dies."""
    stubs = StubWatch(server_pid)
    log.info("watching the Python stubs of Triton pid %d (%s)", server_pid, url)
    while pid_alive(server_pid):
        for model in stubs.poll():
            if not pid_alive(server_pid):
                break  # the server is stopping: its stubs go with it
            log.warning("a Python stub of model %s died; restarting its instances", model)
            try:
                seconds = restart_model_instances(url, model)
            except Exception as error:  # try again at the next death
                if is_ready(url):
                    log.error("restarting model %s failed: %s", model, error)
                else:  # shutting down: Triton stops its stubs and no longer answers
                    log.info("Triton at %s no longer answers (stopping?): %s", url, error)
            else:
                log.warning("model %s %s (%.1f s)", model, RESTART_DONE, seconds)
        time.sleep(interval)
    log.info("Triton pid %d has exited; watchdog stops", server_pid)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genreops.serving.triton.watchdog", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--pid", type=int, required=True, help="tritonserver's process id")
    parser.add_argument("--url", required=True, help="the server's HTTP URL")
    parser.add_argument("--interval", type=float, default=POLL_SECONDS, help="seconds per poll")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s triton-watchdog: %(message)s"
    )
    watch(args.pid, args.url, interval=args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
