"""Commands of the data stage: ``synth``, ``upload``, ``extract``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from genreops.app.cli.common import (
    OutputFormat,
    OutputOption,
    absolute,
    console,
    out,
    print_json,
    progress_bar,
    running_flows,
    setting,
    user_errors,
)
from genreops.core.settings import get_settings

# The extraction options (``extract`` and ``pipeline``).
WorkersOption = Annotated[
    int,
    typer.Option(
        min=1, help="Local Dask workers (unused with a scheduler).", **setting("dask_workers")
    ),
]
DaskAddressOption = Annotated[
    str | None,
    typer.Option(
        help="External Dask scheduler, e.g. tcp://127.0.0.1:8786; none starts a local one.",
        **setting("dask_address"),
    ),
]
ChunkSizeOption = Annotated[
    int, typer.Option(min=1, help="Clips per Dask task.", **setting("extract_chunk_size"))
]
MaxFailedShareOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Fail above this share of bad clips.",
        **setting("extract_max_failed_share"),
    ),
]
WindowOption = Annotated[
    float,
    typer.Option(
        min=1.0,
        help="Analysis window in seconds; serving uses the same setting, so the two agree.",
        **setting("window_seconds"),
    ),
]


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

    with user_errors(), progress_bar("rendering", per_genre * len(GENRES)) as bar:
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
    with user_errors():
        ensure_bucket(destination, s3=settings.s3)
        with progress_bar("uploading", total) as bar:
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


def extract(
    input_url: Annotated[
        str, typer.Argument(help="Labeled corpus: folder or s3:// prefix of <genre>/<clip>.<ext>.")
    ],
    output_url: Annotated[
        str, typer.Argument(help="Folder or s3:// prefix for features.parquet, split, manifest.")
    ],
    workers: WorkersOption,
    dask_address: DaskAddressOption,
    chunk_size: ChunkSizeOption,
    max_failed_share: MaxFailedShareOption,
    window: WindowOption,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Extract features in parallel with the Prefect flow `extract-features` on Dask."""
    from genreops.flows.extract import dask_runner, extract_features

    input_url, output_url = absolute(input_url), absolute(output_url)
    with user_errors():
        runner = dask_runner(dask_address, workers)
        flow = extract_features.with_options(task_runner=runner)
        with running_flows("extracting"):
            summary = flow(
                input_url=input_url,
                output_url=output_url,
                chunk_size=chunk_size,
                max_failed_share=max_failed_share,
                window_seconds=window,
            )
    if output is OutputFormat.json:
        print_json(summary)
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
