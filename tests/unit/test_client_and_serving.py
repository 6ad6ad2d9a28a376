"""Client bookkeeping and the serving stage logic, without a server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genreops.core.errors import AudioError, SchemaError
from genreops.data.features import FEATURE_NAMES
from genreops.data.synth import render_clip
from genreops.monitoring.novelty import NoveltyMonitor, NoveltySettings
from genreops.monitoring.store import MonitoringStore, MonitoringWriter
from genreops.serving.client import Answer, expected_genre, list_inputs, render, summarize
from genreops.serving.labels import genre_names
from genreops.serving.preprocess import PreprocessOptions, featurize
from genreops.serving.runtime import PredictorRuntime, PublishedModel, Router

pytestmark = pytest.mark.unit


def test_summary_counts_models_gate_openings_and_scores() -> None:
    answers = [
        Answer("a/rock/1.wav", "rock", "m/1", False, expected="rock"),
        Answer("a/rock/2.wav", "rock", "m/2", True, ood=True, expected="rock"),
        Answer("a/pop/3.wav", "rock", "m/2", True, expected="pop"),
        Answer("a/pop/4.wav", "pop", "m/1", False, expected="pop"),
        Answer("a/pop/5.wav", "pop", "m/2", True, expected="pop"),
        Answer("bad.txt", error="[not_audio] bad.txt: no audio", reason="not_audio"),
    ]
    summary = summarize(answers)
    assert (summary.total, summary.answered, summary.failed) == (6, 5, 1)
    assert summary.by_model == {"m/2": 3, "m/1": 2}
    assert summary.drift_answers == 3 and summary.gate_openings == 2
    assert summary.ood_answers == 1
    assert summary.by_reason == {"not_audio": 1}
    assert summary.accuracy == pytest.approx(4 / 5)
    assert summary.gmean == pytest.approx(np.sqrt(1.0 * (2 / 3)))


def test_results_have_one_row_per_input_with_probabilities(tmp_path: Path) -> None:
    answers = [
        Answer("x.wav", "rock", "m/1", False, [0.25, 0.75]),
        Answer("y.wav", error="[empty] y.wav: empty file", reason="empty"),
    ]
    rows = json.loads(render(answers, ["pop", "rock"], "json"))
    assert rows[0]["p_rock"] == 0.75 and rows[0]["error"] == ""
    assert rows[1]["genre"] == "" and rows[1]["error"].startswith("[empty]")
    csv_text = render(answers, ["pop", "rock"], "csv").decode()
    assert csv_text.splitlines()[0] == (
        "path,genre,model,drift,ood,ood_score,error,reason,expected,p_pop,p_rock"
    )


def test_inputs_are_listed_from_folders_and_labels_from_parents(tmp_path: Path) -> None:
    (tmp_path / "jazz").mkdir()
    (tmp_path / "jazz" / "a.wav").write_bytes(b"x")
    (tmp_path / "jazz" / "notes.md").write_text("skip me")
    found = list_inputs([str(tmp_path), str(tmp_path / "missing.wav")])
    assert found == [str(tmp_path / "jazz" / "a.wav"), str(tmp_path / "missing.wav")]
    assert expected_genre(found[0]) == "jazz"


def test_featurize_refuses_bad_audio_with_its_reason() -> None:
    options = PreprocessOptions(window_seconds=6.0, min_seconds=5.0)
    with pytest.raises(AudioError) as caught:
        featurize(b"", options, "clip-7")
    assert caught.value.reason == "empty" and "clip-7" in str(caught.value)
    with pytest.raises(SchemaError, match="expects feature schema"):
        PreprocessOptions.from_parameters({"schema_hash": "0000"})


def test_router_sends_everything_to_the_challenger_while_the_gate_is_open() -> None:
    router = Router(challenger_share=0.1, seed=0)
    assert router.to_challenger(np.ones(50, dtype=bool)).all()
    closed = np.zeros(100, dtype=bool)
    share = np.concatenate([router.to_challenger(closed) for _ in range(50)])
    assert 0.07 < share.mean() < 0.13
    assert not Router(0.0).to_challenger(closed).any()
    mixed = Router(0.0).to_challenger(np.array([False, True, True]))
    assert mixed.tolist() == [False, True, True]  # per row: the gate opened mid-batch
    with pytest.raises(ValueError, match="challenger_share"):
        Router(1.5)


def test_the_canary_takes_its_share_of_all_rows_and_never_everything() -> None:
    assert not Router(0.5).to_canary(100).any()  # no canary share: nothing goes there
    canary = np.concatenate([Router(canary_share=0.3, seed=1).to_canary(100) for _ in range(50)])
    assert 0.25 < canary.mean() < 0.35
    with pytest.raises(ValueError, match="canary_share"):
        Router(canary_share=1.0)  # the champion and its fallback must keep some traffic


def test_the_predictor_records_every_answer(tmp_path: Path, feature_frame) -> None:  # type: ignore[no-untyped-def]
    from genreops.data.feature_table import load_feature_table
    from genreops.training.search_space import load_search_spaces
    from genreops.training.tuning import tune

    feature_frame(per_genre=6).to_parquet(tmp_path / "t.parquet", index=False)
    classifier = tune(
        load_feature_table(str(tmp_path / "t.parquet")), load_search_spaces()["knn"], trials=1
    ).classifier
    url = f"sqlite:///{tmp_path / 'store.db'}"
    writer = MonitoringWriter(url, tmp_path / "spool")
    reference = feature_frame(per_genre=6)[classifier.feature_names].to_numpy(np.float64)
    runtime = PredictorRuntime(
        PublishedModel.of(classifier, "gc/1", {}), "gc/2", Router(), writer=writer,
        repository_version=1,
        novelty=NoveltyMonitor(reference, NoveltySettings(expected_run=2.0, ood_alpha=0.1)),
    )  # fmt: skip
    features = feature_frame(per_genre=2)[classifier.feature_names].to_numpy(np.float32, copy=True)
    features[1:] *= 50  # far from anything in training: flagged, and they open the gate
    decision = runtime.route(features)
    assert decision.ood[1:].all() and (decision.ood_score[1:] > 1).all()
    assert decision.gate_open[-1] and not decision.gate_open[0]
    assert (decision.to_challenger == decision.gate_open).all()
    assert not decision.to_canary.any()  # no canary published
    assert decision.fallback_causes(decision.to_challenger) == {
        "drift": int(decision.gate_open.sum()),
        "share": 0,
    }
    probabilities = runtime.champion.predict_proba(features)
    models = runtime.model_labels(decision.to_challenger, decision.to_canary)
    runtime.observe(
        features, probabilities, models, decision=decision, clip_ids=["c"] * len(features),
        received_ns=np.zeros(len(features), dtype=np.int64), now_ns=5_000_000,
    )  # fmt: skip
    runtime.close()
    rows = MonitoringStore(url).recent_predictions(100)[::-1]
    assert len(rows) == len(features)
    assert [r["ood"] for r in rows] == decision.ood.tolist()
    assert [r["drift_gate_open"] for r in rows] == decision.gate_open.tolist()
    assert rows[-1]["ood_score"] == pytest.approx(float(decision.ood_score[-1]), rel=1e-5)
    assert {r["model_version"] for r in rows} == {"gc/1", "gc/2"}
    assert {r["model_role"] for r in rows if not r["drift_gate_open"]} == {"champion"}
    assert rows[0]["latency_ms"] == pytest.approx(5.0)
    assert set(rows[0]["probabilities"]) == set(classifier.genres)
    names = genre_names(probabilities, np.asarray(classifier.genres, dtype=object))
    assert [n[0].decode() for n in names] == runtime.genres_of(probabilities)


def test_a_real_clip_becomes_a_feature_vector() -> None:
    import io

    import soundfile as sf

    samples = render_clip("rock", 0, seconds=6.0)
    buffer = io.BytesIO()
    sf.write(buffer, samples, 22050, format="WAV")
    vector = featurize(buffer.getvalue(), PreprocessOptions(window_seconds=6.0))
    assert vector.shape == (len(FEATURE_NAMES),) and vector.dtype == np.float32
    assert np.isfinite(vector).all()


def test_the_predictor_handler_answers_per_request_without_triton(
    feature_frame, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from genreops.data.feature_table import load_feature_table
    from genreops.serving.handlers import (
        PREDICTOR_METRICS,
        Metrics,
        PredictorHandler,
        RequestFailure,
    )
    from genreops.training.search_space import load_search_spaces
    from genreops.training.tuning import tune

    feature_frame(per_genre=6).to_parquet(tmp_path / "t.parquet", index=False)
    classifier = tune(
        load_feature_table(str(tmp_path / "t.parquet")), load_search_spaces()["knn"], trials=1
    ).classifier
    calls: list[int] = []

    def fallback(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        raise RuntimeError("fallback is down")

    metrics = Metrics(PREDICTOR_METRICS)  # kept in memory
    handler = PredictorHandler(
        PredictorRuntime(PublishedModel.of(classifier, "gc/1", {}), "gc/2", Router(1.0)),
        metrics, fallback, log_error=lambda message: None,
    )  # fmt: skip
    rows = feature_frame(per_genre=1)[list(FEATURE_NAMES)].to_numpy(np.float32)
    received = np.zeros((2, 1), dtype=np.int64)
    results = handler.execute(
        [
            {"FEATURES": rows[:2], "RECEIVED_NS": received},
            {"FEATURES": rows[:1, :4], "RECEIVED_NS": received[:1]},
            {"FEATURES": rows[2:4], "RECEIVED_NS": received, "CLIP_ID": None},
        ]
    )
    assert isinstance(results[1], RequestFailure) and results[1].invalid_input
    for answer in (results[0], results[2]):
        assert not isinstance(answer, RequestFailure)
        assert answer["PROBABILITIES"].shape == (2, len(classifier.genres))
        assert [m[0] for m in answer["MODEL"]] == [b"gc/1", b"gc/1"]  # the champion stood in
    assert calls == [4]  # one fallback call for the batch's valid rows
    assert metrics.series("fallback_errors").value == 4
    answers = metrics.families["predictions"].series.values()
    assert sum(s.value for s in answers) == 4


def test_several_replicas_are_one_comma_separated_list() -> None:
    """`--url`, GENREOPS_TRITON_URL and GENREOPS_TRITON_CONTROL_URL name several replicas
    the same way; a scheme is dropped for gRPC and added for HTTP, per replica."""
    from genreops.app.cli.common import host_port, http_url
    from genreops.serving.client import ClientError, EnsembleClient, endpoints
    from genreops.serving.publish import replica_urls

    assert endpoints("10.0.0.1:8001, 10.0.0.2:8001,10.0.0.1:8001") == [
        "10.0.0.1:8001",
        "10.0.0.2:8001",
    ]
    assert endpoints(["a:1,b:2", "c:3"]) == ["a:1", "b:2", "c:3"]
    with pytest.raises(ClientError, match="no Triton address"):
        endpoints(" , ")
    client = EnsembleClient("a:1,b:2")
    assert client.urls == ["a:1", "b:2"] and client.url == "a:1,b:2"
    assert host_port("grpc://a:1/, b:2") == "a:1,b:2"
    assert http_url("a:8000,https://b:8000") == "http://a:8000,https://b:8000"
    assert replica_urls("http://a:8000, http://b:8000,") == ["http://a:8000", "http://b:8000"]
