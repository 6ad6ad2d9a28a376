"""load_audio: every supported format decodes to the same mono 22,050 Hz signal; bad clips fail
with their own reason and a message naming the clip."""

from __future__ import annotations

import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import genreops.data.audio as audio
from genreops.core.errors import AudioError
from genreops.data.audio import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    SAMPLE_RATE,
    SUPPORTED_EXTENSIONS,
    load_audio,
)

pytestmark = pytest.mark.unit

HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg/ffprobe not installed")

SECONDS = 6.0
# Left channel 0.5, right 0.25: a mean downmix has amplitude 0.375 (RMS 0.265); summing or
# taking one channel would not.
LEFT, RIGHT = 0.5, 0.25
MONO_RMS = (LEFT + RIGHT) / 2 / np.sqrt(2)


def tone(rate: int, seconds: float = SECONDS, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    s = np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return ((LEFT + RIGHT) / 2 * s).astype(np.float32)
    return np.stack([LEFT * s, RIGHT * s], axis=1).astype(np.float32)


def dominant_freq(y: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / rate)[np.argmax(spec)])


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(src), *args, str(dst)], check=True
    )
    return dst


def write(path: Path, data: np.ndarray, rate: int, **kw: object) -> Path:
    sf.write(path, data, rate, **kw)
    return path


def make_clip(tmp_path: Path, ext: str, rate: int, channels: int, seconds: float = SECONDS) -> Path:
    """A 440 Hz tone in the given container; mp4/m4a are made with ffmpeg from a wav."""
    data = tone(rate, seconds, channels=channels)
    stem = f"tone_{rate}_{channels}ch"
    if ext in (".mp4", ".m4a"):
        wav = write(tmp_path / f"{stem}_src.wav", data, rate)
        return ffmpeg(wav, tmp_path / f"{stem}{ext}", "-c:a", "aac", "-b:a", "160k")
    return write(tmp_path / f"{stem}{ext}", data, rate)


def reason_of(source: object, **kw: object) -> AudioError:
    with pytest.raises(AudioError) as info:
        load_audio(source, **kw)  # type: ignore[arg-type]
    return info.value


FORMATS = [
    # ext, rate, channels, lossless
    (".wav", 8000, 1, True),
    (".wav", 44100, 2, True),
    (".wav", 48000, 1, True),
    (".flac", 44100, 2, True),
    (".flac", 48000, 1, True),
    (".ogg", 48000, 2, False),
    (".ogg", 22050, 1, False),
    (".mp3", 44100, 2, False),
    (".mp3", 8000, 1, False),
    pytest.param(".mp4", 44100, 2, False, marks=needs_ffmpeg),
    pytest.param(".m4a", 48000, 1, False, marks=needs_ffmpeg),
]


@pytest.mark.parametrize(("ext", "rate", "channels", "lossless"), FORMATS)
def test_every_format_decodes_to_mono_22050(
    tmp_path: Path, ext: str, rate: int, channels: int, lossless: bool
) -> None:
    path = make_clip(tmp_path, ext, rate, channels)
    y = load_audio(path)
    assert y.dtype == np.float32
    assert y.ndim == 1
    expected = round(SECONDS * SAMPLE_RATE)
    if lossless:
        assert len(y) == expected
    else:  # codec priming/padding may add a frame or two
        assert abs(len(y) - expected) < 0.06 * SAMPLE_RATE
    assert abs(dominant_freq(y) - 440.0) < 3.0
    assert rms(y) == pytest.approx(MONO_RMS, rel=0.08 if not lossless else 0.01)


@pytest.mark.parametrize(
    ("ext", "rate", "channels"),
    [
        (".wav", 44100, 2),
        (".flac", 48000, 1),
        (".ogg", 44100, 2),
        (".mp3", 44100, 2),
        pytest.param(".m4a", 44100, 2, marks=needs_ffmpeg),
    ],
)
def test_bytes_and_path_give_the_same_samples(
    tmp_path: Path, ext: str, rate: int, channels: int
) -> None:
    path = make_clip(tmp_path, ext, rate, channels)
    from_path = load_audio(path)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), from_path)
    np.testing.assert_array_equal(load_audio(str(path)), from_path)
    np.testing.assert_array_equal(load_audio(path.as_uri()), from_path)


def test_container_is_told_by_content_not_extension(tmp_path: Path) -> None:
    wav = write(tmp_path / "clip.wav", tone(44100, channels=2), 44100)
    disguised = tmp_path / "clip.mp3"
    disguised.write_bytes(wav.read_bytes())
    np.testing.assert_array_equal(load_audio(disguised), load_audio(wav))


def test_lossless_decode_matches_the_signal(tmp_path: Path) -> None:
    """At the target rate nothing is resampled: the samples come back as written."""
    data = tone(SAMPLE_RATE, channels=1)
    y = load_audio(write(tmp_path / "a.flac", data, SAMPLE_RATE, subtype="PCM_24"))
    np.testing.assert_allclose(y, data, atol=1e-6)


# --------------------------------------------------------------------------- the window


def two_tones(rate: int) -> np.ndarray:
    """440 Hz for the first 4 s, then 880 Hz for 6 s: tells which part of the clip came back."""
    first = tone(rate, 4.0, 440.0)
    second = tone(rate, 6.0, 880.0)
    return np.concatenate([first, second])


@pytest.mark.parametrize(
    "ext", [".wav", ".flac", ".ogg", ".mp3", pytest.param(".m4a", marks=needs_ffmpeg)]
)
def test_offset_and_duration_select_the_window(tmp_path: Path, ext: str) -> None:
    wav = write(tmp_path / "two.wav", two_tones(44100), 44100)
    path = wav if ext == ".wav" else tmp_path / f"two{ext}"
    if ext == ".m4a":
        ffmpeg(wav, path, "-c:a", "aac")
    elif ext != ".wav":
        write(path, two_tones(44100), 44100)
    head = load_audio(path, offset=0.0, duration=3.0, min_seconds=1.0)
    tail = load_audio(path, offset=5.0, duration=3.0, min_seconds=1.0)
    assert len(head) == len(tail) == 3 * SAMPLE_RATE
    assert abs(dominant_freq(head) - 440.0) < 3.0
    assert abs(dominant_freq(tail) - 880.0) < 3.0


def test_window_longer_than_clip_returns_the_clip_unpadded(tmp_path: Path) -> None:
    path = write(tmp_path / "a.wav", tone(44100), 44100)
    assert len(load_audio(path)) == round(SECONDS * SAMPLE_RATE)  # default window is 30 s
    rest = load_audio(path, offset=1.0, duration=None, min_seconds=1.0)
    assert len(rest) == round((SECONDS - 1.0) * SAMPLE_RATE)


def test_samples_after_offset_must_reach_min_seconds(tmp_path: Path) -> None:
    path = write(tmp_path / "a.wav", tone(44100), 44100)
    err = reason_of(path, offset=3.0)
    assert err.reason == "too_short"
    assert str(path) in str(err)
    assert "3.00 s" in str(err)
    assert reason_of(path, offset=60.0).reason == "too_short"
    # A window shorter than min_seconds asks only for the window.
    assert len(load_audio(path, duration=2.0)) == 2 * SAMPLE_RATE


def test_invalid_arguments_are_value_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "a.wav", tone(44100), 44100)
    with pytest.raises(ValueError):
        load_audio(path, offset=-1.0)
    with pytest.raises(ValueError):
        load_audio(path, duration=0.0)


# --------------------------------------------------------------------------- bad input


def test_random_bytes_text_and_images_are_not_audio(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    err = reason_of(noise, name="noise.bin")
    assert (err.reason, err.clip) == ("not_audio", "noise.bin")
    assert str(err).startswith("noise.bin: ")
    text = tmp_path / "notes.wav"
    text.write_text("these are not the samples you are looking for\n" * 200)
    err = reason_of(text)
    assert err.reason == "not_audio"
    assert str(text) in str(err)
    png = b"\x89PNG\r\n\x1a\n" + bytes(5000)
    assert reason_of(png).reason == "not_audio"
    assert "<bytes>" in str(reason_of(png))


def test_mpeg_sync_word_followed_by_junk_is_not_audio() -> None:
    junk = b"\xff\xfb" + np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert reason_of(junk, name="x.mp3").reason in {"not_audio", "corrupt"}


def test_zero_bytes_and_zero_frames_are_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    err = reason_of(empty)
    assert err.reason == "empty"
    assert str(empty) in str(err)
    assert reason_of(b"").reason == "empty"
    header_only = write(tmp_path / "header_only.wav", np.zeros(0, dtype=np.float32), 44100)
    assert reason_of(header_only).reason == "empty"


def test_truncated_wav_is_corrupt_even_when_the_window_is_intact(tmp_path: Path) -> None:
    data = write(tmp_path / "blues.00042.wav", tone(22050, 30.0), 22050).read_bytes()
    cut = tmp_path / "blues.00042.wav"
    cut.write_bytes(data[: len(data) // 10])
    err = reason_of(cut, name="blues.00042.wav")
    assert err.reason == "corrupt"
    assert str(err) == "blues.00042.wav: truncated wav (header says 30.0 s, file holds 3.0 s)"
    assert reason_of(cut, duration=1.0, min_seconds=0.5).reason == "corrupt"


@pytest.mark.parametrize("ext", [".flac", ".ogg", ".mp3"])
def test_truncated_compressed_file_is_corrupt(tmp_path: Path, ext: str) -> None:
    data = write(tmp_path / f"full{ext}", tone(44100, 12.0, channels=2), 44100).read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    if ext == ".ogg":
        # Ogg states no total length up front; a cut file is just a shorter, valid stream.
        assert len(load_audio(cut, min_seconds=1.0)) < 9 * SAMPLE_RATE
        return
    err = reason_of(cut)
    assert err.reason == "corrupt"
    assert "truncated" in str(err) or "damaged" in str(err)
    # The window sits in the intact first half; the header's length is still checked.
    assert reason_of(cut, duration=2.0, min_seconds=1.0).reason == "corrupt"


@pytest.mark.parametrize("ext", [".flac", ".mp3"])
def test_damaged_stream_is_corrupt(tmp_path: Path, ext: str) -> None:
    data = bytearray(write(tmp_path / f"a{ext}", tone(44100, 8.0, channels=2), 44100).read_bytes())
    rng = np.random.default_rng(2)
    mid = len(data) // 3
    data[mid : mid + len(data) // 8] = rng.integers(
        0, 256, len(data) // 8, dtype=np.uint8
    ).tobytes()
    err = reason_of(bytes(data), name=f"damaged{ext}")
    assert err.reason == "corrupt"
    assert str(err).startswith(f"damaged{ext}: ")


def test_bit_flipped_flac_is_corrupt(tmp_path: Path) -> None:
    data = bytearray(write(tmp_path / "a.flac", tone(44100, 8.0), 44100).read_bytes())
    for i in np.random.default_rng(3).integers(1000, len(data), 50):
        data[i] ^= 0xFF
    assert reason_of(bytes(data), name="flipped.flac").reason == "corrupt"


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg", ".mp3"])
def test_damage_never_escapes_as_another_exception(tmp_path: Path, ext: str) -> None:
    """Whatever the damage, the caller sees samples or an AudioError, nothing else."""
    good = write(tmp_path / f"a{ext}", tone(44100, 6.0, channels=2), 44100).read_bytes()
    rng = np.random.default_rng(4)
    variants = [good[: int(len(good) * f)] for f in (0.01, 0.3, 0.9)]
    for _ in range(4):
        flipped = bytearray(good)
        for i in rng.integers(0, len(good), 40):
            flipped[i] = int(rng.integers(0, 256))
        variants.append(bytes(flipped))
    for variant in variants:
        try:
            y = load_audio(variant, name="v", min_seconds=0.5)
        except AudioError as err:
            assert err.reason in AudioError.REASONS
            assert str(err).startswith("v: ")
        else:
            assert y.dtype == np.float32
            assert np.isfinite(y).all()


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any sample read, resampling or ffmpeg decode fails the test (ffprobe only reads headers)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("samples were decoded")

    run = audio._run

    def probe_only(clip: str, cmd: list[str]) -> subprocess.CompletedProcess[bytes]:
        assert Path(cmd[0]).name == "ffprobe", "ffmpeg decoded the samples"
        return run(clip, cmd)

    monkeypatch.setattr(sf.SoundFile, "read", refuse)
    monkeypatch.setattr(audio, "_finish", refuse)
    monkeypatch.setattr(audio, "_run", probe_only)


@pytest.mark.parametrize(
    ("ext", "rate"),
    [
        *((ext, rate) for ext in (".wav", ".flac") for rate in (1, 2_000, 3_999, 400_000)),
        (".wav", MAX_SAMPLE_RATE + 1),  # libsndfile writes no flac at this rate
    ],
)
def test_sample_rate_outside_the_range_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str, rate: int
) -> None:
    # 40 samples at 1 Hz are 40 s of "audio": long enough, and it used to get a genre
    frames = 40 if rate == 1 else round(6 * rate)
    path = write(tmp_path / f"odd{ext}", tone(rate, frames / rate, freq=0.2 * rate), rate)
    _no_decoding(monkeypatch)
    for source in (path, path.read_bytes()):
        err = reason_of(source, name="odd-clip")
        assert err.reason == "bad_sample_rate", err
        assert str(err).startswith("odd-clip: ") and f"{rate:,} Hz" in str(err)


@needs_ffmpeg
def test_sample_rate_outside_the_range_is_refused_through_ffmpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALAC in m4a keeps any rate; ffprobe reads it and nothing is decoded."""
    wav = write(tmp_path / "src.wav", tone(2_000, 8.0, freq=300.0), 2_000)
    m4a = ffmpeg(wav, tmp_path / "odd.m4a", "-c:a", "alac")
    _no_decoding(monkeypatch)
    err = reason_of(m4a)
    assert err.reason == "bad_sample_rate" and str(m4a) in str(err), err
    assert "2,000 Hz" in str(err)


@pytest.mark.parametrize("rate", [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE])
def test_sample_rates_at_the_limits_are_accepted(tmp_path: Path, rate: int) -> None:
    path = write(tmp_path / "edge.wav", tone(rate, 6.0, freq=1000.0), rate)
    y = load_audio(path)
    assert len(y) == pytest.approx(6.0 * SAMPLE_RATE, abs=2)
    assert dominant_freq(y) == pytest.approx(1000.0, abs=2.0)


@pytest.mark.parametrize(("frames", "hidden"), [(2_000, "too_long"), (2, "too_short")])
def test_the_rate_is_checked_before_the_length_it_implies(
    tmp_path: Path, frames: int, hidden: str
) -> None:
    """At 1 Hz 2,000 frames claim 2,000 s (over max_seconds) and 2 frames 2 s (under
    min_seconds); both lengths follow from the rate, so the rate is the reason."""
    path = write(tmp_path / f"{hidden}.wav", tone(1, frames, freq=0.2), 1)
    assert reason_of(path, max_seconds=900.0).reason == "bad_sample_rate"
    # the header check of a wav whose data chunk overruns the file sees the rate first too
    data = bytearray(path.read_bytes())
    data_at = data.index(b"data")
    data[data_at + 4 : data_at + 8] = (10_000_000).to_bytes(4, "little")
    assert reason_of(bytes(data)).reason == "bad_sample_rate"


def test_silence_is_silent(tmp_path: Path) -> None:
    path = write(tmp_path / "quiet.wav", np.zeros(44100 * 6, dtype=np.float32), 44100)
    err = reason_of(path)
    assert err.reason == "silent"
    assert str(path) in str(err)
    hiss = (1e-6 * np.random.default_rng(5).standard_normal(44100 * 6)).astype(np.float32)
    assert reason_of(write(tmp_path / "hiss.wav", hiss, 44100, subtype="FLOAT")).reason == "silent"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples_are_corrupt(tmp_path: Path, bad: float) -> None:
    data = tone(44100)
    data[1000:1010] = bad
    path = write(tmp_path / "nan.wav", data, 44100, subtype="FLOAT")
    err = reason_of(path)
    assert err.reason == "corrupt"
    assert "NaN" in str(err)


def test_half_second_clip_is_too_short(tmp_path: Path) -> None:
    path = write(tmp_path / "blip.wav", tone(44100, 0.5), 44100)
    err = reason_of(path)
    assert err.reason == "too_short"
    assert str(path) in str(err)
    assert "0.50 s" in str(err)


@pytest.mark.parametrize("ext", [".wav", ".flac", ".mp3", pytest.param(".m4a", marks=needs_ffmpeg)])
def test_clip_over_max_seconds_is_too_long(tmp_path: Path, ext: str) -> None:
    path = make_clip(tmp_path, ext, 22050, 1, seconds=12.0)
    err = reason_of(path, max_seconds=10.0)
    assert err.reason == "too_long"
    assert str(path) in str(err)
    assert len(load_audio(path, max_seconds=13.0)) > 0


def test_too_large_is_refused_before_decoding(tmp_path: Path) -> None:
    # Garbage would be "not_audio" if it were decoded: too_large proves it was not.
    junk = tmp_path / "big.wav"
    junk.write_bytes(b"\0junk" * 1000)
    err = reason_of(junk, max_bytes=4000)
    assert err.reason == "too_large"
    assert str(junk) in str(err)
    assert reason_of(b"\0junk" * 1000, max_bytes=4000).reason == "too_large"
    path = write(tmp_path / "ok.wav", tone(22050), 22050)
    assert reason_of(path, max_bytes=path.stat().st_size - 1).reason == "too_large"
    assert len(load_audio(path, max_bytes=path.stat().st_size)) > 0


def test_missing_file_and_directory_are_unreadable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    err = reason_of(missing)
    assert err.reason == "unreadable"
    assert str(missing) in str(err)
    assert "not found" in str(err)
    assert reason_of(tmp_path).reason == "unreadable"


@needs_ffmpeg
def test_video_only_mp4_is_unsupported(tmp_path: Path) -> None:
    video = tmp_path / "video.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
         "testsrc=duration=1:size=32x32:rate=5", "-c:v", "mpeg4", str(video)],
        check=True,
    )  # fmt: skip
    err = reason_of(video)
    assert err.reason == "unsupported"
    assert "no audio stream" in str(err)


@needs_ffmpeg
def test_truncated_m4a_is_corrupt(tmp_path: Path) -> None:
    data = make_clip(tmp_path, ".m4a", 44100, 2).read_bytes()
    err = reason_of(data[: len(data) // 2], name="cut.m4a")
    assert err.reason == "corrupt"
    assert str(err).startswith("cut.m4a: ")
    assert "/tmp" not in str(err)  # the temporary file ffmpeg read is not the user's clip


@needs_ffmpeg
def test_without_ffmpeg_mp4_is_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_clip(tmp_path, ".m4a", 44100, 1)
    wav = write(tmp_path / "still_fine.wav", tone(44100), 44100)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    err = reason_of(path)
    assert err.reason == "unsupported"
    assert "ffmpeg" in str(err)
    assert len(load_audio(wav)) > 0  # soundfile formats need no ffmpeg


def test_unsupported_wav_codec_is_unsupported(tmp_path: Path) -> None:
    data = bytearray(write(tmp_path / "a.wav", tone(22050), 22050).read_bytes())
    data[20:22] = (0x00FF).to_bytes(2, "little")  # WAVE format tag: raw AAC, which libsndfile lacks
    err = reason_of(bytes(data), name="aac_in.wav")
    assert err.reason == "unsupported"
    assert "0x00ff" in str(err)


def test_audio_error_survives_pickling(tmp_path: Path) -> None:
    err = reason_of(tmp_path / "nope.wav")
    again = pickle.loads(pickle.dumps(err))
    assert (again.clip, again.reason, str(again)) == (err.clip, err.reason, str(err))


def test_supported_extensions_are_lower_case_with_dots() -> None:
    assert set(SUPPORTED_EXTENSIONS) == {".wav", ".flac", ".ogg", ".mp3", ".mp4", ".m4a"}
