"""Commands of the platform: ``s3-server`` and the native stack (``stack up|status|down``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from genreops.app.cli.common import (
    OutputFormat,
    OutputOption,
    console,
    out,
    print_json,
    results_table,
    run_in_foreground,
    setting,
    user_errors,
)
from genreops.core.settings import get_settings


def s3_server(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.", **setting("s3_port"))],
    data_dir: Annotated[
        Path | None, typer.Option(help="Where buckets are kept (default: GENREOPS_HOME/s3).")
    ] = None,
) -> None:
    """Run the embedded S3-compatible server (s3rver) in the foreground until Ctrl-C."""
    from genreops.platform.s3server import (
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        endpoint_url,
        start_s3_server,
        stop_s3_server,
    )

    settings = get_settings()
    folder = data_dir or settings.home / "s3"
    with user_errors():
        process = start_s3_server(folder, port=port, log_path=settings.log_dir / "s3.log")
    out.print(f"S3 server at {endpoint_url(port=port)}, data in {folder}. To use it:")
    out.print(f"  export GENREOPS_S3_ENDPOINT_URL={endpoint_url(port=port)}")
    out.print(f"  export GENREOPS_S3_ACCESS_KEY_ID={ACCESS_KEY_ID}")
    out.print(f"  export GENREOPS_S3_SECRET_ACCESS_KEY={SECRET_ACCESS_KEY}")
    out.print("Ctrl-C stops it; the data stays.")

    run_in_foreground(process, stop_s3_server)


stack_app = typer.Typer(
    help="The native local stack: S3, MLflow, Prefect and its deployments, Triton, Prometheus "
    "and the drift UI, on 127.0.0.1.",
    no_args_is_help=True,
)


@contextmanager
def _stack_events() -> Iterator[Callable[[str, str, str], None]]:
    """One line per service: a spinner with elapsed time while it starts, then its outcome."""
    bar = Progress(
        SpinnerColumn(finished_text=" "),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}
    marks = {
        "skipped": "[yellow]-[/yellow]",
        "left running": "[yellow]*[/yellow]",
        "failed": "[red]!![/red]",
    }

    def on_event(service: str, state: str, detail: str) -> None:
        text = f"{service:<12} {state}: {detail}"
        if service not in tasks:
            tasks[service] = bar.add_task(text, total=None)
        if state in ("starting", "waiting", "stopping"):
            bar.update(tasks[service], description=text)
        else:
            mark = marks.get(state, "[green]ok[/green]")
            bar.update(tasks[service], description=f"{mark} {text}", total=1, completed=1)

    with bar:
        yield on_event


def _stack_table(rows: list[Any]) -> Table:
    table = results_table("genreops stack", "service", "state", "pid", "url", "detail")
    colours = {"running": "green", "unhealthy": "red", "stopped": "red", "skipped": "yellow"}
    for row in rows:
        colour = colours.get(row.state, "white")
        table.add_row(
            row.service,
            f"[{colour}]{row.state}[/{colour}]",
            str(row.pid or "-"),
            row.url,
            row.detail,
        )
    return table


def stack_up(
    only: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated services to start (plus what they need): "
            "s3,mlflow,prefect,deployments,triton,prometheus,drift-ui."
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(min=1.0, help="Seconds each service may take to get healthy."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Start the stack (what runs already is left alone) and wait until every part is healthy."""
    from genreops.platform.stack import Stack

    stack = Stack(get_settings())
    with user_errors(), _stack_events() as on_event:
        rows = stack.up(only.split(",") if only else None, timeout, on_event)
    if output is OutputFormat.json:
        print_json([row.as_dict() for row in rows])
        console.print(f"endpoints for other shells and tools: source {stack.env_file}")
        return
    out.print(_stack_table(rows))
    out.print(f"endpoints for other shells and tools: source {stack.env_file}")


def stack_status(
    output: OutputOption = OutputFormat.table,
    as_json: Annotated[
        bool, typer.Option("--json", hidden=True, help="Old spelling of --output json.")
    ] = False,
) -> None:
    """Each service with its pid, health and URL; exit 1 when one is not healthy."""
    from genreops.platform.stack import Stack

    with user_errors():
        rows = Stack(get_settings()).status()
    if as_json or output is OutputFormat.json:
        print_json([row.as_dict() for row in rows])
    else:
        out.print(_stack_table(rows))
    if any(not row.healthy and row.state != "skipped" for row in rows):
        raise typer.Exit(1)


def stack_down() -> None:
    """Stop, in reverse order, every service the stack started (and nothing else)."""
    from genreops.platform.stack import Stack

    with user_errors(), _stack_events() as on_event:
        stopped = Stack(get_settings()).down(on_event)
    out.print(
        f"stopped: {', '.join(stopped)}" if stopped else "no service of the stack was running"
    )
