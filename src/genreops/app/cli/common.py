"""What every command shares: consoles, progress bars, settings-backed option defaults,
``-o/--output``, JSON printing, Triton addresses and the one-line error for expected failures."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from genreops.core.errors import GenreopsError
from genreops.core.settings import Settings, get_settings

console = Console(stderr=True)
# piped output is read by scripts and people alike: no wrapping at 80 columns
out = Console(width=None if sys.stdout.isatty() else 160)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Progress]:
    """A bar on stderr; ``total=None`` until the work announces its size."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with bar:
        bar.add_task(description, total=total)
        yield bar


@contextmanager
def running_flows(description: str) -> Iterator[None]:
    """Flows run in this process: one Prefect API for them (the configured server, else one
    temporary server) and a bar on stderr fed by their progress hooks; a flow announcing a
    new total (the pipeline's next stage) starts the bar again."""
    from genreops.flows.progress import report_progress
    from genreops.flows.runtime import prefect_api

    with prefect_api(), progress_bar(description, None) as bar:
        task = bar.task_ids[0]
        with report_progress(
            lambda n: bar.advance(task, n), lambda total: bar.reset(task, total=total)
        ):
            yield


def absolute(url: str) -> str:
    """Local paths become absolute, so Dask workers in other directories find them."""
    return url if "://" in url else str(Path(url).expanduser().resolve())


class FromSettings:
    """An option default read from the settings when the command runs, not at import.

    The settings also read ``.env`` and ``<home>/stack.env``, which click's ``envvar`` alone
    would miss; ``str()`` is what ``--help`` shows, so the help states the value in force.
    """

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def __call__(self) -> Any:
        try:
            settings = get_settings()
        except ValueError as error:  # a usage error naming the variable, not a traceback
            raise typer.BadParameter(f"invalid settings: {error}") from None
        return getattr(settings, self.attribute)

    def __str__(self) -> str:
        try:
            value = self()
        except typer.BadParameter:  # invalid settings: running the command reports them
            return "(from settings)"
        return "(unset)" if value is None else str(value)

    def __repr__(self) -> str:
        return f"FromSettings({self.attribute!r})"


def setting(field: str, attribute: str | None = None) -> dict[str, Any]:
    """``typer.Option`` arguments for an option whose default is the setting ``field``.

    ``attribute`` names a derived value when it differs (``repository`` for
    ``triton_repository``). The environment variable is also given to click, so ``--help``
    lists it next to the option.
    """
    if field not in Settings.model_fields:
        raise ValueError(f"no setting {field!r}")  # caught by the unit tests at import
    return {
        "default_factory": FromSettings(attribute or field),
        "envvar": f"GENREOPS_{field.upper()}",
        "show_envvar": True,
    }


class OutputFormat(StrEnum):
    """How a command prints its result: a table for people, JSON on stdout for scripts."""

    table = "table"
    json = "json"


OUTPUT_HELP = "table (for people) or json (machine-readable, on stdout)."
OutputOption = Annotated[OutputFormat, typer.Option("--output", "-o", help=OUTPUT_HELP)]

# Options several commands share: one spelling, one help, one setting each.
RepoOption = Annotated[
    Path,
    typer.Option(
        help="Published Triton model repository.",
        **setting("triton_repository", "repository"),
    ),
]
ModelNameOption = Annotated[
    str, typer.Option(help="Registered model name.", **setting("model_name"))
]


def jsonable(value: Any) -> Any:
    """Dataclasses become dicts, tuples lists; what JSON lacks (paths, ...) becomes text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def print_json(value: Any) -> None:
    """The one JSON printer: stdout only, so ``| jq`` never sees progress or notes."""
    typer.echo(json.dumps(jsonable(value), indent=2))


def results_table(title: str, *headers: str) -> Table:
    """Cells never wrap: ids and figures are read (and grepped) whole."""
    table = Table(title=title)
    for header in headers:
        table.add_column(header, no_wrap=True)
    return table


def metric(values: dict[str, float], name: str) -> str:
    return f"{values[name]:.3f}" if name in values else "-"


def http_url(address: str) -> str:
    """Triton's HTTP endpoint as a URL; ``host:port`` is accepted like elsewhere. A
    comma-separated list (several replicas) keeps its commas."""
    parts = (part.strip() for part in address.split(","))
    return ",".join(p if "://" in p else f"http://{p}" for p in parts if p)


def host_port(address: str) -> str:
    """``host:port`` as tritonclient takes it; a scheme (http://, grpc://) is dropped. A
    comma-separated list (several replicas) keeps its commas."""
    parts = (part.strip() for part in address.split(","))
    return ",".join(p.split("://", 1)[1].rstrip("/") if "://" in p else p for p in parts if p)


def triton_http_address(settings: Settings) -> str:
    """The HTTP twin of GENREOPS_TRITON_URL: its host with GENREOPS_TRITON_HTTP_PORT."""
    host = host_port(settings.triton_url).rsplit(":", 1)[0]
    return f"{host}:{settings.triton_http_port}"


@contextmanager
def user_errors() -> Iterator[None]:
    """Expected failures print one clear line and exit 1 instead of a traceback."""
    try:
        yield
    except GenreopsError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line; ``raise fail(...)`` ends the command with ``code``."""
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def run_in_foreground(
    process: subprocess.Popen[bytes], stop: Callable[[subprocess.Popen[bytes]], None]
) -> None:
    """Wait for a server started by the command; Ctrl-C or SIGTERM ends it through ``stop``."""

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(process)
