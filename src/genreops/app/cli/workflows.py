"""Commands that run the whole platform: ``pipeline`` (in this process) and ``demo`` (through
the running stack)."""

from __future__ import annotations

from typing import Annotated

import typer

from genreops.app.cli.common import (
    ModelNameOption,
    OutputFormat,
    OutputOption,
    RepoOption,
    absolute,
    console,
    out,
    print_json,
    running_flows,
    user_errors,
)
from genreops.app.cli.data import (
    ChunkSizeOption,
    DaskAddressOption,
    MaxFailedShareOption,
    WindowOption,
    WorkersOption,
)
from genreops.app.cli.training import (
    CvFoldsOption,
    FamilyOption,
    SearchSpaceOption,
    StudyStorageOption,
    chosen_families,
)
from genreops.app.demo import DRIFT_REPORTS
from genreops.app.pipeline import SUMMARY_NAME
from genreops.core.settings import get_settings
from genreops.data.storage import join_url


def pipeline(
    corpus_url: Annotated[
        str, typer.Argument(help="Labeled corpus: folder or s3:// prefix of <genre>/<clip>.<ext>.")
    ],
    features_url: Annotated[
        str,
        typer.Argument(
            help="Folder or s3:// prefix for the feature table and the run's pipeline.json."
        ),
    ],
    workers: WorkersOption,
    dask_address: DaskAddressOption,
    chunk_size: ChunkSizeOption,
    max_failed_share: MaxFailedShareOption,
    window: WindowOption,
    study_storage: StudyStorageOption,
    search_space: SearchSpaceOption,
    cv_folds: CvFoldsOption,
    model_name: ModelNameOption,
    repo: RepoOption,
    family: FamilyOption = ["all"],  # noqa: B006 (typer needs a list default)
    trials: Annotated[int, typer.Option(min=1, help="Optuna trials per family.")] = 20,
    seed: Annotated[int, typer.Option(help="Seeds the split, the sampler and the models.")] = 0,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="Tune every family again, even one already tuned on this table with these "
            "settings.",
        ),
    ] = False,
    predict: Annotated[
        list[str] | None,
        typer.Option(
            help="Audio folder or s3:// prefix to classify once published (repeatable; "
            "labels from folder names), through the Triton at GENREOPS_TRITON_URL "
            "(`genreops serve`).",
        ),
    ] = None,
    results_url: Annotated[
        str | None,
        typer.Option(
            help="Where each --predict batch writes results.csv and summary.json (a "
            "subfolder per batch); default: <FEATURES_URL>/predictions.",
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Extract, train, register and publish in one run (the Prefect flow `pipeline`).

    Every stage skips what is already done: unchanged clips are not extracted again, a family
    already tuned on the table with the same settings is reused (unless --retrain), and the
    registry and the published repository change only when the winners do. A running Triton
    (`genreops serve`) is hot-loaded with the new version.
    """
    from genreops.app.pipeline import summary_lines
    from genreops.flows.pipeline import pipeline as run_pipeline

    families = chosen_families(family)
    with user_errors(), running_flows("pipeline"):
        summary = run_pipeline(
            corpus_url=absolute(corpus_url),
            features_url=absolute(features_url),
            families=families,
            trials=trials,
            seed=seed,
            retrain=retrain,
            predict_urls=[absolute(url) for url in predict or []],
            results_url=absolute(results_url) if results_url else None,
            window_seconds=window,
            chunk_size=chunk_size,
            max_failed_share=max_failed_share,
            dask_address=dask_address,
            dask_workers=workers,
            study_storage=study_storage or None,
            search_space_file=str(search_space) if search_space else None,
            cv_folds=cv_folds,
            model_name=model_name,
            repository=str(repo.resolve()),
        )
    if output is OutputFormat.json:
        print_json(summary)
        return
    for failure in summary["failed_clips"][:20]:
        console.print(f"[yellow]skipped[/yellow] {failure}")
    for line in summary_lines(summary):
        out.print(line)
    out.print(f"record: {join_url(absolute(features_url), SUMMARY_NAME)}")


def demo(
    per_genre: Annotated[int, typer.Option(min=4, help="Training clips per genre.")] = 30,
    clean_per_genre: Annotated[int, typer.Option(min=1, help="Clean test clips/genre.")] = 5,
    drifted_per_genre: Annotated[int, typer.Option(min=1, help="Drifted test clips/genre.")] = 10,
    trials: Annotated[int, typer.Option(min=1, help="Optuna trials per family.")] = 10,
    drift_reports: Annotated[
        int,
        typer.Option(
            min=0,
            help="Evidently drift reports to build for the drift views (seconds each); "
            "the rest are built by the scheduled drift-report run.",
        ),
    ] = DRIFT_REPORTS,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop",
            help="Then close the loop on the drifted set: drift -> alert -> labels -> "
            "retraining by itself -> canary -> promotion, each step timed (`make demo_loop` "
            "starts the stack with settings that make it take minutes, not hours).",
        ),
    ] = False,
    loop_timeout: Annotated[
        float, typer.Option(min=60, help="Seconds the loop may take before it gives up.")
    ] = 900.0,
) -> None:
    """The whole platform once, through the running stack (`genreops stack up` first).

    Renders a synthetic corpus plus a clean and a drifted test set, uploads them to the
    stack's S3, runs the `pipeline` deployment through the Prefect server (extract, train,
    register, publish, classify both test sets through Triton), updates the drift views and
    prints a summary. Everything already done is reused, so a second demo is quicker.

    With --loop the drifted set is sent afterwards, straight to Triton, and the platform is
    left to react: the monitor sees the gate stay open and starts the `retrain` deployment,
    which publishes a canary; the demo's labeled traffic judges it and the monitor promotes
    or withdraws it. The summary times each step from the store's records.
    """
    from genreops.app.demo import DemoPlan, run_demo, summary_lines

    settings = get_settings()
    plan = DemoPlan.from_settings(
        settings,
        per_genre=per_genre,
        clean_per_genre=clean_per_genre,
        drifted_per_genre=drifted_per_genre,
        trials=trials,
        drift_reports=drift_reports,
        loop=loop,
        loop_timeout=loop_timeout,
    )
    with user_errors():
        result = run_demo(settings, plan, say=out.print)
    out.rule("genreops demo")
    for line in summary_lines(result):
        out.print(line)
    out.print("The stack keeps running for exploring; `make down` stops it.")
