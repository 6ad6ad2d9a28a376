"""Real servers for integration tests: the embedded S3 server (s3rver) on a free port, and a
published genre ensemble (trained, registered and written as a Triton repository) to serve."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from genreops.core.settings import get_settings
from genreops.data.storage import S3Config
from genreops.platform import s3server
from helpers import SERVING_SECONDS, free_port, serving_options

if TYPE_CHECKING:
    from genreops.serving.publish import PublishResult


@dataclass
class S3Server:
    """A running embedded S3 server; ``restart()`` keeps the port and the data directory."""

    data_dir: Path
    log_path: Path
    port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return s3server.endpoint_url(self.host, self.port)

    @property
    def config(self) -> S3Config:
        return s3server.s3_config(self.host, self.port)

    def start(self) -> None:
        self.process = s3server.start_s3_server(
            self.data_dir, self.host, self.port, self.log_path, timeout=60
        )

    def stop(self) -> None:
        if self.process is not None:
            s3server.stop_s3_server(self.process)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The real embedded S3 server (s3rver) for the whole session, data in a temp directory."""
    base = tmp_path_factory.mktemp("s3server")
    server = S3Server(data_dir=base / "data", log_path=base / "s3rver.log", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- a published ensemble ---------------------------------------------------------------------


@dataclass
class PublishedEnsemble:
    """A Triton repository with a registered champion/challenger pair, and clips to send.

    ``home`` is the GENREOPS_HOME it was built in (its MLflow store lives there); each test
    module starts its own server on ``repository``, with its own home for drift state.
    """

    home: Path
    repository: Path
    published: PublishResult
    clean: list[str]
    drifted: list[str]


@pytest.fixture(scope="session")
def published_ensemble(
    tmp_path_factory: pytest.TempPathFactory, prefect_harness: None
) -> Iterator[PublishedEnsemble]:
    """Synthetic corpora → features → knn and random forest (3 trials) → the best two
    registered → a Triton repository. About 1.5 min on 2 cores; built once per session."""
    from genreops.app.sample import SampleCorpus, render_sample_corpora, train_sample_models
    from genreops.core.settings import get_settings
    from genreops.serving.publish import publish_registered
    from genreops.training.tracking import TrackingTarget

    home = tmp_path_factory.mktemp("published")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENREOPS_HOME", str(home))
        get_settings.cache_clear()
        try:
            clips = render_sample_corpora(
                home,
                per_genre=20,
                seconds=SERVING_SECONDS,
                corpora=[
                    SampleCorpus("clean", per_genre=3, seed=5),
                    SampleCorpus("drifted", per_genre=5, seed=6, drift=True),
                ],
            )
            train_sample_models(
                home, seconds=SERVING_SECONDS, families=["knn", "random_forest"], trials=3
            )
            settings = get_settings()
            published = publish_registered(
                TrackingTarget.from_settings(settings),
                home / "repository",
                model_name=settings.model_name,
                options=serving_options(),
            )
        finally:
            get_settings.cache_clear()
    yield PublishedEnsemble(
        home=home,
        repository=home / "repository",
        published=published,
        clean=[str(p) for p in clips["clean"]],
        drifted=[str(p) for p in clips["drifted"]],
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh GENREOPS_HOME: the embedded default (SQLite tracking, artifacts under home)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENREOPS_HOME", str(home))
        patch.delenv("GENREOPS_MLFLOW_TRACKING_URI", raising=False)
        get_settings.cache_clear()
        yield home
    get_settings.cache_clear()
