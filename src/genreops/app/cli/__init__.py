"""The ``genreops`` command line: thin commands over the library, with progress bars and tables.

One module per command group, each command parsing its options, calling the library and
printing: ``data`` (synth, upload, extract), ``training`` (train, register, models),
``serving`` (publish, rollback, serve, predict), ``monitoring`` (drift-report, feedback,
quality, monitor), ``workflows`` (pipeline, demo) and ``platform`` (s3-server, stack). What
they share is in ``common``. The commands are registered below, in the order ``genreops
--help`` lists them.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from genreops import __version__
from genreops.app.cli import data, monitoring, platform, serving, training, workflows
from genreops.core.settings import get_settings

app = typer.Typer(
    name="genreops",
    help="Music-genre classification: from raw audio to a monitored inference service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"genreops {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the package version and exit.",
        ),
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Prefect reads its logging level at import. The CLI reports outcomes itself (one line per
    # expected failure), so Prefect's run logs and tracebacks show only with --verbose.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    # MLflow logs store migrations and pickling advice at INFO/WARNING on every command.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if verbose else "ERROR")
    # Dask configures its own loggers on import; this is its documented override.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "info" if verbose else "error")
    for name, value in (
        # the temporary Prefect server needs longer than the default 20 s on a busy 2-core box
        ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"),
        ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
        ("DO_NOT_TRACK", "true"),
        ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ):
        os.environ.setdefault(name, value)
    # Prefect reads only os.environ: hand it the running stack's server (via <home>/stack.env),
    # or every flow command would start a temporary server of its own.
    try:
        api = get_settings().prefect_api_url
    except ValueError:
        api = None  # invalid settings: the command itself reports them
    if api:
        os.environ.setdefault("PREFECT_API_URL", api)


app.command()(data.synth)
app.command()(data.upload)
app.command("s3-server")(platform.s3_server)
app.command()(data.extract)
app.command()(training.train)
app.command()(training.register)
app.command()(training.models)
app.command()(serving.publish)
app.command()(serving.rollback)
app.command()(serving.serve)
app.command()(serving.predict)
app.command("drift-report")(monitoring.drift_report)
app.command("feedback")(monitoring.feedback)
app.command()(monitoring.quality)
app.command()(monitoring.monitor)
app.command()(workflows.pipeline)
app.command()(workflows.demo)
platform.stack_app.command("up")(platform.stack_up)
platform.stack_app.command("status")(platform.stack_status)
platform.stack_app.command("down")(platform.stack_down)
app.add_typer(platform.stack_app, name="stack")

__all__ = ["app"]
