"""The ``genreops`` command line: thin commands over the library, with progress bars and tables."""

from __future__ import annotations

import logging
import os
import signal
import sys
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
# piped output is read by scripts and people alike: no wrapping at 80 columns
out = Console(width=None if sys.stdout.isatty() else 160)


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


FAMILY_CHOICES = ("xgboost", "random_forest", "knn", "all")


def _results_table(title: str, *headers: str) -> Table:
    """Cells never wrap: ids and figures are read (and grepped) whole."""
    table = Table(title=title)
    for header in headers:
        table.add_column(header, no_wrap=True)
    return table


def _metric(values: dict[str, float], name: str) -> str:
    return f"{values[name]:.3f}" if name in values else "-"


@app.command()
def train(
    features: Annotated[
        str,
        typer.Argument(
            help="Feature table (.parquet/.csv, local or s3://) or the folder `extract` wrote."
        ),
    ],
    model: Annotated[
        list[str],
        typer.Option(
            "--model", "-m", help="Model family: xgboost, random_forest, knn or all (repeatable)."
        ),
    ] = ["all"],  # noqa: B006 (typer needs a list default)
    trials: Annotated[int, typer.Option(min=1, help="Optuna trials per family.")] = 20,
    timeout: Annotated[
        float | None, typer.Option(min=1.0, help="Stop each family's study after S seconds.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed and data, same best model.")] = 0,
    study_storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (e.g. postgresql://user@host/db) so several workers can "
            "tune one study in parallel; default in memory."
        ),
    ] = None,
    search_space: Annotated[
        Path | None, typer.Option(help="Search spaces YAML (default configs/search_spaces.yaml).")
    ] = None,
) -> None:
    """Tune XGBoost / random forest / KNN with Optuna and track every trial in MLflow."""
    from flows.progress import report_progress
    from flows.runtime import prefect_api
    from flows.train import train_model

    settings = get_settings()
    unknown = [m for m in model if m not in FAMILY_CHOICES]
    if unknown:
        console.print(
            f"[red]error:[/red] unknown model {unknown[0]!r}; use {', '.join(FAMILY_CHOICES)}"
        )
        raise typer.Exit(2)
    families = None if "all" in model else list(dict.fromkeys(model))
    with (
        _user_errors(),
        prefect_api(),
        _progress("tuning", None) as bar,
        report_progress(
            lambda n: bar.advance(bar.task_ids[0], n),
            lambda total: bar.update(bar.task_ids[0], total=total),
        ),
    ):
        summary = train_model(
            features_url=_absolute(features),
            families=families,
            trials=trials,
            timeout_seconds=timeout,
            seed=seed,
            study_storage=study_storage or settings.study_storage_url,
            search_space_file=str(search_space or settings.search_space_file or "") or None,
        )
    table = _results_table(
        f"{summary.table_url} (split {summary.rows})",
        "family",
        "trials ok/pruned/failed",
        "val G-mean",
        "val acc",
        "test G-mean",
        "test acc",
        "run",
    )
    for outcome in summary.outcomes:
        table.add_row(
            outcome.family,
            "/".join(str(outcome.trials[k]) for k in ("complete", "pruned", "fail")),
            _metric(outcome.validation, "gmean"),
            _metric(outcome.validation, "accuracy"),
            _metric(outcome.test, "gmean"),
            _metric(outcome.test, "accuracy"),
            outcome.run_id,
        )
    out.print(table)
    out.print(f"tracking: {settings.mlflow_uri} — next: genreops register")


@app.command()
def register(
    top: Annotated[
        int, typer.Option(min=1, help="Versions to rank: 1 = champion, 2 = + challenger.")
    ] = 2,
    model_name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
) -> None:
    """Register the best runs (by validation G-mean) and set the champion/challenger aliases."""
    settings = get_settings()
    with _user_errors():
        if settings.prefect_api_url:  # a Prefect server is running: record it as a flow run
            from flows.registry import register_best

            summary = register_best(top=top, model_name=model_name)
        else:  # a temporary Prefect server would cost ~20 s for a sub-second job
            from genreops.registry import register_best as register_runs
            from genreops.tracking import TrackingTarget

            summary = register_runs(
                TrackingTarget.from_settings(settings),
                model_name=model_name or settings.model_name,
                top=top,
            )
    table = _results_table(
        f"{summary.model_name} ({summary.candidates} candidate runs)",
        "alias",
        "version",
        "family",
        "val G-mean",
        "test G-mean",
        "schema",
        "run",
    )
    for a in summary.assignments:
        table.add_row(
            a.alias or f"rank {a.rank}",
            a.version,
            a.candidate.family,
            _metric(a.candidate.metrics, "val_gmean"),
            _metric(a.candidate.metrics, "test_gmean"),
            a.candidate.schema_hash,
            a.candidate.run_id,
        )
    out.print(table)
    for candidate, reason in summary.skipped:
        console.print(
            f"[yellow]skipped[/yellow] run {candidate.run_id} ({candidate.family}): {reason}"
        )
    out.print("; ".join(summary.changes) if summary.changed else "registry already up to date")


@app.command()
def models(
    model_name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
) -> None:
    """List registered versions with their aliases, metrics and feature schema."""
    from genreops.registry import list_versions
    from genreops.tracking import TrackingTarget

    settings = get_settings()
    name = model_name or settings.model_name
    with _user_errors():
        rows = list_versions(TrackingTarget.from_settings(settings), name)
    if not rows:
        out.print(f"no versions of {name} in {settings.mlflow_uri}; run `genreops register`")
        return
    table = _results_table(
        f"{name} @ {settings.mlflow_uri}",
        "version",
        "aliases",
        "family",
        "val G-mean",
        "val acc",
        "test G-mean",
        "test acc",
        "schema",
        "run",
    )
    for row in rows:
        table.add_row(
            row.version,
            ", ".join(row.aliases) or "-",
            row.family,
            _metric(row.metrics, "val_gmean"),
            _metric(row.metrics, "val_accuracy"),
            _metric(row.metrics, "test_gmean"),
            _metric(row.metrics, "test_accuracy"),
            row.schema_hash,
            row.run_id,
        )
    out.print(table)


if __name__ == "__main__":
    app()
