"""The CLI follows its settings: defaults, ``--version``, ``-o json`` and option names.

Each test runs the real typer app in-process and replaces only the library function the
command calls, so the value that *reaches* the library is checked, not the help text alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar

import pytest
import typer
from typer.testing import CliRunner

from genreops import __version__
from genreops.app import cli
from genreops.app.cli.common import FromSettings
from genreops.core.errors import GenreopsError
from genreops.core.settings import Settings, get_settings

pytestmark = pytest.mark.unit


class StopError(GenreopsError):
    """Raised by a stand-in once it has recorded its arguments: the command exits 1."""


@pytest.fixture(autouse=True)
def clean_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh settings per test, no ``.env`` of the checkout, and os.environ restored.

    The CLI's callback exports PREFECT_*/MLFLOW_* variables into os.environ; in-process
    they would leak into later tests.
    """
    saved = dict(os.environ)
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("GENREOPS_") and name != "GENREOPS_USE_STACK_ENV":
            monkeypatch.delenv(name)
    monkeypatch.setenv("GENREOPS_USE_STACK_ENV", "false")
    monkeypatch.setenv("GENREOPS_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    os.environ.clear()
    os.environ.update(saved)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.app, list(args), catch_exceptions=False)


def recorder(seen: dict[str, Any], stop: bool = True) -> Any:
    """A stand-in that records its arguments (and, by default, ends the command)."""

    def record(*args: Any, **kwargs: Any) -> Any:
        seen.setdefault("calls", []).append((args, kwargs))
        if stop:
            raise StopError("stand-in reached")
        return None

    return record


# --- --version --------------------------------------------------------------------------------


def test_version_prints_the_package_version_and_exits_0() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"genreops {__version__}"


# --- defaults follow the settings -------------------------------------------------------------


def _serve_ports(monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from genreops.serving.triton import server

    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "start_triton", recorder(seen))
    result = invoke("serve", *args)
    assert result.exit_code == 1, result.output
    ((_, kwargs),) = seen["calls"]
    return kwargs["ports"]


def test_serve_ports_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENREOPS_TRITON_HTTP_PORT", "9100")
    monkeypatch.setenv("GENREOPS_TRITON_GRPC_PORT", "9101")
    monkeypatch.setenv("GENREOPS_TRITON_METRICS_PORT", "9102")
    ports = _serve_ports(monkeypatch)
    assert (ports.http, ports.grpc, ports.metrics) == (9100, 9101, 9102)


def test_serve_ports_follow_the_stack_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """<home>/stack.env is read by the settings only (not by click's envvar): the defaults
    must come from the settings object itself."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "stack.env").write_text("GENREOPS_TRITON_GRPC_PORT=9201\n")
    monkeypatch.setenv("GENREOPS_USE_STACK_ENV", "true")
    ports = _serve_ports(monkeypatch)
    assert (ports.http, ports.grpc, ports.metrics) == (8000, 9201, 8002)


def test_serve_flags_still_win_over_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENREOPS_TRITON_HTTP_PORT", "9100")
    ports = _serve_ports(monkeypatch, "--http-port", "9300")
    assert ports.http == 9300


def test_serve_repository_follows_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genreops.serving.triton import server

    monkeypatch.setenv("GENREOPS_TRITON_REPOSITORY", str(tmp_path / "repo"))
    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "start_triton", recorder(seen))
    assert invoke("serve").exit_code == 1
    ((args, _),) = seen["calls"]
    assert args[0] == (tmp_path / "repo").resolve()


def test_s3_server_port_follows_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from genreops.platform import s3server

    monkeypatch.setenv("GENREOPS_S3_PORT", "4599")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(s3server, "start_s3_server", recorder(seen))
    assert invoke("s3-server").exit_code == 1
    assert seen["calls"][0][1]["port"] == 4599


class _FakeClient:
    made: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, url: str, protocol: str = "grpc") -> None:
        self.made.append((url, protocol))

    def labels(self) -> list[str]:
        return ["blues", "rock"]


@pytest.fixture
def fake_triton(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """``predict`` against a stand-in client: one input, answered as rock."""
    from genreops.serving import client

    _FakeClient.made = []
    monkeypatch.setattr(client, "EnsembleClient", _FakeClient)
    monkeypatch.setattr(client, "list_inputs", lambda paths, s3=None: ["x/song.wav"])

    def answer(inputs: list[str], *_: Any, **__: Any) -> list[client.Answer]:
        return [
            client.Answer(path=p, genre="rock", model="champion", probabilities=[0.1, 0.9])
            for p in inputs
        ]

    monkeypatch.setattr(client, "predict", answer)
    return _FakeClient.made


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [("grpc", "10.1.2.3:9001"), ("http", "10.1.2.3:9100")],
)
def test_predict_targets_the_settings_address(
    monkeypatch: pytest.MonkeyPatch,
    fake_triton: list[tuple[str, str]],
    protocol: str,
    expected: str,
) -> None:
    """HTTP used to go to a literal 127.0.0.1:8000 whatever the settings said."""
    monkeypatch.setenv("GENREOPS_TRITON_URL", "10.1.2.3:9001")
    monkeypatch.setenv("GENREOPS_TRITON_HTTP_PORT", "9100")
    result = invoke("predict", "x", "--protocol", protocol)
    assert result.exit_code == 0, result.output
    assert fake_triton == [(expected, protocol)]


def test_predict_url_drops_a_scheme(fake_triton: list[tuple[str, str]]) -> None:
    assert invoke("predict", "x", "--url", "http://h:1234/", "--protocol", "http").exit_code == 0
    assert fake_triton == [("h:1234", "http")]


def test_extract_defaults_follow_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The window used to be fixed at 30 s whatever GENREOPS_WINDOW_SECONDS told serving."""
    import genreops.flows.extract
    import genreops.flows.runtime

    monkeypatch.setenv("GENREOPS_WINDOW_SECONDS", "6")
    monkeypatch.setenv("GENREOPS_DASK_WORKERS", "3")
    monkeypatch.setenv("GENREOPS_DASK_ADDRESS", "tcp://10.0.0.1:8786")
    monkeypatch.setenv("GENREOPS_EXTRACT_CHUNK_SIZE", "7")
    monkeypatch.setenv("GENREOPS_EXTRACT_MAX_FAILED_SHARE", "0.25")
    seen: dict[str, Any] = {}

    class Flow:
        def with_options(self, **_: Any) -> Any:
            return recorder(seen)

    monkeypatch.setattr(
        genreops.flows.extract, "dask_runner", lambda *args: seen.update(runner=args)
    )
    monkeypatch.setattr(genreops.flows.extract, "extract_features", Flow())
    monkeypatch.setattr(genreops.flows.runtime, "prefect_api", nullcontext)
    assert invoke("extract", "in", "out").exit_code == 1
    assert seen["runner"] == ("tcp://10.0.0.1:8786", 3)
    kwargs = seen["calls"][0][1]
    assert kwargs["window_seconds"] == 6.0
    assert kwargs["chunk_size"] == 7
    assert kwargs["max_failed_share"] == 0.25


def _fake_pipeline(monkeypatch: pytest.MonkeyPatch, result: Any = None) -> dict[str, Any]:
    """``genreops pipeline`` against a stand-in flow: records its arguments, returns
    ``result`` (None: stops the command like the other stand-ins)."""
    import genreops.flows.pipeline
    import genreops.flows.runtime

    seen: dict[str, Any] = {}

    def run(**kwargs: Any) -> Any:
        seen.update(kwargs)
        if result is None:
            raise StopError("stand-in reached")
        return result

    monkeypatch.setattr(genreops.flows.pipeline, "pipeline", run)
    monkeypatch.setattr(genreops.flows.runtime, "prefect_api", nullcontext)
    return seen


def test_pipeline_defaults_follow_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stage option of `genreops pipeline` that has a setting takes it."""
    for name, value in {
        "GENREOPS_WINDOW_SECONDS": "6", "GENREOPS_DASK_WORKERS": "3",
        "GENREOPS_DASK_ADDRESS": "tcp://10.0.0.1:8786", "GENREOPS_EXTRACT_CHUNK_SIZE": "7",
        "GENREOPS_EXTRACT_MAX_FAILED_SHARE": "0.25", "GENREOPS_CV_FOLDS": "0",
        "GENREOPS_STUDY_STORAGE_URL": "sqlite:///s.db", "GENREOPS_MODEL_NAME": "from-env",
        "GENREOPS_TRITON_REPOSITORY": str(tmp_path / "repo"),
        "GENREOPS_SEARCH_SPACE_FILE": str(tmp_path / "spaces.yaml"),
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    seen = _fake_pipeline(monkeypatch)
    assert invoke("pipeline", "corpus", "features").exit_code == 1
    assert seen == {
        "corpus_url": str(tmp_path / "corpus"),
        "features_url": str(tmp_path / "features"),
        "families": None,
        "trials": 20,
        "seed": 0,
        "retrain": False,
        "predict_urls": [],
        "results_url": None,
        "window_seconds": 6.0,
        "chunk_size": 7,
        "max_failed_share": 0.25,
        "dask_address": "tcp://10.0.0.1:8786",
        "dask_workers": 3,
        "study_storage": "sqlite:///s.db",
        "search_space_file": str(tmp_path / "spaces.yaml"),
        "cv_folds": 0,
        "model_name": "from-env",
        "repository": str((tmp_path / "repo").resolve()),
    }


def test_pipeline_flags_win_and_families_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENREOPS_WINDOW_SECONDS", "6")
    seen = _fake_pipeline(monkeypatch)
    result = invoke(
        "pipeline", "s3://raw/c", "s3://features/f", "-f", "knn", "--family", "svc", "-f", "knn",
        "--trials", "3", "--seed", "2", "--retrain", "--window", "10", "--predict", "s3://raw/t",
        "--predict", "local", "--results-url", "out", "--model-name", "m",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert (seen["corpus_url"], seen["features_url"]) == ("s3://raw/c", "s3://features/f")
    assert seen["families"] == ["knn", "svc"]
    assert (seen["trials"], seen["seed"], seen["retrain"]) == (3, 2, True)
    assert seen["window_seconds"] == 10.0
    assert seen["predict_urls"] == ["s3://raw/t", str(tmp_path / "local")]
    assert seen["results_url"] == str(tmp_path / "out")
    assert seen["model_name"] == "m"
    unknown = invoke("pipeline", "c", "f", "--family", "lasso")
    assert unknown.exit_code == 2 and "unknown family 'lasso'" in unknown.output


def test_pipeline_json_and_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    summary = {
        "extracted": 8, "reused_chunks": 1, "failed_clips": ["c/x.wav: unreadable"],
        "families": {"knn": {"val_gmean": 0.5, "test_gmean": None, "run_id": "r",
                             "retrained": True}},
        "registered": {"champion": {"version": "2", "family": "knn", "val_gmean": 0.5}},
        "published": {"version": 1, "created": True, "current": 1},
        "batches": [],
    }  # fmt: skip
    _fake_pipeline(monkeypatch, summary)
    result = invoke("pipeline", "c", "f", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == summary
    table = invoke("pipeline", "c", "f")
    assert table.exit_code == 0, table.output
    assert "Champion    version 2 (knn, val G-mean 0.500)" in table.stdout
    assert "Published repository version 1 (new)" in table.stdout
    assert "pipeline.json" in table.stdout
    assert "c/x.wav: unreadable" in table.stderr


def test_invalid_settings_are_a_usage_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GENREOPS_DASK_WORKERS", "0")  # not an option of serve: via settings
    result = invoke("serve")
    assert result.exit_code == 2
    assert "dask_workers" in result.output
    assert CliRunner().invoke(cli.app, ["serve", "--help"]).exit_code == 0  # help still works


def test_extract_json(monkeypatch: pytest.MonkeyPatch) -> None:
    import genreops.flows.extract
    import genreops.flows.runtime

    from genreops.data.extraction import ExtractionSummary, Failure

    failure = Failure("blues.1", "in/blues/1.wav", "decode", "bad header")
    summary = ExtractionSummary("o", "o/features.parquet", "o/split", "o/m.json", 3, 2, [failure])

    class Flow:
        def with_options(self, **_: Any) -> Any:
            return lambda **kwargs: summary

    monkeypatch.setattr(genreops.flows.extract, "dask_runner", lambda *args: None)
    monkeypatch.setattr(genreops.flows.extract, "extract_features", Flow())
    monkeypatch.setattr(genreops.flows.runtime, "prefect_api", nullcontext)
    result = invoke("extract", "in", "out", "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_extracted"] == 2
    assert data["failures"][0]["clip_id"] == "blues.1"


def test_help_names_the_variable_and_shows_the_value_in_force(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GENREOPS_TRITON_HTTP_PORT", "9177")
    result = CliRunner().invoke(cli.app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    line = next(x for x in result.output.splitlines() if "--http-port" in x)
    assert "GENREOPS_TRITON_HTTP_PORT" in line
    assert "9177" in line


def _options(command: Any) -> Iterator[tuple[str, Any]]:
    """Every parameter of every (sub)command, by path (typer builds its own click classes)."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            for path, param in _options(sub):
                yield f"{name} {path}", param
    else:
        for param in command.params:
            yield param.name or "", param


def test_every_envvar_is_a_setting_and_its_default_the_setting() -> None:
    """No option names a variable the settings ignore, or defaults to something else."""
    settings = Settings()
    checked = 0
    for path, param in _options(typer.main.get_command(cli.app)):
        if not param.envvar:
            continue
        field = str(param.envvar).removeprefix("GENREOPS_").lower()
        assert field in Settings.model_fields, path
        default = param.default
        assert isinstance(default, FromSettings), path
        expected = getattr(settings, field)
        if field == "triton_repository":
            expected = settings.repository
        assert default() == expected, path
        checked += 1
    assert checked >= 15


# --- -o/--output json ---------------------------------------------------------------------------


def test_models_json_lists_versions_of_the_settings_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from genreops.training import registry

    monkeypatch.setenv("GENREOPS_MODEL_NAME", "my-model")
    asked: list[str] = []

    def versions(target: Any, name: str) -> list[registry.VersionRow]:
        asked.append(name)
        return [registry.VersionRow("3", ["champion"], "svc", "r1", "abc", {"val_gmean": 0.9}, 1)]

    monkeypatch.setattr(registry, "list_versions", versions)
    result = invoke("models", "-o", "json")
    assert result.exit_code == 0, result.output
    assert asked == ["my-model"]
    rows = json.loads(result.stdout)
    assert rows[0]["version"] == "3"
    assert rows[0]["aliases"] == ["champion"]
    assert rows[0]["metrics"] == {"val_gmean": 0.9}


def test_register_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from genreops.training import registry

    candidate = registry.Candidate("r1", "svc", "runs:/r1/model", "1", "abc", {"val_gmean": 0.8}, 0)
    skipped = registry.Candidate("r2", "knn", "runs:/r2/model", "1", "def", {}, 0)
    summary = registry.RegistrySummary(
        "genre-classifier",
        2,
        [registry.Assignment(1, "champion", "5", candidate, "best")],
        skipped=[(skipped, "other schema")],
        changes=["champion -> 5"],
    )
    seen: dict[str, Any] = {}

    def register(target: Any, **kwargs: Any) -> registry.RegistrySummary:
        seen.update(kwargs)
        return summary

    monkeypatch.setattr(registry, "register_best", register)
    monkeypatch.setenv("GENREOPS_MODEL_NAME", "from-env")
    result = invoke("register", "--output", "json")
    assert result.exit_code == 0, result.output
    assert seen["model_name"] == "from-env"
    data = json.loads(result.stdout)
    assert data["assignments"][0]["alias"] == "champion"
    assert data["assignments"][0]["candidate"]["run_id"] == "r1"
    assert data["skipped"] == [{"run_id": "r2", "family": "knn", "reason": "other schema"}]


def _fake_training(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import genreops.flows.runtime
    import genreops.flows.train

    seen: dict[str, Any] = {}

    def train_model(**kwargs: Any) -> genreops.flows.train.TrainingSummary:
        seen.update(kwargs)
        outcome = genreops.flows.train.FamilyOutcome(
            "knn", "run1", "runs:/run1/model", "s", {"k": 3}, {"gmean": 0.7}, {"gmean": 0.6},
            {"complete": 2, "pruned": 0, "fail": 0}, 1.5,
        )  # fmt: skip
        return genreops.flows.train.TrainingSummary(
            "t.parquet", "abc", {"train": 8}, [outcome], "cols"
        )

    monkeypatch.setattr(genreops.flows.train, "train_model", train_model)
    monkeypatch.setattr(genreops.flows.runtime, "prefect_api", nullcontext)
    return seen


def test_train_json_and_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_training(monkeypatch)
    monkeypatch.setenv("GENREOPS_CV_FOLDS", "0")
    monkeypatch.setenv("GENREOPS_STUDY_STORAGE_URL", "sqlite:///s.db")
    result = invoke("train", "t.parquet", "--family", "knn", "-o", "json")
    assert result.exit_code == 0, result.output
    assert seen["cv_folds"] == 0
    assert seen["study_storage"] == "sqlite:///s.db"
    assert seen["families"] == ["knn"]
    data = json.loads(result.stdout)
    assert data["outcomes"][0]["family"] == "knn"
    assert data["outcomes"][0]["validation"] == {"gmean": 0.7}
    assert "tracking_uri" in data


def test_train_keeps_model_as_a_hidden_alias_of_family(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_training(monkeypatch)
    assert invoke("train", "t.parquet", "-m", "svc", "--model", "knn").exit_code == 0
    assert seen["families"] == ["svc", "knn"]
    help_text = CliRunner().invoke(cli.app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "--family" in help_text
    assert "--model " not in help_text


def test_predict_json_on_stdout(fake_triton: list[tuple[str, str]]) -> None:
    result = invoke("predict", "x", "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["summary"]["answered"] == 1
    assert data["answers"][0]["genre"] == "rock"


def test_predict_output_file_is_the_old_spelling_of_save(
    tmp_path: Path, fake_triton: list[tuple[str, str]]
) -> None:
    for option, name in (("--save", "a.csv"), ("--output", "b.csv")):
        assert invoke("predict", "x", option, str(tmp_path / name)).exit_code == 0
        assert "rock" in (tmp_path / name).read_text()


def test_stack_json_and_the_old_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from genreops.platform import stack

    row = stack.ServiceStatus("s3", "running", True, "http://127.0.0.1:4568", pid=42)

    class FakeStack:
        def __init__(self, settings: Settings) -> None:
            pass

        env_file = "stack.env"

        def status(self) -> list[stack.ServiceStatus]:
            return [row]

        def up(self, only: Any, timeout: Any, on_event: Any) -> list[stack.ServiceStatus]:
            on_event("s3", "running", "ok")
            return [row]

    monkeypatch.setattr(stack, "Stack", FakeStack)
    for args in (("-o", "json"), ("--output", "json"), ("--json",)):
        result = invoke("stack", "status", *args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == [row.as_dict()]
    assert "127.0.0.1:4568" in invoke("stack", "status").stdout
    up = invoke("stack", "up", "-o", "json")
    assert up.exit_code == 0, up.output
    assert json.loads(up.stdout) == [row.as_dict()]


def test_output_rejects_unknown_formats() -> None:
    assert CliRunner().invoke(cli.app, ["models", "-o", "yaml"]).exit_code == 2


# --- one name per concept ---------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--url", "--server-url"])
def test_publish_url_takes_host_port(monkeypatch: pytest.MonkeyPatch, option: str) -> None:
    """--url everywhere (predict's spelling); publish's old --server-url still works."""
    from genreops.serving import publish

    seen: dict[str, Any] = {}
    monkeypatch.setattr(publish, "publish_registered", recorder(seen))
    assert invoke("publish", option, "127.0.0.1:9000").exit_code == 1
    assert seen["calls"][0][1]["server_url"] == "http://127.0.0.1:9000"


def test_no_two_spellings_of_one_concept() -> None:
    """Visible option names that mean the same thing must be spelled the same."""
    synonyms = [{"--url", "--server-url"}, {"--model-name", "--model"}, {"--output", "--json"}]
    visible = {
        opt
        for _, param in _options(typer.main.get_command(cli.app))
        if getattr(param, "opts", None) and not getattr(param, "hidden", False)
        for opt in param.opts
    }
    for group in synonyms:
        assert len(group & visible) == 1, group & visible


def test_models_lists_the_newest_model_events_after_the_versions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from genreops.monitoring.store import MonitoringStore
    from genreops.training import registry

    database = f"sqlite:///{tmp_path / 'monitoring.db'}"
    monkeypatch.setenv("GENREOPS_DATABASE_URL", database)
    with MonitoringStore(database) as store:
        store.ensure_schema()
        store.insert_model_events(
            [
                {"event": "publish", "repository_version": 4, "champion": "m/1",
                 "challenger": "m/2"},
                {"event": "retrain-triggered",
                 "detail": {"reason": "drift", "message": "the gate stayed open",
                            "run_id": "run-9"}},
                {"event": "canary-published",
                 "detail": {"canary": "m/3", "share": 0.25}},
            ]
        )  # fmt: skip
    row = registry.VersionRow("3", ["champion"], "svc", "r1", "abc", {"val_gmean": 0.9}, 1)
    monkeypatch.setattr(registry, "list_versions", lambda target, name: [row])
    result = invoke("models")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "version 4: champion m/1, challenger m/2" in text
    assert "retrain-triggered" in text and "the gate stayed open (Prefect run run-9)" in text
    assert "canary-published" in text and "m/3 answers 25% of all traffic" in text
    assert "retrain-triggered" not in " ".join(invoke("models", "--events", "0").output.split())
