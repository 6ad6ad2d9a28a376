"""The ``genreops`` command line: thin commands over the library, with progress bars and tables."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
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
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from genreops import __version__
from genreops.core.errors import GenreopsError
from genreops.core.settings import Settings, get_settings

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


class _FromSettings:
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
        return f"_FromSettings({self.attribute!r})"


def _setting(field: str, attribute: str | None = None) -> dict[str, Any]:
    """``typer.Option`` arguments for an option whose default is the setting ``field``.

    ``attribute`` names a derived value when it differs (``repository`` for
    ``triton_repository``). The environment variable is also given to click, so ``--help``
    lists it next to the option.
    """
    if field not in Settings.model_fields:
        raise ValueError(f"no setting {field!r}")  # caught by the unit tests at import
    return {
        "default_factory": _FromSettings(attribute or field),
        "envvar": f"GENREOPS_{field.upper()}",
        "show_envvar": True,
    }


class OutputFormat(StrEnum):
    """How a command prints its result: a table for people, JSON on stdout for scripts."""

    table = "table"
    json = "json"


_OUTPUT_HELP = "table (for people) or json (machine-readable, on stdout)."
OutputOption = Annotated[OutputFormat, typer.Option("--output", "-o", help=_OUTPUT_HELP)]


def _jsonable(value: Any) -> Any:
    """Dataclasses become dicts, tuples lists; what JSON lacks (paths, ...) becomes text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _print_json(value: Any) -> None:
    """The one JSON printer: stdout only, so ``| jq`` never sees progress or notes."""
    typer.echo(json.dumps(_jsonable(value), indent=2))


def _http_url(address: str) -> str:
    """Triton's HTTP endpoint as a URL; ``host:port`` is accepted like elsewhere."""
    return address if "://" in address else f"http://{address}"


def _host_port(address: str) -> str:
    """``host:port`` as tritonclient takes it; a scheme (http://, grpc://) is dropped."""
    return address.split("://", 1)[1].rstrip("/") if "://" in address else address


def _triton_http_address(settings: Settings) -> str:
    """The HTTP twin of GENREOPS_TRITON_URL: its host with GENREOPS_TRITON_HTTP_PORT."""
    host = _host_port(settings.triton_url).rsplit(":", 1)[0]
    return f"{host}:{settings.triton_http_port}"


@contextmanager
def _user_errors() -> Iterator[None]:
    """Expected failures print one clear line and exit 1 instead of a traceback."""
    try:
        yield
    except GenreopsError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None


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
    from genreops.data.genres import GENRES
    from genreops.data.synth import render_corpus

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
    from genreops.data.storage import ensure_bucket, upload_dir

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
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.", **_setting("s3_port"))],
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
        int,
        typer.Option(
            min=1, help="Local Dask workers (unused with a scheduler).", **_setting("dask_workers")
        ),
    ],
    dask_address: Annotated[
        str | None,
        typer.Option(
            help="External Dask scheduler, e.g. tcp://127.0.0.1:8786; none starts a local one.",
            **_setting("dask_address"),
        ),
    ],
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Clips per Dask task.", **_setting("extract_chunk_size"))
    ],
    max_failed_share: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Fail above this share of bad clips.",
            **_setting("extract_max_failed_share"),
        ),
    ],
    window: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Analysis window in seconds; serving uses the same setting, so the two agree.",
            **_setting("window_seconds"),
        ),
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Extract features in parallel with the Prefect flow `extract-features` on Dask."""
    from genreops.flows.extract import dask_runner, extract_features
    from genreops.flows.progress import report_progress
    from genreops.flows.runtime import prefect_api

    input_url, output_url = _absolute(input_url), _absolute(output_url)
    with _user_errors():
        runner = dask_runner(dask_address, workers)
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
                chunk_size=chunk_size,
                max_failed_share=max_failed_share,
                window_seconds=window,
            )
    if output is OutputFormat.json:
        _print_json(summary)
        return
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


# genreops.training.search_space.FAMILIES and "all" (spelled out: that module imports Optuna)
FAMILY_CHOICES = (
    "xgboost",
    "random_forest",
    "knn",
    "svc",
    "logistic_regression",
    "soft_vote",
    "all",
)


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
            help="Feature table (.parquet/.csv, local or s3://), the folder `extract` wrote, "
            "or a folder holding one table."
        ),
    ],
    study_storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (e.g. postgresql://user@host/db) so several workers can "
            "tune one study in parallel; none: in memory.",
            **_setting("study_storage_url"),
        ),
    ],
    search_space: Annotated[
        Path | None,
        typer.Option(
            help="Search spaces YAML; none: configs/search_spaces.yaml.",
            **_setting("search_space_file"),
        ),
    ],
    cv_folds: Annotated[
        int,
        typer.Option(
            min=0,
            help="Score each configuration by k-fold cross-validation on train+val (tables "
            "up to GENREOPS_CV_MAX_ROWS rows); 0: the table's val split.",
            **_setting("cv_folds"),
        ),
    ],
    family: Annotated[
        list[str],
        typer.Option(
            "--family",
            "-f",
            help="Model family: xgboost, random_forest, knn, svc, logistic_regression, "
            "soft_vote (a soft vote of tuned svc, xgboost and logistic_regression models; "
            "tuned after them) or all (repeatable).",
        ),
    ] = ["all"],  # noqa: B006 (typer needs a list default)
    model_alias: Annotated[
        list[str] | None,
        # the old spelling, hidden: beside --model-name it read as the registered model
        typer.Option("--model", "-m", hidden=True),
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Optuna trials per family.")] = 20,
    timeout: Annotated[
        float | None, typer.Option(min=1.0, help="Stop each family's study after S seconds.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed and data, same best model.")] = 0,
    label_column: Annotated[
        str | None,
        typer.Option(help="Genre column (default: 'genre', else 'label' as in GTZAN's CSVs)."),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            help="Clip id column (default: 'clip_id', else 'filename', else rows are numbered)."
        ),
    ] = None,
    group_column: Annotated[
        str | None,
        typer.Option(
            help="Rows sharing its value stay in one split (default: by song when ids are "
            "segments like blues.00000.3.wav)."
        ),
    ] = None,
    drop_column: Annotated[
        list[str] | None,
        typer.Option(
            help="A column that is no feature, left out (repeatable; 'length' always is)."
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Tune XGBoost / random forest / KNN / SVC / logistic regression and a soft vote of the
    best of them with Optuna, and track every trial in MLflow.

    Any feature table trains: ours, or GTZAN's features_30_sec.csv / features_3_sec.csv as
    downloaded."""
    from genreops.flows.progress import report_progress
    from genreops.flows.runtime import prefect_api
    from genreops.flows.train import train_model

    settings = get_settings()
    model = [*(model_alias or []), *family] if family != ["all"] else model_alias or family
    unknown = [m for m in model if m not in FAMILY_CHOICES]
    if unknown:
        console.print(
            f"[red]error:[/red] unknown family {unknown[0]!r}; use {', '.join(FAMILY_CHOICES)}"
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
            study_storage=study_storage or None,
            search_space_file=str(search_space) if search_space else None,
            label_column=label_column,
            id_column=id_column,
            group_column=group_column,
            drop_columns=drop_column,
            cv_folds=cv_folds,
        )
    if output is OutputFormat.json:
        _print_json({**_jsonable(summary), "tracking_uri": settings.mlflow_uri})
        return
    out.print(f"columns: {summary.columns}", markup=False)
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
    model_name: Annotated[
        str, typer.Option(help="Registered model name.", **_setting("model_name"))
    ],
    top: Annotated[
        int, typer.Option(min=1, help="Versions to rank: 1 = champion, 2 = + challenger.")
    ] = 2,
    table: Annotated[
        str | None,
        typer.Option(
            help="Rank only runs trained on this table (the URL `train` printed, or the first "
            "characters of its digest); default: every finished run."
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Register the best runs (by validation G-mean) and set the champion/challenger aliases."""
    settings = get_settings()
    table = _absolute(table) if table and Path(table).expanduser().exists() else table
    with _user_errors():
        if settings.prefect_api_url:  # a Prefect server is running: record it as a flow run
            from genreops.flows.registry import register_best

            summary = register_best(top=top, model_name=model_name, table=table)
        else:  # a temporary Prefect server would cost ~20 s for a sub-second job
            from genreops.training.registry import register_best as register_runs
            from genreops.training.tracking import TrackingTarget

            summary = register_runs(
                TrackingTarget.from_settings(settings),
                model_name=model_name,
                top=top,
                table=table,
            )
    if output is OutputFormat.json:
        _print_json(
            {
                "model_name": summary.model_name,
                "candidates": summary.candidates,
                "assignments": summary.assignments,
                "skipped": [
                    {"run_id": c.run_id, "family": c.family, "reason": reason}
                    for c, reason in summary.skipped
                ],
                "changes": summary.changes,
            }
        )
        return
    ranking = _results_table(
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
        ranking.add_row(
            a.alias or f"rank {a.rank}",
            a.version,
            a.candidate.family,
            _metric(a.candidate.metrics, "val_gmean"),
            _metric(a.candidate.metrics, "test_gmean"),
            a.candidate.schema_hash,
            a.candidate.run_id,
        )
    out.print(ranking)
    for candidate, reason in summary.skipped:
        console.print(
            f"[yellow]skipped[/yellow] run {candidate.run_id} ({candidate.family}): {reason}"
        )
    out.print("; ".join(summary.changes) if summary.changed else "registry already up to date")


@app.command()
def models(
    model_name: Annotated[
        str, typer.Option(help="Registered model name.", **_setting("model_name"))
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """List registered versions with their aliases, metrics and feature schema."""
    from genreops.training.registry import list_versions
    from genreops.training.tracking import TrackingTarget

    settings = get_settings()
    name = model_name
    with _user_errors():
        rows = list_versions(TrackingTarget.from_settings(settings), name)
    if output is OutputFormat.json:
        _print_json(rows)
        return
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


def _running_server_url(settings: Settings) -> str | None:
    """The HTTP URL of the server `genreops serve` started, if it is still running."""
    from genreops.serving.triton.server import running_server_url

    return running_server_url(settings.home)


@app.command()
def publish(
    repo: Annotated[
        Path,
        typer.Option(
            help="Published Triton model repository.",
            **_setting("triton_repository", "repository"),
        ),
    ],
    model_name: Annotated[
        str, typer.Option(help="Registered model name.", **_setting("model_name"))
    ],
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Triton HTTP address (host:port or http://...) to hot-load into; "
            "default: the server `genreops serve` started, if running.",
        ),
    ] = None,
    server_url: Annotated[str | None, typer.Option("--server-url", hidden=True)] = None,
) -> None:
    """Build a new repository version from the champion/challenger and hot-load it."""
    from genreops.serving.publish import ServingOptions, publish_registered, record_event
    from genreops.training.tracking import TrackingTarget

    settings = get_settings()
    repository = repo.resolve()
    given = url or server_url  # --server-url: the old spelling
    with _user_errors():
        target = _http_url(given) if given else _running_server_url(settings)
        result = publish_registered(
            TrackingTarget.from_settings(settings),
            repository,
            model_name=model_name,
            options=ServingOptions.from_settings(settings),
            server_url=target,
        )
        if result.created:
            entry = next(v for v in result.history if v["version"] == result.version)
            record_event(
                settings.monitoring_db_url, settings.monitoring_spool_dir, "publish", entry
            )
    state = "published" if result.created else "already published"
    out.print(
        f"{state}: version {result.version} in {repository} — champion "
        f"{result.champion.label} ({result.champion.family}), challenger "
        f"{result.challenger.label} ({result.challenger.family})"
    )
    out.print(
        f"loaded into {target}" if result.loaded else "no running server: `genreops serve` next"
    )


@app.command()
def rollback(
    repo: Annotated[
        Path,
        typer.Option(
            help="Published Triton model repository.",
            **_setting("triton_repository", "repository"),
        ),
    ],
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Triton HTTP address (host:port or http://...) to reload; "
            "default: the server `genreops serve` started, if running.",
        ),
    ] = None,
    server_url: Annotated[str | None, typer.Option("--server-url", hidden=True)] = None,
) -> None:
    """Pin the previously published version again (and reload a running server)."""
    from genreops.serving.publish import record_event, reload_server
    from genreops.serving.publish import rollback as rollback_repository

    settings = get_settings()
    repository = repo.resolve()
    given = url or server_url  # --server-url: the old spelling
    with _user_errors():
        entry = rollback_repository(repository)
        target = _http_url(given) if given else _running_server_url(settings)
        if target:
            reload_server(target)
        record_event(settings.monitoring_db_url, settings.monitoring_spool_dir, "rollback", entry)
    out.print(
        f"rolled back to version {entry['version']} (champion "
        f"{entry['champion']['name']}/{entry['champion']['version']})"
        + (f"; reloaded {target}" if target else "")
    )


@app.command()
def serve(
    repo: Annotated[
        Path,
        typer.Option(
            help="Published Triton model repository.",
            **_setting("triton_repository", "repository"),
        ),
    ],
    http_port: Annotated[int, typer.Option(help="HTTP port.", **_setting("triton_http_port"))],
    grpc_port: Annotated[int, typer.Option(help="gRPC port.", **_setting("triton_grpc_port"))],
    metrics_port: Annotated[
        int, typer.Option(help="Prometheus metrics port.", **_setting("triton_metrics_port"))
    ],
    host: Annotated[
        str,
        typer.Option(help="Address to bind: 127.0.0.1, or 0.0.0.0 inside a container."),
    ] = "127.0.0.1",
    detach: Annotated[
        bool, typer.Option("--detach", help="Start in the background and return.")
    ] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the server started before.")] = False,
) -> None:
    """Run the real Triton server on the published repository (Ctrl-C or --stop ends it)."""
    from genreops.serving.publish import MODELS, read_history
    from genreops.serving.triton.server import (
        TritonPorts,
        server_pid_file,
        start_triton,
        stop_from_pid_file,
        stop_triton,
        write_pid_file,
    )

    settings = get_settings()
    pid_file = server_pid_file(settings.home)
    if stop:
        stopped = stop_from_pid_file(pid_file)
        out.print("stopped the Triton server" if stopped else "no Triton server was running")
        return
    repository = repo.resolve()
    ports = TritonPorts(http=http_port, grpc=grpc_port, metrics=metrics_port)
    published = read_history(repository)["current"] if repository.exists() else None
    # the Python stubs read settings too: give them absolute paths, whatever their cwd
    os.environ["GENREOPS_HOME"] = str(settings.home.resolve())
    log_path = settings.log_dir.resolve() / "triton.log"
    with _user_errors():
        repository.mkdir(parents=True, exist_ok=True)
        console.print(f"starting Triton on {repository} (log {log_path}) ...")
        process = start_triton(
            repository,
            state_dir=settings.home.resolve(),
            ports=ports,
            log_path=log_path,
            load_models=list(MODELS) if published else [],  # fallback is only called by BLS
            host=host,
        )
        write_pid_file(pid_file, process, ports, repository, log_path=log_path)
    out.print(
        f"Triton ready: gRPC {ports.grpc_url}, HTTP {ports.http_url}, metrics {ports.metrics_url}"
        + (f"; serving version {published}" if published else "; nothing published yet")
    )
    if detach:
        return

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_triton(process)
        pid_file.unlink(missing_ok=True)


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(help="Audio files, folders or s3:// prefixes.")],
    url: Annotated[
        str | None,
        typer.Option(
            help="Triton host:port for --protocol; default: GENREOPS_TRITON_URL for grpc, its "
            "host with GENREOPS_TRITON_HTTP_PORT for http.",
        ),
    ] = None,
    protocol: Annotated[str, typer.Option(help="grpc or http.")] = "grpc",
    batch_size: Annotated[int, typer.Option(min=1, help="Files per request.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 4,
    expect_labels_from_folders: Annotated[
        bool,
        typer.Option(
            "--expect-labels-from-folders",
            help="Each file's parent folder is its true genre: report accuracy and G-mean.",
        ),
    ] = False,
    save: Annotated[
        str | None,
        typer.Option(help="Also write one row per input to results.csv|.json (or s3://)."),
    ] = None,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help=_OUTPUT_HELP.rstrip(".") + ": the summary and one row per input. "
            "(A file name here is the old spelling of --save.)",
        ),
    ] = OutputFormat.table.value,
) -> None:
    """Classify audio files with the served genre_ensemble; one answer or error per file."""
    from genreops.data.storage import write_bytes
    from genreops.serving.client import EnsembleClient, list_inputs, render, rows, summarize
    from genreops.serving.client import predict as run_predictions

    settings = get_settings()
    if protocol not in ("grpc", "http"):
        console.print("[red]error:[/red] --protocol must be grpc or http")
        raise typer.Exit(2)
    if output not in (OutputFormat.table.value, OutputFormat.json.value):
        if save:
            console.print("[red]error:[/red] --output is table or json; the file goes to --save")
            raise typer.Exit(2)
        save, output = output, OutputFormat.table.value  # the old `--output results.csv`
    as_json = output == OutputFormat.json.value
    if url:
        target = _host_port(url)
    elif protocol == "grpc":
        target = _host_port(settings.triton_url)
    else:
        target = _triton_http_address(settings)
    with _user_errors():
        inputs = list_inputs(paths, s3=settings.s3)
        if not inputs:
            console.print("[red]error:[/red] no audio files found in the given paths")
            raise typer.Exit(1)
        client = EnsembleClient(target, protocol)
        labels = client.labels()
        with _progress("classifying", len(inputs)) as bar:
            answers = run_predictions(
                inputs,
                client,
                batch_size=batch_size,
                concurrency=concurrency,
                labels_from_folders=expect_labels_from_folders,
                max_bytes=settings.max_file_bytes,
                s3=settings.s3,
                on_answer=lambda _: bar.advance(bar.task_ids[0], 1),
            )
        if save:
            fmt = "json" if save.lower().endswith(".json") else "csv"
            write_bytes(_absolute(save), render(answers, labels, fmt), s3=settings.s3)
    failed = [a for a in answers if not a.ok]
    summary = summarize(answers)
    if as_json:
        _print_json({"summary": summary, "answers": rows(answers, labels)})
        if save:
            console.print(f"results: {save}")
        raise typer.Exit(1 if failed else 0)
    if failed:
        table = _results_table(f"{len(failed)} files not classified", "file", "reason", "error")
        for answer in failed[:20]:
            table.add_row(answer.path, answer.reason, answer.error[:160])
        console.print(table)
    out.print(
        f"{summary.answered} of {summary.total} classified; by genre {summary.by_genre}; "
        f"by model {summary.by_model}; drift-gated answers {summary.drift_answers} "
        f"({summary.gate_openings} gate openings); out of distribution {summary.ood_answers}"
    )
    if summary.accuracy is not None:
        out.print(f"accuracy {summary.accuracy:.3f}, G-mean {summary.gmean:.3f}")
    if save:
        out.print(f"results: {save}")
    if failed:
        raise typer.Exit(1)


@app.command("drift-report")
def drift_report(
    limit: Annotated[
        int | None, typer.Option(min=1, help="Most reports to build now (each costs seconds).")
    ] = None,
) -> None:
    """Turn the drift gate's new drift tests into Evidently reports for the drift UI."""
    from genreops.monitoring.views import publish_for

    settings = get_settings()
    with _user_errors():
        summary = publish_for(settings, limit)
    for line in summary.skipped:
        out.print(f"[yellow]skipped[/yellow] {line}")
    for line in summary.failed:
        out.print(f"[red]failed[/red] {line}")
    out.print(
        f"{len(summary.added)} report(s) added to {settings.drift_workspace} "
        f"(project {summary.project_id}); `genreops stack up` serves the drift UI"
    )


# URLs worth opening, by stack service
_EXPLORE = {
    "prefect": "Prefect UI",
    "mlflow": "MLflow",
    "prometheus": "Prometheus",
    "drift-ui": "Drift UI",
    "triton": "Triton",
}


@app.command()
def demo(
    per_genre: Annotated[int, typer.Option(min=4, help="Training clips per genre.")] = 30,
    clean_per_genre: Annotated[int, typer.Option(min=1, help="Clean test clips/genre.")] = 5,
    drifted_per_genre: Annotated[int, typer.Option(min=1, help="Drifted test clips/genre.")] = 10,
    trials: Annotated[int, typer.Option(min=1, help="Optuna trials per family.")] = 10,
) -> None:
    """The whole platform once, through the running stack (`genreops stack up` first).

    Renders a synthetic corpus plus a clean and a drifted test set, uploads them to the
    stack's S3, runs the `pipeline` deployment through the Prefect server (extract, train,
    register, publish, classify both test sets through Triton), updates the drift views and
    prints a summary. Everything already done is reused, so a second demo is quicker.
    """
    from genreops.app.demo import DemoPlan, run_demo, summary_lines
    from genreops.platform.stack import Stack

    settings = get_settings()
    with _user_errors():
        services = Stack(settings).status()
    needed = ("s3", "mlflow", "prefect", "deployments", "triton")
    down = [row.service for row in services if row.service in needed and not row.healthy]
    if down:
        console.print(
            f"[red]error:[/red] the stack is not up ({', '.join(down)} not healthy): "
            "run `genreops stack up` (or `make demo`, which does)"
        )
        raise typer.Exit(1)
    plan = DemoPlan.from_settings(
        settings,
        per_genre=per_genre,
        clean_per_genre=clean_per_genre,
        drifted_per_genre=drifted_per_genre,
        trials=trials,
    )
    with _user_errors():
        result = run_demo(settings, plan, say=out.print)
    urls = {
        _EXPLORE[row.service]: row.url
        for row in services
        if row.service in _EXPLORE and row.healthy and row.url
    }
    out.rule("genreops demo")
    for line in summary_lines(result, urls):
        out.print(line)
    out.print("The stack keeps running for exploring; `make down` stops it.")


# --- the native stack -----------------------------------------------------------------------

stack_app = typer.Typer(
    help="The native local stack: S3, MLflow, Prefect and its deployments, Triton, Prometheus "
    "and the drift UI, on 127.0.0.1.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")


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
    table = _results_table("genreops stack", "service", "state", "pid", "url", "detail")
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


@stack_app.command("up")
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
    with _user_errors(), _stack_events() as on_event:
        rows = stack.up(only.split(",") if only else None, timeout, on_event)
    if output is OutputFormat.json:
        _print_json([row.as_dict() for row in rows])
        console.print(f"endpoints for other shells and tools: source {stack.env_file}")
        return
    out.print(_stack_table(rows))
    out.print(f"endpoints for other shells and tools: source {stack.env_file}")


@stack_app.command("status")
def stack_status(
    output: OutputOption = OutputFormat.table,
    as_json: Annotated[
        bool, typer.Option("--json", hidden=True, help="Old spelling of --output json.")
    ] = False,
) -> None:
    """Each service with its pid, health and URL; exit 1 when one is not healthy."""
    from genreops.platform.stack import Stack

    with _user_errors():
        rows = Stack(get_settings()).status()
    if as_json or output is OutputFormat.json:
        _print_json([row.as_dict() for row in rows])
    else:
        out.print(_stack_table(rows))
    if any(not row.healthy and row.state != "skipped" for row in rows):
        raise typer.Exit(1)


@stack_app.command("down")
def stack_down() -> None:
    """Stop, in reverse order, every service the stack started (and nothing else)."""
    from genreops.platform.stack import Stack

    with _user_errors(), _stack_events() as on_event:
        stopped = Stack(get_settings()).down(on_event)
    out.print(
        f"stopped: {', '.join(stopped)}" if stopped else "no service of the stack was running"
    )


if __name__ == "__main__":
    app()
