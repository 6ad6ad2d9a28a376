"""The ``genreops`` command line: thin commands over the library, with progress bars and tables."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

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

from genreops.errors import GenreopsError
from genreops.settings import get_settings

app = typer.Typer(
    name="genreops",
    help="Music-genre classification: from raw audio to a monitored inference service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
out = Console()


@contextmanager
def _progress(description: str, total: int | None) -> Iterator[Progress]:
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


def _absolute(url: str) -> str:
    """Local paths become absolute, so Dask workers in other directories find them."""
    return url if "://" in url else str(Path(url).expanduser().resolve())


@contextmanager
def _user_errors() -> Iterator[None]:
    """Expected failures print one clear line and exit 1 instead of a traceback."""
    try:
        yield
    except GenreopsError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Prefect reads its logging level at import. The CLI reports outcomes itself (one line per
    # expected failure), so Prefect's run logs and tracebacks show only with --verbose.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
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


@app.command()
def synth(
    out_dir: Annotated[
        Path, typer.Argument(help="Folder to write <genre>/<genre>.NNNNN.wav into.")
    ],
    per_genre: Annotated[int, typer.Option(min=1, help="Clips per genre.")] = 10,
    seconds: Annotated[float, typer.Option(min=1.0, help="Length of each clip.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Same seed, same corpus, bit for bit.")] = 0,
    drift: Annotated[
        bool, typer.Option("--drift", help="Render under shifted recording conditions.")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Processes rendering in parallel.")] = 1,
) -> None:
    """Render a deterministic synthetic corpus of the 10 GTZAN genres (16-bit mono wav)."""
    from genreops.genres import GENRES
    from genreops.synth import render_corpus

    with _user_errors(), _progress("rendering", per_genre * len(GENRES)) as bar:
        manifest = render_corpus(
            out_dir,
            per_genre=per_genre,
            seconds=seconds,
            seed=seed,
            drift=drift,
            workers=workers,
            progress=lambda n: bar.advance(bar.task_ids[0], n),
        )
    out.print(f"wrote {per_genre * len(GENRES)} clips to {out_dir} (manifest: {manifest})")


@app.command()
def upload(
    source: Annotated[Path, typer.Argument(help="Local folder to upload (recursively).")],
    destination: Annotated[str, typer.Argument(help="s3://bucket/prefix to upload into.")],
) -> None:
    """Upload a folder to S3; unchanged objects are skipped, so re-running is cheap."""
    from genreops.storage import ensure_bucket, upload_dir

    settings = get_settings()
    if not source.is_dir():
        console.print(f"[red]error:[/red] {source}: not a folder")
        raise typer.Exit(1)
    total = sum(1 for p in source.rglob("*") if p.is_file())
    with _user_errors():
        ensure_bucket(destination, s3=settings.s3)
        with _progress("uploading", total) as bar:
            report = upload_dir(
                source,
                destination,
                s3=settings.s3,
                progress=lambda n: bar.advance(bar.task_ids[0], n),
            )
    out.print(
        f"{destination}: {report.uploaded} uploaded, {report.skipped} unchanged "
        f"({report.bytes / 1e6:.1f} MB sent)"
    )


@app.command("s3-server")
def s3_server(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 4568,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where buckets are kept (default: GENREOPS_HOME/s3).")
    ] = None,
) -> None:
    """Run the embedded S3-compatible server (s3rver) in the foreground until Ctrl-C."""
    from genreops.s3server import (
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        endpoint_url,
        start_s3_server,
        stop_s3_server,
    )

    settings = get_settings()
    folder = data_dir or settings.home / "s3"
    with _user_errors():
        process = start_s3_server(folder, port=port, log_path=settings.log_dir / "s3.log")
    out.print(f"S3 server at {endpoint_url(port=port)}, data in {folder}. To use it:")
    out.print(f"  export GENREOPS_S3_ENDPOINT_URL={endpoint_url(port=port)}")
    out.print(f"  export GENREOPS_S3_ACCESS_KEY_ID={ACCESS_KEY_ID}")
    out.print(f"  export GENREOPS_S3_SECRET_ACCESS_KEY={SECRET_ACCESS_KEY}")
    out.print("Ctrl-C stops it; the data stays.")

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_s3_server(process)


@app.command()
def extract(
    input_url: Annotated[
        str, typer.Argument(help="Labeled corpus: folder or s3:// prefix of <genre>/<clip>.<ext>.")
    ],
    output_url: Annotated[
        str, typer.Argument(help="Folder or s3:// prefix for features.parquet, split, manifest.")
    ],
    workers: Annotated[
        int | None, typer.Option(min=1, help="Local Dask workers (default: settings).")
    ] = None,
    dask_address: Annotated[
        str | None, typer.Option(help="External Dask scheduler, e.g. tcp://127.0.0.1:8786.")
    ] = None,
    chunk_size: Annotated[int | None, typer.Option(min=1, help="Clips per Dask task.")] = None,
    max_failed_share: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Fail above this share of bad clips.")
    ] = None,
    window: Annotated[float, typer.Option(min=1.0, help="Analysis window in seconds.")] = 30.0,
) -> None:
    """Extract features in parallel with the Prefect flow `extract-features` on Dask."""
    from flows.extract import dask_runner, extract_features
    from flows.progress import report_progress
    from flows.runtime import prefect_api

    settings = get_settings()
    input_url, output_url = _absolute(input_url), _absolute(output_url)
    with _user_errors():
        runner = dask_runner(
            dask_address or settings.dask_address, workers or settings.dask_workers
        )
        flow = extract_features.with_options(task_runner=runner)
        with (
            prefect_api(),
            _progress("extracting", None) as bar,
            report_progress(
                lambda n: bar.advance(bar.task_ids[0], n),
                lambda total: bar.update(bar.task_ids[0], total=total),
            ),
        ):
            summary = flow(
                input_url=input_url,
                output_url=output_url,
                chunk_size=chunk_size or settings.extract_chunk_size,
                max_failed_share=(
                    settings.extract_max_failed_share
                    if max_failed_share is None
                    else max_failed_share
                ),
                window_seconds=window,
            )
    if summary.failures:
        table = Table("clip", "reason", "message", title=f"{len(summary.failures)} clips skipped")
        for failure in summary.failures[:20]:
            table.add_row(failure.clip_id, failure.reason, failure.message)
        console.print(table)
    out.print(
        f"feature table: {summary.table_url} ({summary.n_extracted} of {summary.n_clips} clips, "
        f"{summary.reused_chunks} chunks reused, {summary.seconds:.1f} s)"
    )
    out.print(f"manifest:      {summary.manifest_url}")


if __name__ == "__main__":
    app()
