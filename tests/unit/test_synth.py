"""Synthetic corpus: clips are a pure function of their arguments, every genre renders usable
audio, corpora land in the GTZAN layout with an honest manifest, and drift really changes the
recording while keeping the clip's length."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreops.data.genres import GENRES
from genreops.data.synth import (
    GENERATOR_VERSION,
    MANIFEST_NAME,
    SAMPLE_RATE,
    clip_seed,
    render_clip,
    render_corpus,
)

pytestmark = pytest.mark.unit

SECONDS = 6.0


def octave_profile_db(y: np.ndarray) -> np.ndarray:
    """Share of the clip's energy in each octave band from 62.5 Hz up, in dB."""
    power = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SAMPLE_RATE)
    edges = [62.5 * 2**k for k in range(8)] + [SAMPLE_RATE / 2]
    bands = np.array(
        [power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in itertools.pairwise(edges)]
    )
    return 10 * np.log10(bands / bands.sum())


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


@pytest.mark.parametrize("genre", GENRES)
def test_every_genre_renders_finite_nonsilent_float32_of_the_requested_length(genre: str) -> None:
    y = render_clip(genre, seed=3, seconds=SECONDS)
    assert y.dtype == np.float32
    assert y.shape == (round(SECONDS * SAMPLE_RATE),)
    assert np.isfinite(y).all()
    assert np.abs(y).max() <= 1.0
    assert rms(y) > 0.02, "a clip must be clearly audible"


def test_same_arguments_give_bit_identical_audio() -> None:
    a = render_clip("jazz", seed=11, seconds=SECONDS)
    b = render_clip("jazz", seed=11, seconds=SECONDS)
    assert np.array_equal(a, b)
    d1 = render_clip("jazz", seed=11, seconds=SECONDS, drift=True)
    d2 = render_clip("jazz", seed=11, seconds=SECONDS, drift=True)
    assert np.array_equal(d1, d2)


def test_seed_and_genre_change_the_audio() -> None:
    base = render_clip("rock", seed=1, seconds=SECONDS)
    assert not np.allclose(base, render_clip("rock", seed=2, seconds=SECONDS))
    assert not np.allclose(base, render_clip("metal", seed=1, seconds=SECONDS))


def test_fractional_lengths_are_rounded_to_whole_samples() -> None:
    assert render_clip("pop", seed=0, seconds=2.5).shape == (55125,)


@pytest.mark.parametrize("genre", ["classical", "disco", "metal", "reggae"])
def test_drift_changes_the_recording_but_not_the_length(genre: str) -> None:
    clean = render_clip(genre, seed=5, seconds=SECONDS)
    drifted = render_clip(genre, seed=5, seconds=SECONDS, drift=True)
    assert drifted.shape == clean.shape
    assert drifted.dtype == np.float32
    assert np.isfinite(drifted).all() and np.abs(drifted).max() <= 1.0
    assert rms(drifted) > 0.005
    # A different microphone, room and playback: the spectral balance moves, by several dB in
    # at least one octave band.
    assert np.max(np.abs(octave_profile_db(drifted) - octave_profile_db(clean))) > 3.0
    assert not np.allclose(clean, drifted)


def test_unknown_genre_is_a_value_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="polka"):
        render_clip("polka", seed=0, seconds=SECONDS)
    with pytest.raises(ValueError, match="polka"):
        render_corpus(tmp_path / "c", 1, seconds=2.0, genres=["blues", "polka"])
    assert not (tmp_path / "c").exists(), "nothing is written for an invalid request"


@pytest.mark.parametrize("bad", [{"seconds": 0.0}, {"seed": -1}])
def test_invalid_parameters_are_rejected(bad: dict[str, float]) -> None:
    args = {"seconds": 2.0, "seed": 0} | bad
    with pytest.raises(ValueError):
        render_clip("blues", seed=int(args["seed"]), seconds=args["seconds"])


def test_corpus_has_gtzan_layout_16bit_mono_files_and_a_matching_manifest(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    calls: list[int] = []
    manifest_path = render_corpus(out, per_genre=2, seconds=2.0, seed=4, progress=calls.append)

    assert manifest_path == out / MANIFEST_NAME
    assert sum(calls) == 2 * len(GENRES)
    wavs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    expected = sorted(f"{g}/{g}.{i:05d}.wav" for g in GENRES for i in range(2))
    assert wavs == expected

    manifest = json.loads(manifest_path.read_text())
    assert manifest["generator_version"] == GENERATOR_VERSION
    assert (manifest["seed"], manifest["seconds"], manifest["drift"]) == (4, 2.0, False)
    assert manifest["counts"] == {g: 2 for g in GENRES}
    assert sorted(f["path"] for f in manifest["files"]) == expected
    for entry in manifest["files"]:
        path = out / entry["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (
            SAMPLE_RATE,
            1,
            "PCM_16",
            2 * SAMPLE_RATE,
        )

    # The manifest's clip seed regenerates the file's audio (up to 16-bit quantisation).
    entry = manifest["files"][0]
    assert entry["clip_seed"] == clip_seed(4, entry["index"])
    stored, _ = sf.read(out / entry["path"], dtype="float32")
    again = render_clip(entry["genre"], entry["clip_seed"], 2.0)
    assert np.max(np.abs(stored - again)) <= 1.0 / 32768 + 1e-6


def test_corpus_is_identical_whatever_the_worker_count(tmp_path: Path) -> None:
    genres = ["hiphop", "country"]
    serial = json.loads(render_corpus(tmp_path / "a", 2, 2.0, seed=9, genres=genres).read_text())
    pooled = render_corpus(tmp_path / "b", 2, 2.0, seed=9, genres=genres, workers=2)
    parallel = json.loads(pooled.read_text())
    assert serial["files"] == parallel["files"]
    assert serial["counts"] == {"hiphop": 2, "country": 2}


def test_drift_corpus_differs_from_the_clean_one_with_the_same_seed(tmp_path: Path) -> None:
    clean = json.loads(render_corpus(tmp_path / "c", 1, 2.0, genres=["rock"]).read_text())
    drift = json.loads(
        render_corpus(tmp_path / "d", 1, 2.0, genres=["rock"], drift=True).read_text()
    )
    assert drift["drift"] is True
    assert clean["files"][0]["path"] == drift["files"][0]["path"]
    assert clean["files"][0]["sha256"] != drift["files"][0]["sha256"]


def test_an_intact_corpus_is_reused_and_a_damaged_one_rerendered(tmp_path: Path) -> None:
    out = tmp_path / "c"
    render_corpus(out, 1, 2.0, genres=["blues"])
    wav = out / "blues" / "blues.00000.wav"
    original = wav.read_bytes()
    stamp = wav.stat().st_mtime_ns

    calls: list[int] = []
    render_corpus(out, 1, 2.0, genres=["blues"], progress=calls.append)
    assert wav.stat().st_mtime_ns == stamp, "an up-to-date corpus is not rewritten"
    assert sum(calls) == 1, "progress still reaches the total"

    wav.write_bytes(original[:1000])
    render_corpus(out, 1, 2.0, genres=["blues"])
    assert wav.read_bytes() == original

    render_corpus(out, 1, 3.0, genres=["blues"])  # other parameters: rendered again
    assert sf.info(wav).frames == 3 * SAMPLE_RATE


def test_a_smaller_rerender_removes_its_own_stale_clips_but_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "c"
    render_corpus(out, 2, 2.0, genres=["disco"])
    mine = out / "disco" / "notes.txt"
    mine.write_text("keep me")
    manifest = json.loads(render_corpus(out, 1, 2.0, genres=["disco"]).read_text())
    assert [f["path"] for f in manifest["files"]] == ["disco/disco.00000.wav"]
    assert sorted(p.name for p in (out / "disco").iterdir()) == ["disco.00000.wav", "notes.txt"]
