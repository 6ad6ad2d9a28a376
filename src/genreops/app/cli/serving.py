"""Commands of the serving stage: ``publish``, ``rollback``, ``serve``, ``predict``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from genreops.app.cli.common import (
    OUTPUT_HELP,
    ModelNameOption,
    OutputFormat,
    RepoOption,
    absolute,
    console,
    host_port,
    http_url,
    out,
    print_json,
    progress_bar,
    results_table,
    run_in_foreground,
    setting,
    triton_http_address,
    user_errors,
)
from genreops.app.cli.monitoring import print_labels_report, store_labels
from genreops.core.settings import get_settings

# publish's and rollback's old spelling of --url
ServerUrlAlias = Annotated[str | None, typer.Option("--server-url", hidden=True)]


def _given_server(url: str | None, server_url: str | None) -> str | None:
    """The Triton HTTP URL asked for (host:port accepted); None: the library finds the one
    `genreops serve` runs."""
    given = url or server_url
    return http_url(given) if given else None


def publish(
    repo: RepoOption,
    model_name: ModelNameOption,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Triton HTTP address (host:port or http://...) to hot-load into, or several "
            "replicas comma-separated (all load the new version, or all go back to the one "
            "before); default: GENREOPS_TRITON_CONTROL_URL, else the server `genreops serve` "
            "started, if running.",
        ),
    ] = None,
    server_url: ServerUrlAlias = None,
) -> None:
    """Build a new repository version from the champion/challenger and hot-load it."""
    from genreops.serving.publish import publish_and_record

    with user_errors():
        result = publish_and_record(
            get_settings(), repo, model_name=model_name, server_url=_given_server(url, server_url)
        )
    state = "published" if result.created else "already published"
    out.print(
        f"{state}: version {result.version} in {result.repository} — champion "
        f"{result.champion.label} ({result.champion.family}), challenger "
        f"{result.challenger.label} ({result.challenger.family})"
    )
    out.print(
        f"loaded into {result.server_url}"
        if result.loaded
        else "no running server: `genreops serve` next"
    )
    for replica in result.unreachable:
        out.print(f"passed over {replica}: not answering (it loads this version when it starts)")


def rollback(
    repo: RepoOption,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Triton HTTP address (host:port or http://...) to reload; "
            "default: the server `genreops serve` started, if running.",
        ),
    ] = None,
    server_url: ServerUrlAlias = None,
) -> None:
    """Pin the previously published version again (and reload a running server)."""
    from genreops.serving.publish import rollback_and_record

    with user_errors():
        result = rollback_and_record(
            get_settings(), repo, server_url=_given_server(url, server_url)
        )
    entry = result.entry
    out.print(
        f"rolled back to version {entry['version']} (champion "
        f"{entry['champion']['name']}/{entry['champion']['version']})"
        + (f"; reloaded {result.server_url}" if result.server_url else "")
    )


def serve(
    repo: RepoOption,
    http_port: Annotated[int, typer.Option(help="HTTP port.", **setting("triton_http_port"))],
    grpc_port: Annotated[int, typer.Option(help="gRPC port.", **setting("triton_grpc_port"))],
    metrics_port: Annotated[
        int, typer.Option(help="Prometheus metrics port.", **setting("triton_metrics_port"))
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
    """Run the real Triton server on the published repository (Ctrl-C or --stop ends it).

    With GENREOPS_SERVING_REPLICA=i (i > 0) it is replica i of a home several servers share:
    its own record, log and serving state (the native stack's `triton-replicas` starts such
    replicas on shifted ports by itself)."""
    from genreops.serving.triton.home import start_home_server, stop_home_server
    from genreops.serving.triton.server import TritonPorts

    settings = get_settings()
    if stop:
        with user_errors():
            stopped = stop_home_server(settings)
        out.print("stopped the Triton server" if stopped else "no Triton server was running")
        return
    with user_errors():
        server = start_home_server(
            settings,
            repository=repo,
            ports=TritonPorts(http=http_port, grpc=grpc_port, metrics=metrics_port),
            host=host,
            say=console.print,
            # replicas sharing one home (containers on one volume) keep records and state apart
            replica=settings.serving_replica,
        )
    ports, published = server.ports, server.published
    out.print(
        f"Triton ready: gRPC {ports.grpc_url}, HTTP {ports.http_url}, metrics {ports.metrics_url}"
        + (f"; serving version {published}" if published else "; nothing published yet")
    )
    if not detach:
        run_in_foreground(server.process, lambda _: server.stop())


def predict(
    paths: Annotated[list[str], typer.Argument(help="Audio files, folders or s3:// prefixes.")],
    url: Annotated[
        str | None,
        typer.Option(
            help="Triton host:port for --protocol, or several replicas comma-separated (requests "
            "go to each in turn; one a replica could not run goes to another); default: "
            "GENREOPS_TRITON_URL for grpc, its host with GENREOPS_TRITON_HTTP_PORT for http.",
        ),
    ] = None,
    protocol: Annotated[str, typer.Option(help="grpc or http.")] = "grpc",
    batch_size: Annotated[int, typer.Option(min=1, help="Files per request.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 4,
    expect_labels_from_folders: Annotated[
        bool,
        typer.Option(
            "--expect-labels-from-folders",
            help="Each file's parent folder is its true genre: report accuracy and G-mean, and "
            "store the genres as labels (ground truth) in the monitoring store.",
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
            help=OUTPUT_HELP.rstrip(".") + ": the summary and one row per input. "
            "(A file name here is the old spelling of --save.)",
        ),
    ] = OutputFormat.table.value,
) -> None:
    """Classify audio files with the served genre_ensemble; one answer or error per file."""
    from genreops.data.storage import write_bytes
    from genreops.serving.client import (
        EnsembleClient,
        folder_labels,
        list_inputs,
        render,
        rows,
        summarize,
    )
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
        target = host_port(url)
    elif protocol == "grpc":
        target = host_port(settings.triton_url)
    else:
        target = triton_http_address(settings)
    with user_errors():
        inputs = list_inputs(paths, s3=settings.s3)
        if not inputs:
            console.print("[red]error:[/red] no audio files found in the given paths")
            raise typer.Exit(1)
        client = EnsembleClient(target, protocol)
        labels = client.labels()
        with progress_bar("classifying", len(inputs)) as bar:
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
            write_bytes(absolute(save), render(answers, labels, fmt), s3=settings.s3)
    failed = [a for a in answers if not a.ok]
    summary = summarize(answers)
    stored = None
    if expect_labels_from_folders:  # the folders' genres are ground truth: keep it
        stored = store_labels(
            folder_labels(answers), "predict --expect-labels-from-folders", [], check_known=False
        )
    if as_json:
        print_json(
            {
                "summary": summary,
                "answers": rows(answers, labels),
                **({"labels": asdict(stored)} if stored else {}),
            }
        )
        if save:
            console.print(f"results: {save}")
        raise typer.Exit(1 if failed else 0)
    if failed:
        table = results_table(f"{len(failed)} files not classified", "file", "reason", "error")
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
    if stored is not None:
        print_labels_report(stored)
    if save:
        out.print(f"results: {save}")
    if failed:
        raise typer.Exit(1)
