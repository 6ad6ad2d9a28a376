"""The Triton Python models as Triton runs them, without tritonserver.

Each ``model.py`` is loaded from a version folder ``publish_pair`` wrote, with a stand-in
``triton_python_backend_utils`` (tests/fake_pb_utils.py), and driven through
``initialize(args)`` / ``execute(requests)``: outputs keep their names, dtypes and shapes, and a
bad request fails alone while the other requests of its batch are answered.
"""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

import fake_pb_utils as pb
from genreops.core.settings import get_settings
from genreops.data.feature_table import load_feature_table
from genreops.data.features import FEATURE_NAMES
from genreops.serving.publish import ModelRef, ServingOptions, publish_pair
from genreops.training.search_space import load_search_spaces
from genreops.training.tuning import tune
from helpers import synthetic_feature_frame

pytestmark = pytest.mark.unit

GENRES = ("blues", "classical", "metal", "pop")
N_FEATURES = len(FEATURE_NAMES)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A published repository (version 1): a k-NN champion and challenger on synthetic data."""
    root = tmp_path_factory.mktemp("published")
    synthetic_feature_frame(per_genre=6, genres=GENRES).to_parquet(root / "t.parquet", index=False)
    table = load_feature_table(str(root / "t.parquet"))
    classifier = tune(table, load_search_spaces()["knn"], trials=1).classifier
    pair = [
        (ModelRef.of(classifier, name="genre-classifier", version=v, run_id=f"run{v}"), classifier)
        for v in ("1", "2")
    ]
    reference = synthetic_feature_frame(per_genre=3, genres=GENRES)[list(FEATURE_NAMES)]
    publish_pair(
        root / "repo", champion=pair[0], challenger=pair[1], reference=reference,
        options=ServingOptions(drift_min_samples=5, drift_test_every=5),
    )  # fmt: skip
    return root / "repo"


@pytest.fixture(scope="module")
def canary_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 with a canary on trial: genre-classifier/3, trained with every genre renamed to
    the next one (a wrong model that still knows the same genres)."""
    root = tmp_path_factory.mktemp("canary")
    frame = synthetic_feature_frame(per_genre=6, genres=GENRES)
    table_path = root / "t.parquet"
    frame.to_parquet(table_path, index=False)
    classifier = tune(load_feature_table(str(table_path)), load_search_spaces()["knn"], trials=1)
    renamed = dict(zip(GENRES, GENRES[1:] + GENRES[:1], strict=True))
    frame.assign(genre=frame["genre"].map(renamed)).to_parquet(table_path, index=False)
    rotated = tune(load_feature_table(str(table_path)), load_search_spaces()["knn"], trials=1)
    models = [
        (ModelRef.of(c.classifier, name="genre-classifier", version=v, run_id=f"run{v}"), c)
        for v, c in (("1", classifier), ("2", classifier), ("3", rotated))
    ]
    reference = synthetic_feature_frame(per_genre=3, genres=GENRES)[list(FEATURE_NAMES)]
    publish_pair(
        root / "repo",
        champion=(models[0][0], classifier.classifier),
        challenger=(models[1][0], classifier.classifier),
        canary=(models[2][0], rotated.classifier),
        reference=reference,
        options=ServingOptions(drift_min_samples=5, drift_test_every=5, canary_share=0.5),
    )
    return root / "repo"


@pytest.fixture
def triton(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The stand-in backend module, and genreops state under tmp_path."""
    pb.reset()
    monkeypatch.setitem(__import__("sys").modules, "triton_python_backend_utils", pb)
    monkeypatch.setenv("GENREOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GENREOPS_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    pb.reset()


def _config(repository: Path, model: str) -> dict[str, Any]:
    """The model's rendered config.pbtxt as the JSON Triton passes in ``model_config``."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    text = (repository / model / "config.pbtxt").read_text()
    config: dict[str, Any] = json_format.MessageToDict(
        text_format.Parse(text, model_config_pb2.ModelConfig()), preserving_proto_field_name=True
    )
    return config


def load_model(repository: Path, model: str, **parameters: str) -> Any:
    """Import ``<repository>/<model>/1/model.py`` and initialize it as Triton would."""
    path = repository / model / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"triton_{model}_model", path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    with pb.importing():  # as in tritonserver: Tensor, MetricFamily, ... come later
        spec.loader.exec_module(module)
    config = _config(repository, model)
    for key, value in parameters.items():
        config.setdefault("parameters", {})[key] = {"string_value": value}
    instance = module.TritonPythonModel()
    instance.initialize(
        {
            "model_config": json.dumps(config),
            "model_instance_kind": "CPU",
            "model_instance_name": f"{model}_0",
            "model_instance_device_id": "0",
            "model_repository": str(repository / model),
            "model_version": "1",
            "model_name": model,
        }
    )
    pb.MODELS[model] = instance
    return instance


def request(**inputs: np.ndarray) -> pb.InferenceRequest:
    return pb.InferenceRequest(inputs=[pb.Tensor(name, array) for name, array in inputs.items()])


def strings(*values: bytes) -> np.ndarray:
    return np.array([[v] for v in values], dtype=np.object_)


def outputs(response: pb.InferenceResponse) -> dict[str, np.ndarray]:
    assert not response.has_error(), response.error().message()  # type: ignore[union-attr]
    return {t.name(): t.as_numpy() for t in response.output_tensors()}


def error(response: pb.InferenceResponse) -> pb.TritonError:
    assert response.has_error() and not response.output_tensors()
    failure = response.error()
    assert failure is not None
    return failure


def features(rows: int, seed: int = 0) -> np.ndarray:
    frame = synthetic_feature_frame(per_genre=3, genres=GENRES, seed=seed)
    return frame[list(FEATURE_NAMES)].to_numpy(np.float32)[:rows].copy()


def received(rows: int) -> np.ndarray:
    return np.full((rows, 1), 1_000, dtype=np.int64)


def wav(seconds: float = 6.0) -> bytes:
    import soundfile as sf

    from genreops.data.synth import render_clip

    buffer = io.BytesIO()
    sf.write(buffer, render_clip("rock", 0, seconds=seconds), 22050, format="WAV")
    return buffer.getvalue()


def test_the_preprocessor_answers_good_files_and_refuses_a_bad_one_alone(
    triton: None, repository: Path
) -> None:
    model = load_model(repository, "preprocessor")
    audio = wav()
    responses = model.execute(
        [
            request(AUDIO=strings(audio), CLIP_ID=strings(b"rock.00000.wav")),
            request(AUDIO=strings(b"this is not audio"), CLIP_ID=strings(b"junk.txt")),
            request(AUDIO=strings(audio)),
        ]
    )
    assert len(responses) == 3
    for answer in (outputs(responses[0]), outputs(responses[2])):
        assert set(answer) == {"FEATURES", "RECEIVED_NS"}
        assert answer["FEATURES"].dtype == np.float32
        assert answer["FEATURES"].shape == (1, N_FEATURES)
        assert np.isfinite(answer["FEATURES"]).all()
        assert answer["RECEIVED_NS"].dtype == np.int64 and answer["RECEIVED_NS"].shape == (1, 1)
    refused = error(responses[1])
    assert refused.code() == pb.TritonError.INVALID_ARG
    reason = refused.message()[1 : refused.message().index("]")]
    assert "junk.txt" in refused.message()
    assert pb.total("genreops_bad_inputs_total", reason=reason) == 1
    assert pb.total("genreops_bad_inputs_total") == 1
    assert pb.total("genreops_preprocessed_items_total") == 2


def test_the_fallback_answers_probabilities_and_refuses_a_malformed_request_alone(
    triton: None, repository: Path
) -> None:
    model = load_model(repository, "fallback")
    responses = model.execute(
        [
            request(FEATURES=features(2)),
            request(FEATURES=np.zeros((1, 3), dtype=np.float32)),
            request(FEATURES=features(1, seed=1)),
        ]
    )
    for response, rows in ((responses[0], 2), (responses[2], 1)):
        answer = outputs(response)
        assert answer["PROBABILITIES"].dtype == np.float32
        assert answer["PROBABILITIES"].shape == (rows, len(GENRES))
        assert np.allclose(answer["PROBABILITIES"].sum(axis=1), 1.0)
    refused = error(responses[1])
    assert refused.code() == pb.TritonError.INVALID_ARG
    assert str(N_FEATURES) in refused.message()


def test_the_postprocessor_names_the_most_likely_genre_and_refuses_a_wrong_width_alone(
    triton: None, repository: Path
) -> None:
    model = load_model(repository, "postprocessor")
    probabilities = np.eye(len(GENRES), dtype=np.float32)[[2, 0]]
    responses = model.execute(
        [
            request(PROBABILITIES=probabilities),
            request(PROBABILITIES=np.ones((1, len(GENRES) + 1), dtype=np.float32)),
        ]
    )
    genre = outputs(responses[0])["GENRE"]
    assert genre.dtype == np.object_ and genre.shape == (2, 1)
    assert [g[0] for g in genre] == [GENRES[2].encode(), GENRES[0].encode()]
    assert error(responses[1]).code() == pb.TritonError.INVALID_ARG


PREDICTOR_OUTPUTS = {
    "PROBABILITIES": (np.float32, len(GENRES)),
    "MODEL": (np.object_, 1),
    "DRIFT": (np.bool_, 1),
    "OOD": (np.bool_, 1),
    "OOD_SCORE": (np.float32, 1),
}


def _check_answer(answer: dict[str, np.ndarray], rows: int, model: bytes) -> None:
    assert set(answer) == set(PREDICTOR_OUTPUTS)
    for name, (dtype, width) in PREDICTOR_OUTPUTS.items():
        assert answer[name].dtype == dtype, name
        assert answer[name].shape == (rows, width), name
    assert [m[0] for m in answer["MODEL"]] == [model] * rows


@pytest.fixture
def predictor(triton: None, repository: Path) -> Iterator[Callable[..., Any]]:
    """Loads the predictor (and the fallback it calls); finalizes it after the test."""
    loaded: list[Any] = []

    def load(**parameters: str) -> Any:
        load_model(repository, "fallback")
        model = load_model(repository, "predictor", **parameters)
        loaded.append(model)
        return model

    yield load
    for model in loaded:
        if not getattr(model, "finalized", False):
            model.finalize()


def test_the_predictor_answers_each_valid_request_and_fails_bad_ones_alone(
    predictor: Callable[..., Any],
) -> None:
    model = predictor()
    not_finite = features(1)
    not_finite[0, 3] = np.nan
    responses = model.execute(
        [
            request(FEATURES=features(2), RECEIVED_NS=received(2), CLIP_ID=strings(b"a", b"b")),
            request(FEATURES=not_finite, RECEIVED_NS=received(1)),
            request(FEATURES=np.zeros((1, 5), dtype=np.float32), RECEIVED_NS=received(1)),
            request(FEATURES=features(1)),  # no RECEIVED_NS
            request(FEATURES=features(1, seed=2), RECEIVED_NS=received(1)),
        ]
    )
    assert len(responses) == 5
    _check_answer(outputs(responses[0]), 2, b"genre-classifier/1")
    _check_answer(outputs(responses[4]), 1, b"genre-classifier/1")
    reasons = [error(responses[i]) for i in (1, 2, 3)]
    assert all(r.code() == pb.TritonError.INVALID_ARG for r in reasons)
    assert "not finite" in reasons[0].message()
    assert f"[n, {N_FEATURES}]" in reasons[1].message()
    assert "RECEIVED_NS" in reasons[2].message()
    assert pb.total("genreops_predictions_total", model="genre-classifier/1") == 3
    assert pb.total("genreops_fallback_answers_total") == 0
    assert pb.FAMILIES["genreops_drift_gate_open"].metrics[0].value == 0.0


def test_a_request_the_champion_cannot_score_fails_alone(
    predictor: Callable[..., Any],
) -> None:
    model = predictor()
    champion = model.handler.runtime.champion
    poison = 1234.5

    class Picky:
        """The champion, refusing any row whose first feature is ``poison``."""

        label = champion.label

        def predict_proba(self, rows: np.ndarray) -> np.ndarray:
            if (rows[:, 0] == poison).any():
                raise ValueError("cannot score this row")
            return champion.predict_proba(rows)

        def own_columns(self, rows: np.ndarray) -> np.ndarray:
            return champion.own_columns(rows)

    model.handler.runtime.champion = Picky()
    bad = features(1)
    bad[0, 0] = poison
    responses = model.execute(
        [
            request(FEATURES=features(1), RECEIVED_NS=received(1)),
            request(FEATURES=bad, RECEIVED_NS=received(1)),
            request(FEATURES=features(2, seed=3), RECEIVED_NS=received(2)),
        ]
    )
    _check_answer(outputs(responses[0]), 1, b"genre-classifier/1")
    _check_answer(outputs(responses[2]), 2, b"genre-classifier/1")
    assert "cannot score this row" in error(responses[1]).message()
    assert pb.total("genreops_predictions_total") == 3


def test_the_challenger_share_is_answered_by_the_fallback_through_bls(
    predictor: Callable[..., Any],
) -> None:
    model = predictor(challenger_share="1.0")
    responses = model.execute(
        [
            request(FEATURES=features(2), RECEIVED_NS=received(2)),
            request(FEATURES=features(1, seed=4), RECEIVED_NS=received(1)),
        ]
    )
    _check_answer(outputs(responses[0]), 2, b"genre-classifier/2")
    _check_answer(outputs(responses[1]), 1, b"genre-classifier/2")
    assert pb.total("genreops_fallback_answers_total", cause="share") == 3
    assert pb.total("genreops_predictions_total", model="genre-classifier/2") == 3


def test_when_the_fallback_fails_the_champion_answers(predictor: Callable[..., Any]) -> None:
    model = predictor(challenger_share="1.0")
    del pb.MODELS["fallback"]  # the BLS call answers an error
    responses = model.execute([request(FEATURES=features(2), RECEIVED_NS=received(2))])
    _check_answer(outputs(responses[0]), 2, b"genre-classifier/1")
    assert pb.total("genreops_fallback_errors_total") == 2
    assert any(level == "error" and "fallback failed" in m for level, m in pb.LOGGED)


def test_a_canary_answers_its_share_and_its_answers_are_recorded_as_the_canary(
    triton: None, canary_repository: Path
) -> None:
    from genreops.monitoring.store import MonitoringStore

    load_model(canary_repository, "fallback")
    load_model(canary_repository, "canary")
    model = load_model(canary_repository, "predictor")
    sent = features(12).repeat(5, axis=0)
    answer = outputs(model.execute([request(FEATURES=sent, RECEIVED_NS=received(60))])[0])
    by_canary = answer["MODEL"][:, 0] == b"genre-classifier/3"
    assert 15 < by_canary.sum() < 45  # canary_share 0.5 of every row
    assert set(answer["MODEL"][~by_canary, 0]) == {b"genre-classifier/1"}
    canary = pb.MODELS["canary"].handler.model
    assert canary.label == "genre-classifier/3"
    expected = canary.predict_proba(sent[by_canary])
    assert np.allclose(answer["PROBABILITIES"][by_canary], expected)
    assert pb.total("genreops_canary_answers_total", model="genre-classifier/3") == by_canary.sum()
    model.finalize()
    stored = MonitoringStore(get_settings().monitoring_db_url).recent_predictions(100)
    assert sum(r["model_role"] == "canary" for r in stored) == by_canary.sum()
    assert {r["model_version"] for r in stored if r["model_role"] == "canary"} == {
        "genre-classifier/3"
    }


def test_when_the_canary_fails_its_rows_are_answered_as_usual(
    triton: None, canary_repository: Path
) -> None:
    load_model(canary_repository, "fallback")
    model = load_model(canary_repository, "predictor")  # no canary model loaded: BLS fails
    answer = outputs(model.execute([request(FEATURES=features(8), RECEIVED_NS=received(8))])[0])
    assert set(answer["MODEL"][:, 0]) == {b"genre-classifier/1"}
    assert pb.total("genreops_canary_errors_total") > 0
    assert pb.total("genreops_canary_answers_total") == 0
    model.finalize()


def test_an_empty_canary_slot_refuses_and_the_predictor_never_calls_it(
    predictor: Callable[..., Any], repository: Path
) -> None:
    slot = load_model(repository, "canary")
    refused = error(slot.execute([request(FEATURES=features(1))])[0])
    assert "no model is published" in refused.message()
    model = predictor(canary_share="0.9")  # a share without a canary sends nothing there
    answer = outputs(model.execute([request(FEATURES=features(8), RECEIVED_NS=received(8))])[0])
    assert set(answer["MODEL"][:, 0]) == {b"genre-classifier/1"}
    assert pb.total("genreops_canary_errors_total") == 0


def test_answers_are_recorded_in_the_monitoring_store(
    predictor: Callable[..., Any], tmp_path: Path
) -> None:
    from genreops.monitoring.store import MonitoringStore

    model = predictor()
    frame = pd.DataFrame(features(2))
    model.execute(
        [
            request(FEATURES=frame.to_numpy(np.float32), RECEIVED_NS=received(2),
                    CLIP_ID=strings(b"x.wav", b"y.wav")),
            request(FEATURES=np.zeros((1, 2), dtype=np.float32), RECEIVED_NS=received(1)),
        ]
    )  # fmt: skip
    model.finalize()  # the writer flushes the answers to the store
    model.finalized = True
    rows = MonitoringStore(get_settings().monitoring_db_url).recent_predictions(10)
    assert sorted(r["clip_id"] for r in rows) == ["x.wav", "y.wav"]
    assert {r["repository_version"] for r in rows} == {1}
