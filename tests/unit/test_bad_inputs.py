"""The bad-input corpus and the first door it goes through: ``load_audio`` and ``featurize``.

Every bad file must end in an AudioError with a reason that is right for it and a message
naming the clip; nothing else may escape, memory must stay flat, and the size and length
limits must refuse a file before any sample is decoded.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from tests.badinputs import (
    HOSTILE_CLIP_IDS,
    KINDS,
    BadItem,
    GoodItem,
    generate_bad_corpus,
    good_items,
)

import genreops.data.audio as audio
import genreops.serving.preprocess as serving
from genreops.core.errors import AudioError, printable
from genreops.data.audio import load_audio
from genreops.serving.preprocess import PreprocessOptions, featurize
from helpers import RELIABILITY_FULL, record_reliability

pytestmark = [pytest.mark.unit, pytest.mark.reliability]

SIZE = "full" if RELIABILITY_FULL else "fast"
OPTIONS = PreprocessOptions(window_seconds=10.0)  # the serving window of the test repository
MEMORY_PASSES = 3 if RELIABILITY_FULL else 1
MEMORY_GROWTH_MB = 50.0


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory now (not the peak), from /proc."""
    with open(f"/proc/{pid}/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def digest(items: list[BadItem]) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(os.fsencode(item.path.name))
        h.update(item.clip_id_bytes)
        with item.path.open("rb") as fh:
            h.update(fh.read(1 << 20))
    return h.hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[BadItem], list[GoodItem]]:
    folder = tmp_path_factory.mktemp("bad-corpus")
    return generate_bad_corpus(folder, size=SIZE), good_items(folder, 8)


# --- the corpus -------------------------------------------------------------------------------


def test_corpus_covers_every_kind_with_honest_reasons(
    corpus: tuple[list[BadItem], list[GoodItem]],
) -> None:
    bad, good = corpus
    kinds = Counter(item.kind for item in bad)
    assert set(kinds) == set(KINDS)
    assert len(bad) >= (200 if RELIABILITY_FULL else 30)
    for item in bad:
        assert item.reasons and item.reasons <= set(AudioError.REASONS), item
        assert item.path.is_file()
        assert item.path.parent.name == "bad"
    assert len({item.path for item in bad}) == len(bad)
    # hostile ids travel with the items, byte for byte
    sent = {item.clip_id_bytes for item in bad if item.kind == "hostile_clip_id"}
    assert sent <= set(HOSTILE_CLIP_IDS)
    assert b"../../etc/passwd" in sent and any(b"\x00" in i for i in sent)
    assert any(not _is_utf8(i) for i in sent)
    # the 2 h clips are small files: only their headers are long
    long_clips = [item for item in bad if item.kind == "long_clip"]
    assert all(os.stat(i.path).st_blocks * 512 < 2_000_000 for i in long_clips)
    assert {g.kind for g in good} >= {"wav", "flac", "ogg", "mp3", "mp3_named_wav"}


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_corpus_is_deterministic(tmp_path: Path) -> None:
    # random bytes, and the encoders that stamp files (ogg serials, float wav PEAK chunks)
    kinds = ["random_bytes", "truncated", "nan_samples", "hostile_clip_id"]
    first = generate_bad_corpus(tmp_path / "a", seed=3, kinds=kinds)
    again = generate_bad_corpus(tmp_path / "b", seed=3, kinds=kinds)
    other = generate_bad_corpus(tmp_path / "c", seed=4, kinds=kinds)
    assert [(i.kind, i.clip_id, i.reasons) for i in first] == [
        (i.kind, i.clip_id, i.reasons) for i in again
    ]
    assert digest(first) == digest(again)
    assert digest(first) != digest(other)


def test_unknown_size_or_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        generate_bad_corpus(tmp_path, size="huge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown kinds"):
        generate_bad_corpus(tmp_path, kinds=["long_clip", "nonsense"])


# --- door: load_audio and featurize ---------------------------------------------------------


def _outcome(item: BadItem, call: Any) -> str:
    """ "ok" (right reason, clip named), "wrong_reason" (also: decoded) or "crash"."""
    try:
        call()
    except AudioError as error:
        named = str(error).startswith(f"{printable(item.clip_id)}: ")
        return "ok" if error.reason in item.reasons and named else "wrong_reason"
    except Exception:
        return "crash"
    return "wrong_reason"


def _through_every_entry(item: BadItem) -> dict[str, str]:
    data = item.path.read_bytes() if item.path.stat().st_size < 10_000_000 else None
    outcomes = {
        "path": _outcome(item, lambda: load_audio(item.path, name=item.clip_id)),
        "featurize": _outcome(
            item,
            lambda: featurize(data if data is not None else b"", OPTIONS, item.clip_id),
        ),
    }
    if data is None:  # the sparse 2 h wav: its bytes in memory would only test memory
        outcomes.pop("featurize")
    return outcomes


def test_load_audio_door_rejects_every_bad_file_with_its_reason(
    corpus: tuple[list[BadItem], list[GoodItem]],
) -> None:
    bad, good = corpus
    failures: dict[str, list[str]] = {"wrong_reason": [], "crash": []}
    for item in bad:  # warm-up: first decodes load codecs and caches
        _through_every_entry(item)
    start = rss_mb()
    for _ in range(MEMORY_PASSES):
        results = {item: _through_every_entry(item) for item in bad}
    end = rss_mb()
    for item, outcomes in results.items():
        worst = "crash" if "crash" in outcomes.values() else None
        worst = worst or ("wrong_reason" if "wrong_reason" in outcomes.values() else None)
        if worst:
            failures[worst].append(f"{item.kind} {item.path.name!r}: {outcomes}")
    answered = 0
    for g in good:
        samples = load_audio(g.path, duration=OPTIONS.window_seconds, name=g.clip_id)
        vector = featurize(g.path.read_bytes(), OPTIONS, g.clip_id)
        answered += bool(samples.size and np.isfinite(vector).all())
    record_reliability(
        "bad_inputs",
        "load_audio",
        {
            "tried": len(bad),
            "rejected_correctly": len(bad) - sum(len(v) for v in failures.values()),
            "wrong_reason": len(failures["wrong_reason"]),
            "crashes": len(failures["crash"]),
            "good_total": len(good),
            "good_answered": answered,
            "memory_start_mb": round(start, 1),
            "memory_end_mb": round(end, 1),
            "server_ready_after": None,
            "kinds": dict(sorted(Counter(i.kind for i in bad).items())),
        },
    )
    assert not failures["crash"], failures["crash"]
    assert not failures["wrong_reason"], failures["wrong_reason"]
    assert answered == len(good)
    assert end - start < MEMORY_GROWTH_MB, f"RSS grew from {start:.0f} MB to {end:.0f} MB"


def test_hostile_clip_ids_are_only_named_never_used(tmp_path: Path) -> None:
    """An id is a label in the message: it never becomes a path that is opened or written."""
    data = b"not audio at all, but a few bytes"
    before = set(tmp_path.iterdir())
    for raw in HOSTILE_CLIP_IDS:
        name = raw.decode("utf-8", "surrogateescape")
        with pytest.raises(AudioError) as info:
            featurize(data, OPTIONS, name)
        assert info.value.reason == "not_audio"
        assert str(info.value).startswith(f"{printable(name) or '<bytes>'}: ")
        assert str(info.value).isprintable()  # one line, encodable: no NUL, newline, surrogate
        assert info.value.clip == (name or "<bytes>")  # the id itself is kept as it came
    assert set(tmp_path.iterdir()) == before


# --- limits are enforced before decoding ------------------------------------------------------


class Spy:
    """Counts calls of the functions that read samples; passes every call through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[str] = Counter()
        self.commands: list[str] = []
        read, run, finish = sf.SoundFile.read, audio._run, audio._finish
        features = serving.extract_features

        def spy_read(handle: sf.SoundFile, *args: Any, **kwargs: Any) -> Any:
            self.calls["soundfile.read"] += 1
            return read(handle, *args, **kwargs)

        def spy_run(clip: str, cmd: list[str]) -> Any:
            self.commands.append(Path(cmd[0]).name)
            return run(clip, cmd)

        def spy_finish(*args: Any) -> Any:
            self.calls["finish"] += 1
            return finish(*args)

        def spy_features(*args: Any, **kwargs: Any) -> Any:
            self.calls["features"] += 1
            return features(*args, **kwargs)

        monkeypatch.setattr(sf.SoundFile, "read", spy_read)
        monkeypatch.setattr(audio, "_run", spy_run)
        monkeypatch.setattr(audio, "_finish", spy_finish)
        monkeypatch.setattr(serving, "extract_features", spy_features)

    @property
    def decoded(self) -> bool:
        """Any sample read: soundfile's read, an ffmpeg decode (ffprobe only reads headers)."""
        return bool(
            self.calls["soundfile.read"] or self.calls["finish"] or "ffmpeg" in self.commands
        )


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    yield Spy(monkeypatch)


def test_spy_sees_a_decode(spy: Spy, corpus: tuple[list[BadItem], list[GoodItem]]) -> None:
    """The spy is worth trusting: a good clip and a good mp4 are seen decoding."""
    _, good = corpus
    load_audio(good[0].path)
    assert spy.calls["soundfile.read"] >= 1 and spy.calls["finish"] == 1
    mp4 = [g for g in good if g.kind == "mp4"]
    if mp4:
        load_audio(mp4[0].path)
        assert "ffmpeg" in spy.commands


def test_oversized_request_is_refused_before_it_is_read(spy: Spy, tmp_path: Path) -> None:
    limit = 1_000_000
    big = tmp_path / "big.wav"
    with big.open("wb") as fh:  # a real wav header, then 2 MB (sparse: no disk used)
        sf.write(fh, np.zeros(10, dtype=np.float32), 22050, format="WAV")
        fh.truncate(2 * limit)
    options = PreprocessOptions(window_seconds=10.0, max_file_bytes=limit)
    errors = []
    for call in (
        lambda: load_audio(big, max_bytes=limit, name="big.wav"),
        lambda: load_audio(b"RIFF" + bytes(2 * limit), max_bytes=limit, name="big.wav"),
        lambda: featurize(b"\xff\xfb" + bytes(2 * limit), options, "big.wav"),
    ):
        with pytest.raises(AudioError) as info:
            call()
        errors.append(info.value)
    assert [e.reason for e in errors] == ["too_large"] * 3
    assert all(str(e).startswith("big.wav: file too large") for e in errors)
    assert not spy.decoded and not spy.commands and not spy.calls["features"]


def test_two_hour_clips_are_refused_before_decoding(
    spy: Spy, corpus: tuple[list[BadItem], list[GoodItem]]
) -> None:
    bad, _ = corpus
    long_clips = [i for i in bad if i.kind == "long_clip"]
    if not RELIABILITY_FULL:  # fast mode has a few: this test wants every format
        folder = long_clips[0].path.parent.parent / "long"
        long_clips = generate_bad_corpus(folder, size="full", kinds=["long_clip"])
    assert len(long_clips) >= 5
    for item in long_clips:
        with pytest.raises(AudioError) as info:
            load_audio(item.path, name=item.clip_id)
        assert info.value.reason == "too_long", (item, info.value)
        assert "7200" in str(info.value) or "7199" in str(info.value), info.value
        if item.path.stat().st_size < 10_000_000:
            with pytest.raises(AudioError) as info:
                featurize(item.path.read_bytes(), OPTIONS, item.clip_id)
            assert info.value.reason == "too_long"
    assert not spy.decoded, (spy.calls, spy.commands)
    assert not spy.calls["features"]


def test_out_of_range_sample_rates_are_refused_before_decoding(
    spy: Spy, corpus: tuple[list[BadItem], list[GoodItem]]
) -> None:
    """Whole files at 1 Hz, 2 kHz, 400 kHz (issue 14: a 40-sample wav at 1 Hz got a genre):
    refused from the header, as bad_sample_rate, through both entries; nothing decoded."""
    bad, _ = corpus
    odd = [i for i in bad if i.kind == "out_of_range_rate"]
    if not RELIABILITY_FULL:  # fast mode has three: this test wants every recipe
        folder = odd[0].path.parent.parent / "rates"
        odd = generate_bad_corpus(folder, size="full", kinds=["out_of_range_rate"])
    assert len(odd) >= 7
    assert any(i.detail.startswith("wav of 40 samples at 1 Hz") for i in odd)
    for item in odd:
        errors = []
        with pytest.raises(AudioError) as info:
            load_audio(item.path, name=item.clip_id)
        errors.append(info.value)
        with pytest.raises(AudioError) as info:
            featurize(item.path.read_bytes(), OPTIONS, item.clip_id)
        errors.append(info.value)
        for error in errors:
            assert error.reason == "bad_sample_rate", (item, error)
            assert str(error).startswith(f"{printable(item.clip_id)}: ")
    assert not spy.decoded, (spy.calls, spy.commands)
    assert not spy.calls["features"]
