"""Registered models trained on synthetic music, built in this process: what the test suite's
shared ensemble and ``bench/serving.py`` stand on, so the two cannot drift apart.

The demo builds the same thing through the running stack (the ``pipeline`` deployment); this
is the quick path without servers: render the corpora, extract in-process, tune the families,
register the best two under the home's settings. Publishing is left to the caller, which
chooses the serving options.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from genreops.data.extraction import ExtractOptions, extract_in_process
from genreops.data.synth import render_corpus

TRAIN = "train"
FEATURES = "features"


@dataclass(frozen=True)
class SampleCorpus:
    """A corpus rendered beside the training one, e.g. clips to serve or drifted clips."""

    name: str
    per_genre: int
    seed: int
    drift: bool = False


def render_sample_corpora(
    home: Path,
    *,
    per_genre: int,
    seconds: float,
    corpora: Sequence[SampleCorpus] = (),
    workers: int = 2,
) -> dict[str, list[Path]]:
    """``home/train`` (seed 0) and each of ``corpora`` under ``home/<name>``; the clips of each,
    sorted. Rendering is deterministic, so an existing corpus is rendered to the same files."""
    wanted = [SampleCorpus(TRAIN, per_genre, seed=0), *corpora]
    clips = {}
    for corpus in wanted:
        folder = home / corpus.name
        render_corpus(
            folder,
            per_genre=corpus.per_genre,
            seconds=seconds,
            seed=corpus.seed,
            drift=corpus.drift,
            workers=workers,
        )
        clips[corpus.name] = sorted(folder.glob("*/*.wav"))
    return clips


def train_sample_models(
    home: Path,
    *,
    seconds: float,
    families: Sequence[str],
    trials: int,
    say: Callable[[str], None] = lambda _: None,
) -> None:
    """Features of ``home/train`` (window ``seconds``), ``families`` tuned for ``trials`` each and
    the best two registered as champion and challenger, under the current settings (MLflow
    tracking of GENREOPS_HOME unless configured otherwise).

    Runs the ``train-model`` and ``register-best`` flows, so it reports to PREFECT_API_URL
    when set, else to one temporary Prefect server.
    """
    from genreops.flows.registry import register_best
    from genreops.flows.runtime import prefect_api
    from genreops.flows.train import train_model

    say(f"extracting features ({seconds:g} s window)")
    options = ExtractOptions(window_seconds=seconds)
    extract_in_process(str(home / TRAIN), str(home / FEATURES), options)
    say(f"training {', '.join(families)} x {trials} trials, registering the best two")
    with prefect_api():
        train_model(features_url=str(home / FEATURES), families=list(families), trials=trials)
        register_best(top=2)
