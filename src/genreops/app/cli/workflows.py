"""Commands that run the whole platform: ``demo``."""

from __future__ import annotations

from typing import Annotated

import typer

from genreops.app.cli.common import out, user_errors
from genreops.core.settings import get_settings


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

    settings = get_settings()
    plan = DemoPlan.from_settings(
        settings,
        per_genre=per_genre,
        clean_per_genre=clean_per_genre,
        drifted_per_genre=drifted_per_genre,
        trials=trials,
    )
    with user_errors():
        result = run_demo(settings, plan, say=out.print)
    out.rule("genreops demo")
    for line in summary_lines(result):
        out.print(line)
    out.print("The stack keeps running for exploring; `make down` stops it.")
