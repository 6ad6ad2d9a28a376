"""Clip → one fixed, versioned feature vector (GTZAN-style frame statistics plus a few extras).

Everything comes from ONE short-time Fourier transform per clip (n_fft 2048, hop 512, periodic
Hann, centred with zero padding: librosa's defaults). The per-feature librosa style recomputes
that STFT for every feature and runs two full-resolution median filters for HPSS; sharing the
spectrogram, caching the filter banks, a few compiled loops and a reduced HPSS grid make this
about 80x faster (``bench/features.py``, ``bench/RESULTS.md``), while the features agree with
librosa's reference functions, the HPSS energies approximately (tolerances below and in
``tests/unit/test_features.py``).

Agreement with librosa 0.11, per feature (``y`` = the clip, defaults everywhere):
- chroma_stft: ``librosa.feature.chroma_stft(y=y)``, including its tuning estimate.
- rms, zero_crossing_rate: ``librosa.feature.rms(y=y)`` / ``zero_crossing_rate(y)`` (time domain).
- spectral_centroid / spectral_bandwidth / rolloff / spectral_contrast1..7 / spectral_flatness:
  ``librosa.feature.spectral_*(y=y)`` (flatness of the power spectrum, librosa's default).
- mfcc1..20: ``librosa.feature.mfcc(y=y, n_mfcc=20)``.
- tempo: ``librosa.beat.beat_track(y=y)[0]``: the same median-aggregated onset envelope of the
  same dB mel spectrogram, the same tempogram and prior.
- onset_strength: ``librosa.onset.onset_strength(y=y)`` (mean-aggregated spectral flux).
- harmony / perceptr: per-frame RMS of ``librosa.effects.harmonic(y)`` / ``percussive(y)``,
  estimated, not recomputed: the HPSS median filters run on 8-bin frequency groups and the
  inverse STFT is modelled (see ``_hpss_rms``). Seen on test signals and synthetic music:
  harmony means within ~7 %; perceptr means within ~20 % where the percussive part holds
  >= 15 % of the clip's RMS, else within 5 % of the clip's RMS; the dominant part's variance
  within ~25 %, the other part's within a factor ~2.
- chroma_rank1..12_mean: the 12 mean chroma values sorted high to low: how concentrated the
  pitch content is, independent of the key (raw pitch-class means would mostly encode the key).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import librosa
import numba
import numpy as np
import scipy.fft
import scipy.ndimage

from genreops.errors import SchemaError

__all__ = [
    "FEATURE_NAMES",
    "HOP_LENGTH",
    "N_FFT",
    "RETIRED_SCHEMAS",
    "SAMPLE_RATE",
    "SCHEMA_HASH",
    "SCHEMA_VERSION",
    "extract_features",
    "require_schema",
    "retired_schema_version",
    "schema_hash",
    "serving_columns",
]

SAMPLE_RATE = 22050
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
N_MFCC = 20
N_CHROMA = 12
CONTRAST_BANDS = 6
CONTRAST_FMIN = 200.0
CONTRAST_QUANTILE = 0.02
HPSS_KERNEL = 31  # librosa.effects.harmonic / percussive default, in frames and in bins
AMIN = 1e-10  # librosa's floor for logs and dB
TOP_DB = 80.0  # librosa.power_to_db default, used by mfcc and onset_strength
ZC_THRESHOLD = 1e-10  # librosa.zero_crossings default
ROLLOFF = 0.85  # librosa.feature.spectral_rolloff default
TEMPO_AC_SECONDS = 8.0  # librosa.feature.tempo defaults (as beat_track uses them)
TEMPO_START_BPM = 120.0
TEMPO_STD_BPM = 1.0
TEMPO_MAX_BPM = 320.0

SCHEMA_VERSION = "2"


def _stats(base: str) -> tuple[str, str]:
    return (f"{base}_mean", f"{base}_var")


# Order of the well-known GTZAN feature table (features_30_sec.csv, without `length`), then extras.
_GTZAN_NAMES: tuple[str, ...] = (
    *_stats("chroma_stft"),
    *_stats("rms"),
    *_stats("spectral_centroid"),
    *_stats("spectral_bandwidth"),
    *_stats("rolloff"),
    *_stats("zero_crossing_rate"),
    *_stats("harmony"),
    *_stats("perceptr"),
    "tempo",
    *(name for i in range(1, N_MFCC + 1) for name in _stats(f"mfcc{i}")),
)
_EXTRA_NAMES: tuple[str, ...] = (
    *(name for i in range(1, CONTRAST_BANDS + 2) for name in _stats(f"spectral_contrast{i}")),
    *_stats("spectral_flatness"),
    *_stats("onset_strength"),
    *(f"chroma_rank{i}_mean" for i in range(1, N_CHROMA + 1)),
)
FEATURE_NAMES: tuple[str, ...] = _GTZAN_NAMES + _EXTRA_NAMES


def schema_hash(version: str, names: Sequence[str]) -> str:
    """Short fingerprint of a schema: any change of version, name or order changes it."""
    payload = "\n".join([f"version={version}", *names]).encode()
    return hashlib.sha256(payload).hexdigest()[:12]


SCHEMA_HASH = schema_hash(SCHEMA_VERSION, FEATURE_NAMES)


def require_schema(columns: Sequence[str], *, source: str = "features") -> None:
    """Refuse feature columns of another schema, naming what is missing, extra or out of order.

    ``columns`` are the feature columns only (a table's ``clip_id``/``genre`` are not features).
    """
    got = [str(c) for c in columns]
    if got == list(FEATURE_NAMES):
        return
    expected = set(FEATURE_NAMES)
    missing = [n for n in FEATURE_NAMES if n not in set(got)]
    unexpected = [n for n in got if n not in expected]
    duplicated = sorted({n for n in got if got.count(n) > 1})
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {_preview(unexpected)}")
    if duplicated:
        problems.append(f"duplicated: {_preview(duplicated)}")
    if not problems:
        first = next(i for i, (a, b) in enumerate(zip(got, FEATURE_NAMES, strict=True)) if a != b)
        problems.append(
            f"misordered from position {first}: expected {FEATURE_NAMES[first]!r}, "
            f"found {got[first]!r}"
        )
    raise SchemaError(
        f"{source}: columns do not match feature schema v{SCHEMA_VERSION} "
        f"(hash {SCHEMA_HASH}, {len(FEATURE_NAMES)} features): " + "; ".join(problems)
    )


def _preview(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... (+{len(names) - limit})" if len(names) > limit else "")


# Earlier genreops schemas whose columns share names with this one but not their meaning: v1's
# harmony_*/perceptr_* were per-frame RMS estimates, not the GTZAN table's waveform statistics.
# A model trained on them would be fed other quantities under the same names, so it is refused.
# The hash lets a v1 table that lost its Parquet metadata (a CSV export) be recognised too.
RETIRED_SCHEMAS: dict[str, str] = {"1": "8c29dbee3f38"}


def retired_schema_version(version: str, names: Sequence[str]) -> str | None:
    """The retired genreops schema a model or table was made with, if any."""
    if version in RETIRED_SCHEMAS:
        return version
    if version == SCHEMA_VERSION:
        return None
    return next((v for v, h in RETIRED_SCHEMAS.items() if schema_hash(v, names) == h), None)


def serving_columns(
    names: Sequence[str], *, schema_version: str, source: str = "model"
) -> np.ndarray:
    """Positions of a model's feature columns in the vector the preprocessor computes.

    A model may use any subset of ``FEATURE_NAMES`` (a table with the public GTZAN table's 57
    columns, for instance), in any order. Refused: a model made on a retired genreops schema,
    and one that needs a column the preprocessor does not compute (all such columns named).
    """
    retired = retired_schema_version(schema_version, names)
    if retired is not None:
        raise SchemaError(
            f"{source} was trained on genreops feature schema v{retired}, which is retired "
            f"(its harmony/perceptr columns meant other quantities); retrain it on a table from "
            f"`genreops extract` (schema v{SCHEMA_VERSION}) or on a table with the public "
            "GTZAN columns"
        )
    position = {name: i for i, name in enumerate(FEATURE_NAMES)}
    missing = [str(n) for n in names if n not in position]
    if missing:
        raise SchemaError(
            f"{source} needs {len(missing)} feature column(s) the serving preprocessor does not "
            f"compute: {_preview(missing, limit=20)} (it computes schema v{SCHEMA_VERSION}: "
            f"{len(FEATURE_NAMES)} columns, `genreops.features.FEATURE_NAMES`)"
        )
    if not names:
        raise SchemaError(f"{source} uses no feature columns")
    return np.array([position[n] for n in names], dtype=np.intp)


# ---------------------------------------------------------------------------------------------
# Cached banks: built once per process (per sample rate), shared by every clip.


@lru_cache(maxsize=4)
def _window() -> np.ndarray:
    return np.asarray(librosa.filters.get_window("hann", N_FFT, fftbins=True), dtype=np.float32)


@lru_cache(maxsize=4)
def _freqs(sr: float) -> np.ndarray:
    return np.asarray(librosa.fft_frequencies(sr=sr, n_fft=N_FFT), dtype=np.float64)


@lru_cache(maxsize=4)
def _mel_bank(sr: float) -> np.ndarray:
    """(bins, 128): ``power @ bank`` is librosa.feature.melspectrogram (Slaney mel, norm)."""
    bank = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS, dtype=np.float32)
    return np.ascontiguousarray(bank.T)


@lru_cache(maxsize=4)
def _mel_bands(sr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mel bank as triangles: each filter's first bin, its end bin and its weights.

    Every Slaney filter covers a few contiguous bins (about 2,000 non-zeros in 131,000), so
    ``_mel_power`` walks just those instead of a dense (frames x bins) @ (bins x 128) product.
    """
    bank = _mel_bank(sr)
    starts = np.zeros(N_MELS, dtype=np.int64)
    stops = np.zeros(N_MELS, dtype=np.int64)
    weights: list[np.ndarray] = []
    offset = 0
    for m in range(N_MELS):
        members = np.flatnonzero(bank[:, m])
        if members.size:
            starts[m], stops[m] = members[0], members[-1] + 1
        weights.append(bank[starts[m] : stops[m], m])
        offset += int(stops[m] - starts[m])
    return starts, stops, np.concatenate(weights).astype(np.float32)


@lru_cache(maxsize=128)  # tuning is estimated in steps of 0.01: at most 101 banks (50 kB each)
def _chroma_bank(sr: float, tuning: float) -> np.ndarray:
    """(bins, 12): ``power @ bank`` is chroma_stft before its per-frame normalisation."""
    bank = librosa.filters.chroma(sr=sr, n_fft=N_FFT, tuning=tuning, n_chroma=N_CHROMA)
    return np.ascontiguousarray(bank.T, dtype=np.float32)


@lru_cache(maxsize=1)
def _dct_t() -> np.ndarray:
    """(n_mels, n_mfcc): the first rows of the orthonormal DCT-II, as librosa.feature.mfcc."""
    basis = scipy.fft.dct(np.eye(N_MELS), type=2, norm="ortho", axis=0)[:N_MFCC]
    return np.ascontiguousarray(basis.T, dtype=np.float32)


@lru_cache(maxsize=4)
def _contrast_bands(sr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First bin, end bin and quantile count per band, as librosa.feature.spectral_contrast."""
    freq = _freqs(sr)
    octa = np.zeros(CONTRAST_BANDS + 2)
    octa[1:] = CONTRAST_FMIN * (2.0 ** np.arange(0, CONTRAST_BANDS + 1))
    starts, stops, counts = [], [], []
    for k, (f_low, f_high) in enumerate(itertools.pairwise(octa)):
        current = (freq >= f_low) & (freq <= f_high)
        idx = np.flatnonzero(current)
        if k > 0:
            current[idx[0] - 1] = True
        if k == CONTRAST_BANDS:
            current[idx[-1] + 1 :] = True
        members = np.flatnonzero(current)
        stop = int(members[-1]) + 1
        if k < CONTRAST_BANDS:
            stop -= 1  # librosa drops the band's top bin, except in the last band
        starts.append(int(members[0]))
        stops.append(stop)
        counts.append(int(max(np.rint(CONTRAST_QUANTILE * np.sum(current)), 1)))
    return (np.array(starts), np.array(stops), np.array(counts))


@lru_cache(maxsize=4)
def _tuning_bins(sr: float) -> tuple[int, int]:
    """Bins piptrack may report a pitch from (150 Hz <= f < 4 kHz), as a half-open range."""
    freq = _freqs(sr)
    inside = np.flatnonzero((freq >= 150.0) & (freq < min(4000.0, sr / 2)))
    return int(max(inside[0], 1)), int(min(inside[-1] + 1, len(freq) - 1))


@lru_cache(maxsize=4)
def _tempo_bank(sr: float) -> tuple[int, np.ndarray, int, np.ndarray, np.ndarray]:
    """Tempogram window, FFT size, BPM per lag and librosa's log-normal prior (max 320 BPM)."""
    win = int(librosa.time_to_frames(TEMPO_AC_SECONDS, sr=sr, hop_length=HOP_LENGTH))
    window = np.asarray(librosa.filters.get_window("hann", win, fftbins=True), dtype=np.float64)
    n_pad = scipy.fft.next_fast_len(2 * win - 1, real=True)
    bpms = librosa.tempo_frequencies(win, hop_length=HOP_LENGTH, sr=sr)
    with np.errstate(divide="ignore"):
        logprior = -0.5 * ((np.log2(bpms) - np.log2(TEMPO_START_BPM)) / TEMPO_STD_BPM) ** 2
    logprior[: int(np.argmax(bpms < TEMPO_MAX_BPM))] = -np.inf
    return win, window, n_pad, bpms, logprior


# ---------------------------------------------------------------------------------------------
# Extraction


def extract_features(samples: Any, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Feature vector of one clip: float32, shape ``(len(FEATURE_NAMES),)``, in schema order.

    ``samples`` is mono audio (any real array); ``sr`` its sample rate (the platform decodes to
    22,050 Hz and the statistics are only comparable at one rate). Raises ValueError for input
    that is not a finite 1-D signal of at least ``N_FFT`` samples.
    """
    y = _validate(samples, sr)
    values = _compute(y, float(sr))
    vector = np.array([values[name] for name in FEATURE_NAMES], dtype=np.float64)
    # Every step guards its divisions; this only catches what no test has thought of.
    return np.nan_to_num(vector, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _validate(samples: Any, sr: int) -> np.ndarray:
    if not sr or sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr!r}")
    y = np.asarray(samples)
    if y.ndim != 1:
        raise ValueError(f"expected mono samples (a 1-D array), got shape {y.shape}")
    if y.dtype.kind not in "fiu":
        raise ValueError(f"expected real-valued samples, got dtype {y.dtype}")
    if y.shape[0] < N_FFT:
        raise ValueError(
            f"clip too short for feature extraction: {y.shape[0]} samples, need at least {N_FFT}"
        )
    y = np.ascontiguousarray(y, dtype=np.float32)
    finite = np.isfinite(y)
    if not finite.all():
        raise ValueError(
            f"samples contain {int(y.size - np.count_nonzero(finite))} non-finite "
            "values (NaN or inf)"
        )
    return y


def _compute(y: np.ndarray, sr: float) -> dict[str, float]:
    out: dict[str, float] = {}
    padded = np.pad(y, N_FFT // 2)  # centred frames with zero padding: librosa's stft/rms default
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    n_frames = frames.shape[0]  # 1 + len(y) // HOP_LENGTH, like librosa

    power = _power_spectrogram(frames)  # (frames, bins) float32
    mag = np.sqrt(power)

    # Time domain, on librosa's framing.
    energy = np.empty(n_frames, dtype=np.float64)
    crossings = np.empty(n_frames, dtype=np.float64)
    _frame_energy_and_crossings(y, np.float32(ZC_THRESHOLD), N_FFT, HOP_LENGTH, energy, crossings)
    _put(out, "rms", np.sqrt(energy / N_FFT))
    _put(out, "zero_crossing_rate", crossings)

    mel_starts, mel_stops, mel_weights = _mel_bands(sr)
    mel = np.empty((n_frames, N_MELS), dtype=np.float32)
    _mel_power(power, mel_starts, mel_stops, mel_weights, mel)
    mel_db = _power_to_db(mel)
    # chroma_stft estimates the tuning first and builds its filter bank for it.
    chroma = power @ _chroma_bank(sr, round(_estimate_tuning(power, sr), 2))
    peak = chroma.max(axis=1, keepdims=True)
    chroma = np.divide(chroma, peak, out=np.zeros_like(chroma), where=peak > _TINY32)
    _put(out, "chroma_stft", chroma)
    for rank, value in enumerate(np.sort(chroma.mean(axis=0))[::-1], start=1):
        out[f"chroma_rank{rank}_mean"] = float(value)

    # Spectral shape of the magnitude: one pass gives sum, first and second moments, rolloff.
    moments = np.empty((n_frames, 3), dtype=np.float64)
    rolloff_bins = np.empty(n_frames, dtype=np.int64)
    _shape_and_rolloff(mag, _freqs(sr), np.float32(ROLLOFF), moments, rolloff_bins)
    total = moments[:, 0]
    voiced = total > _TINY32
    safe = np.where(voiced, total, 1.0)
    centroid = np.where(voiced, moments[:, 1] / safe, 0.0)
    spread = np.where(voiced, moments[:, 2] / safe - np.square(centroid), 0.0)
    _put(out, "spectral_centroid", centroid)
    _put(out, "spectral_bandwidth", np.sqrt(np.maximum(spread, 0.0)))
    _put(out, "rolloff", _freqs(sr)[rolloff_bins])

    starts, stops, counts = _contrast_bands(sr)
    peak_band = np.empty((len(starts), n_frames))
    valley_band = np.empty_like(peak_band)
    _band_extremes(mag, starts, stops, counts, peak_band, valley_band)
    contrast = _power_to_db(peak_band) - _power_to_db(valley_band)
    for k in range(len(starts)):
        _put(out, f"spectral_contrast{k + 1}", contrast[k])

    log_mean = np.empty(n_frames, dtype=np.float64)
    mean = np.empty(n_frames, dtype=np.float64)
    _log_and_plain_means(power, np.float32(AMIN), log_mean, mean)
    _put(out, "spectral_flatness", np.exp(log_mean) / mean)

    harmonic, percussive = _hpss_rms(mag, power)
    _put(out, "harmony", harmonic)
    _put(out, "perceptr", percussive)
    del power, mag

    # MFCC, onset envelopes and tempo all come from the same dB mel spectrogram.
    mfcc = mel_db @ _dct_t()
    for i in range(N_MFCC):
        _put(out, f"mfcc{i + 1}", mfcc[:, i])
    flux = np.maximum(mel_db[1:] - mel_db[:-1], np.float32(0.0))
    _put(out, "onset_strength", _onset_envelope(flux.mean(axis=1), n_frames))
    out["tempo"] = _tempo(_onset_envelope(np.median(flux, axis=1), n_frames), sr)
    return out


_TINY32 = float(np.finfo(np.float32).tiny)
_TINY64 = float(np.finfo(np.float64).tiny)
_FFT_BLOCK = 64  # frames per FFT call: the complex intermediate stays in cache (~2x faster)


def _power_spectrogram(frames: np.ndarray) -> np.ndarray:
    """|STFT|² of the (strided, unwindowed) frames with librosa's periodic Hann window."""
    window = _window()
    power = np.empty((frames.shape[0], N_FFT // 2 + 1), dtype=np.float32)
    windowed = np.empty((_FFT_BLOCK, N_FFT), dtype=np.float32)
    for start in range(0, frames.shape[0], _FFT_BLOCK):
        chunk = frames[start : start + _FFT_BLOCK]
        buffer = np.multiply(chunk, window, out=windowed[: chunk.shape[0]])
        spectrum = scipy.fft.rfft(buffer, axis=1, workers=1, overwrite_x=True)
        block = power[start : start + _FFT_BLOCK]
        np.square(spectrum.real, out=block)
        block += np.square(spectrum.imag)
    return power


def _put(out: dict[str, float], base: str, series: np.ndarray) -> None:
    """Mean and population variance over all frames (and bins), in float64."""
    values = np.asarray(series, dtype=np.float64)
    mean = values.mean()
    out[f"{base}_mean"] = float(mean)
    out[f"{base}_var"] = float(np.mean(np.square(values - mean)))


def _estimate_tuning(power: np.ndarray, sr: float) -> float:
    """librosa.estimate_tuning(S=power), as chroma_stft calls it, at a fraction of the cost.

    piptrack only reports pitches between 150 Hz and 4 kHz, so only those bins (and one
    neighbour each side) are scanned, and the parabolic fit is done at the peaks only.
    """
    lo, hi = _tuning_bins(sr)
    capacity = power.shape[0] * ((hi - lo + 1) // 2 + 1)  # peaks are never adjacent
    pitch = np.empty(capacity, dtype=np.float32)
    strength = np.empty(capacity, dtype=np.float32)
    found = _tuning_peaks(power, lo, hi, np.float32(sr / N_FFT), pitch, strength)
    pitch, strength = pitch[:found], strength[:found]
    keep = pitch > 0
    pitch = pitch[keep & (strength >= np.median(strength[keep]))] if keep.any() else pitch[keep]
    if pitch.size == 0:
        return 0.0
    residual = np.mod(N_CHROMA * np.log2(pitch / np.float32(440.0 / 16)), 1.0)
    residual[residual >= 0.5] -= 1.0
    counts, edges = np.histogram(residual, np.linspace(-0.5, 0.5, 101))
    return float(edges[np.argmax(counts)])


def _power_to_db(values: np.ndarray) -> np.ndarray:
    """librosa.power_to_db with ref=1, amin=1e-10, top_db=80 (top taken over the whole array)."""
    db = 10.0 * np.log10(np.maximum(values, AMIN))
    return np.maximum(db, db.max() - TOP_DB)


def _onset_envelope(per_frame: np.ndarray, n_frames: int) -> np.ndarray:
    """Shift by lag 1 plus librosa's centring correction (n_fft // 2 // hop frames)."""
    shift = 1 + N_FFT // (2 * HOP_LENGTH)
    envelope = np.zeros(n_frames, dtype=np.float64)
    envelope[shift:] = per_frame[: n_frames - shift]
    return envelope


def _tempo(envelope: np.ndarray, sr: float) -> float:
    """librosa.feature.tempo (= beat_track's estimate): mean tempogram × log-normal prior.

    The tempogram is the autocorrelation of each 8 s window divided by its value at lag 0;
    as only its mean over time is used, the normalised power spectra are summed first and
    inverted once. 0 when the clip has no onset at all, as beat_track reports.
    """
    if not envelope.any():
        return 0.0
    win, window, n_pad, bpms, logprior = _tempo_bank(sr)
    n = envelope.shape[0]
    padded = np.pad(envelope, win // 2, mode="linear_ramp", end_values=(0, 0))
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[:n] * window
    lag0 = np.einsum("ij,ij->i", frames, frames)  # the autocorrelation's maximum
    weights = np.divide(1.0, lag0, out=np.zeros_like(lag0), where=lag0 >= _TINY64)
    frames32 = frames.astype(np.float32)  # float32 FFTs: the argmax never moved (30 clips)
    summed = np.zeros(n_pad // 2 + 1)
    for start in range(0, n, 2 * _FFT_BLOCK):
        stop = start + 2 * _FFT_BLOCK
        spectrum = scipy.fft.rfft(frames32[start:stop], n=n_pad, axis=1, workers=1)
        power = np.square(spectrum.real) + np.square(spectrum.imag)
        summed += weights[start:stop] @ power.astype(np.float64)
    mean_autocorr = scipy.fft.irfft(summed, n=n_pad)[:win] / n
    score = np.log1p(1e6 * mean_autocorr) + logprior
    return float(bpms[int(np.argmax(score))])


def _hpss_rms(mag: np.ndarray, power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame RMS of librosa.effects.harmonic(y) / percussive(y), approximated.

    librosa median-filters the full 1025-bin magnitude twice with 31-point kernels, then
    inverts both halves (about 1.3 s per 30 s clip here). Here the spectrum is cut into groups
    of 8 bins first. The harmonic (time) filter runs on each group's mean magnitude over 31
    frames; the percussive (frequency) filter runs on each group's median magnitude over 5
    groups (40 bins), the median keeping isolated partials out of the noise floor as librosa's
    31-bin median does. librosa's soft masks (power 2, margin 1) then scale each group's
    amplitude, and ``_overlap_add_rms`` turns the masked frames into the RMS that
    ``rms(istft(...))`` would measure. Accuracy is in the module docstring.
    """
    n_frames, n_bins = mag.shape
    groups = (n_bins - 1) // _GROUP  # the Nyquist bin carries no music energy
    level = np.empty((n_frames, groups), dtype=np.float32)
    typical = np.empty_like(level)
    energy = np.empty_like(level)
    _pool_octets(mag, power, level, typical, energy)
    harm = np.empty_like(level)
    _running_median(level, HPSS_KERNEL, harm)
    perc = np.empty_like(typical)
    _median5_rows(typical, perc)
    # 2 * one-sided power / n_fft**2 is the mean square of the windowed frame; the window's
    # mean square turns it into the RMS of a signal that is steady over the frame.
    scale = 2.0 / (N_FFT**2 * float(np.mean(np.square(_window(), dtype=np.float64))))
    padded = np.zeros((2, n_frames + 3, groups), dtype=np.float32)
    _masked_amplitudes(harm, perc, energy, np.float32(scale), padded)
    powers = np.empty((2, 2, n_frames), dtype=np.float64)
    _overlap_add_powers(padded, powers)
    return _window_rms(powers[0]), _window_rms(powers[1])


_GROUP = 8  # bins per group in the HPSS grid; _pool_octets is written for exactly 8
# Hann² overlap-add weights (hop = n_fft / 4): a frame's share of the resynthesised signal at
# its own centre (neighbours at ±1 hop: 1/4 each) and half a hop off centre (the two nearest
# frames: cos²(π/8)² each, the next two: sin²(π/8)² each); every point sums to 1.5.
_OLA_NEAR = float(np.cos(np.pi / 8) ** 4)
_OLA_FAR = float(np.sin(np.pi / 8) ** 4)
_OLA_SUM = 1.5


def _window_rms(powers: np.ndarray) -> np.ndarray:
    """RMS per frame of the signal an inverse STFT would build (see ``_overlap_add_powers``).

    ``librosa.feature.rms`` averages the signal's power over n_fft samples around each frame
    centre: here 9 points, every half hop, trapezoid rule. ``powers`` holds each frame's power
    at its centre and half a hop later.
    """
    centre_power, half_power = powers
    n_frames = centre_power.shape[0]
    c = np.pad(centre_power, 2)
    h = np.pad(half_power, 2)
    window_power = (
        0.5 * (c[0:n_frames] + c[4 : n_frames + 4])
        + c[1 : n_frames + 1]
        + c[2 : n_frames + 2]
        + c[3 : n_frames + 3]
        + h[0:n_frames]
        + h[1 : n_frames + 1]
        + h[2 : n_frames + 2]
        + h[3 : n_frames + 3]
    ) / 8.0
    return np.sqrt(window_power)


def _running_median(values: np.ndarray, kernel: int, out: np.ndarray) -> None:
    """Median over ``kernel`` frames around each frame, per column, with 'reflect' edges, as
    scipy.ndimage.median_filter does in librosa's hpss."""
    if kernel // 2 >= values.shape[0]:  # tiny input: the general filter handles deep reflection
        out[:] = scipy.ndimage.median_filter(values, size=(kernel, 1), mode="reflect")
    else:
        _running_median_columns(values, kernel, out)


# ---------------------------------------------------------------------------------------------
# Numba kernels: loops that numpy can only express with sorts or big temporaries.


@numba.njit(cache=True, nogil=True, fastmath=True)  # compares and selects only: exact
def _running_median_columns(
    x: np.ndarray, kernel: int, out: np.ndarray
) -> None:  # pragma: no cover
    """Running median down each column, vectorised across columns (needs kernel // 2 < rows).

    Each column keeps its window sorted; a step drops the oldest value and inserts the new one
    by rank counting and selects, without branches, so all columns move together in SIMD.
    """
    n, cols = x.shape
    half = kernel // 2
    window = np.empty((kernel, cols), dtype=x.dtype)
    moved = np.empty((kernel, cols), dtype=x.dtype)
    rank_old = np.empty(cols, dtype=np.float32)  # float counters keep the loops one width
    rank_new = np.empty(cols, dtype=np.float32)
    for k in range(kernel):
        j = k - half
        j = -j - 1 if j < 0 else j  # 'reflect': d c b a | a b c d
        window[k] = x[j]
    for c in range(cols):
        window[:, c] = np.sort(window[:, c])
    out[0] = window[half]
    for i in range(1, n):
        j_old = i - 1 - half
        j_old = -j_old - 1 if j_old < 0 else j_old
        j_new = i + half
        j_new = 2 * n - j_new - 1 if j_new >= n else j_new
        old = x[j_old]
        new = x[j_new]
        for c in range(cols):
            rank_old[c] = np.float32(0.0)
            # the new value's rank once the old one is gone
            rank_new[c] = np.float32(-1.0) if old[c] < new[c] else np.float32(0.0)
        for k in range(kernel):
            for c in range(cols):
                w = window[k, c]
                rank_old[c] += np.float32(1.0) if w < old[c] else np.float32(0.0)
                rank_new[c] += np.float32(1.0) if w < new[c] else np.float32(0.0)
        for k in range(kernel):
            up = min(k + 1, kernel - 1)
            down = max(k - 1, 0)
            kf = np.float32(k)
            for c in range(cols):
                p = rank_old[c]  # the old value's slot (its first copy)
                q = rank_new[c]
                here = window[k, c]
                above = window[up, c]
                below = window[down, c]
                value = new[c]
                kept = here if kf < p else above  # slot k of the window without the old value
                kept_before = below if kf - np.float32(1.0) < p else here  # ... its slot k - 1
                moved[k, c] = kept if kf < q else (value if kf == q else kept_before)
        window, moved = moved, window
        out[i] = window[half]


@numba.njit(cache=True, nogil=True)
def _masked_amplitudes(
    harm: np.ndarray, perc: np.ndarray, energy: np.ndarray, scale: np.float32, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """librosa's soft masks (power 2, margin 1; 0.5 each where both parts are silent) times
    each group's amplitude, into ``out[part, 1 + frame, group]`` (zero rows around)."""
    n_frames, groups = harm.shape
    for t in range(n_frames):
        for g in range(groups):
            h2 = harm[t, g] * harm[t, g]
            p2 = perc[t, g] * perc[t, g]
            total = h2 + p2
            amplitude = np.sqrt(energy[t, g] * scale)
            silent = total <= _TINY32
            share = h2 / (np.float32(1.0) if silent else total)
            other = p2 / (np.float32(1.0) if silent else total)
            out[0, t + 1, g] = (np.float32(0.5) if silent else share) * amplitude
            out[1, t + 1, g] = (np.float32(0.5) if silent else other) * amplitude


@numba.njit(cache=True, nogil=True)
def _overlap_add_powers(padded: np.ndarray, powers: np.ndarray) -> None:  # pragma: no cover
    """Power of the overlap-added signal at each frame centre and half a hop later.

    ``padded[part, 1 + t, group]`` is frame t's masked amplitude. Overlap-add mixes
    neighbouring frames with Hann² weights (``_OLA_*``); groups are orthogonal, so powers add.
    """
    parts, rows, groups = padded.shape
    for part in range(parts):
        for t in range(rows - 3):
            centre = 0.0
            later = 0.0
            for g in range(groups):
                before = padded[part, t, g]
                here = padded[part, t + 1, g]
                after = padded[part, t + 2, g]
                next_after = padded[part, t + 3, g]
                at_centre = (here + np.float32(0.25) * (before + after)) * np.float32(1 / _OLA_SUM)
                off_centre = (
                    np.float32(_OLA_NEAR) * (here + after)
                    + np.float32(_OLA_FAR) * (before + next_after)
                ) * np.float32(1 / _OLA_SUM)
                centre += at_centre * at_centre
                later += off_centre * off_centre
            powers[part, 0, t] = centre
            powers[part, 1, t] = later


@numba.njit(cache=True, nogil=True)
def _tuning_peaks(
    power: np.ndarray,
    lo: int,
    hi: int,
    bin_hz: np.float32,
    pitch: np.ndarray,
    strength: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """piptrack's peaks in bins [lo, hi): above a tenth of the frame's maximum, a local
    maximum (> left, >= right, values under the gate counting as 0), refined by a parabola.
    Writes each peak's pitch and strength in frame order; returns how many."""
    n_frames, n_bins = power.shape
    found = 0
    for t in range(n_frames):
        peak = np.float32(0.0)
        for f in range(n_bins):
            peak = max(peak, power[t, f])
        ref = np.float32(0.1) * peak
        for f in range(lo, hi):
            prev = power[t, f - 1]
            cur = power[t, f]
            nxt = power[t, f + 1]
            if not cur > ref:
                continue
            if not cur > (prev if prev > ref else np.float32(0.0)):
                continue
            if not cur >= (nxt if nxt > ref else np.float32(0.0)):
                continue
            slope = (nxt - prev) / np.float32(2.0)  # np.gradient in the interior
            curve = nxt + prev - np.float32(2.0) * cur
            shift = np.float32(0.0)
            if abs(slope) < abs(curve):
                shift = -slope / curve
            pitch[found] = (np.float32(f) + shift) * bin_hz
            strength[found] = cur + np.float32(0.5) * slope * shift
            found += 1
    return found


@numba.njit(cache=True, nogil=True)
def _pool_octets(
    mag: np.ndarray, power: np.ndarray, level: np.ndarray, typical: np.ndarray, energy: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Per frame and group of 8 bins: mean and median magnitude, one-sided power sum."""
    n_frames, groups = level.shape
    for t in range(n_frames):
        for g in range(groups):
            b = 8 * g
            v0, v1, v2, v3 = mag[t, b], mag[t, b + 1], mag[t, b + 2], mag[t, b + 3]
            v4, v5, v6, v7 = mag[t, b + 4], mag[t, b + 5], mag[t, b + 6], mag[t, b + 7]
            level[t, g] = (v0 + v1 + v2 + v3 + v4 + v5 + v6 + v7) * np.float32(0.125)
            e = np.float32(0.0)
            for i in range(8):
                e += power[t, b + i]
            if g == 0:
                e -= np.float32(0.5) * power[t, 0]  # DC appears once in a one-sided spectrum
            energy[t, g] = e
            # Branch-free 19-comparator sorting network; the median is the mean of the middle two.
            v0, v2 = min(v0, v2), max(v0, v2)
            v1, v3 = min(v1, v3), max(v1, v3)
            v4, v6 = min(v4, v6), max(v4, v6)
            v5, v7 = min(v5, v7), max(v5, v7)
            v0, v4 = min(v0, v4), max(v0, v4)
            v1, v5 = min(v1, v5), max(v1, v5)
            v2, v6 = min(v2, v6), max(v2, v6)
            v3, v7 = min(v3, v7), max(v3, v7)
            v0, v1 = min(v0, v1), max(v0, v1)
            v2, v3 = min(v2, v3), max(v2, v3)
            v4, v5 = min(v4, v5), max(v4, v5)
            v6, v7 = min(v6, v7), max(v6, v7)
            v2, v4 = min(v2, v4), max(v2, v4)
            v3, v5 = min(v3, v5), max(v3, v5)
            v1, v4 = min(v1, v4), max(v1, v4)
            v3, v6 = min(v3, v6), max(v3, v6)
            v1, v2 = min(v1, v2), max(v1, v2)
            v3, v4 = min(v3, v4), max(v3, v4)
            v5, v6 = min(v5, v6), max(v5, v6)
            typical[t, g] = (v3 + v4) * np.float32(0.5)


@numba.njit(cache=True, nogil=True)
def _median5_rows(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """5-point median along each row, 'reflect' edges (d c b a | a b c d | d c b a)."""
    rows, n = x.shape
    for r in range(rows):
        for i in range(n):
            j0, j1, j3, j4 = i - 2, i - 1, i + 1, i + 2
            # reflect up to one row length out; rows shorter than 3 reflect again
            j0 = -j0 - 1 if j0 < 0 else j0
            j1 = -j1 - 1 if j1 < 0 else j1
            j3 = 2 * n - j3 - 1 if j3 >= n else j3
            j4 = 2 * n - j4 - 1 if j4 >= n else j4
            j0 = min(max(j0, 0), n - 1)
            j1 = min(max(j1, 0), n - 1)
            j3 = min(max(j3, 0), n - 1)
            j4 = min(max(j4, 0), n - 1)
            a, b, c, d, e = x[r, j0], x[r, j1], x[r, i], x[r, j3], x[r, j4]
            a, b = min(a, b), max(a, b)
            d, e = min(d, e), max(d, e)
            a, d = min(a, d), max(a, d)
            b, e = min(b, e), max(b, e)
            b, c = min(b, c), max(b, c)
            c, d = min(c, d), max(c, d)
            b, c = min(b, c), max(b, c)
            out[r, i] = c


@numba.njit(cache=True, nogil=True)
def _band_extremes(
    mag: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    counts: np.ndarray,
    peak: np.ndarray,
    valley: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Mean of the ``count`` largest and smallest values per band and frame (spectral_contrast)."""
    n_frames = mag.shape[0]
    for k in range(starts.shape[0]):
        count = counts[k]
        top = np.empty(count, dtype=mag.dtype)  # ascending: top[0] is the smallest kept
        low = np.empty(count, dtype=mag.dtype)  # ascending: low[-1] is the largest kept
        for t in range(n_frames):
            top[:] = -np.inf
            low[:] = np.inf
            # Spectra mostly fall with frequency: scanning upwards for the largest values and
            # downwards for the smallest keeps insertions (and their shifting) rare.
            top_floor = top[0]
            for f in range(starts[k], stops[k]):
                v = mag[t, f]
                if v > top_floor:
                    i = 0
                    while i + 1 < count and top[i + 1] < v:
                        top[i] = top[i + 1]
                        i += 1
                    top[i] = v
                    top_floor = top[0]
            low_ceiling = low[count - 1]
            for f in range(stops[k] - 1, starts[k] - 1, -1):
                v = mag[t, f]
                if v < low_ceiling:
                    i = count - 1
                    while i > 0 and low[i - 1] > v:
                        low[i] = low[i - 1]
                        i -= 1
                    low[i] = v
                    low_ceiling = low[count - 1]
            high_sum = 0.0
            low_sum = 0.0
            for i in range(count):
                high_sum += top[i]
                low_sum += low[i]
            peak[k, t] = high_sum / count
            valley[k, t] = low_sum / count


@numba.njit(cache=True, nogil=True)
def _frame_energy_and_crossings(
    y: np.ndarray,
    threshold: np.float32,
    frame_length: int,
    hop: int,
    energy: np.ndarray,
    crossings: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Per centred frame: sum of squares (zero padding, as rms) and zero-crossing rate.

    A frame spans exactly ``frame_length // hop`` hop-sized blocks of the padded signal, so
    both are summed per block once and each frame adds its blocks (exact partitions, no
    running total to cancel). Crossings are sign changes within the edge-padded frame
    (zero_crossing_rate; |x| <= threshold counts as +0); pairs in the padding never cross.
    """
    n = y.shape[0]
    n_frames = energy.shape[0]
    span = frame_length // hop
    lead = frame_length // 2 // hop  # padding blocks before the first sample
    blocks = (n + hop - 1) // hop
    block_energy = np.zeros(n_frames + span, dtype=np.float64)
    # block_crossings[b]: crossings between samples (m - 1, m) for m in block b (m >= 1);
    # first_pair[b]: the one with m = b * hop, which a frame starting at that sample excludes
    block_crossings = np.zeros(blocks, dtype=np.int64)
    first_pair = np.zeros(blocks, dtype=np.int64)
    for b in range(blocks):
        start = b * hop
        stop = min(start + hop, n)
        acc = 0.0
        count = 0
        for m in range(start, stop):
            acc += float(y[m]) * float(y[m])
        for m in range(max(start, 1), stop):
            count += (y[m] < -threshold) != (y[m - 1] < -threshold)
        if start >= 1:
            first_pair[b] = (y[start] < -threshold) != (y[start - 1] < -threshold)
        block_energy[lead + b] = acc
        block_crossings[b] = count
    for t in range(n_frames):
        acc = 0.0
        for b in range(t, t + span):
            acc += block_energy[b]
        energy[t] = acc
        # the frame holds samples [(t - lead) * hop, (t - lead + span) * hop) of y: the pairs
        # inside it are its blocks' pairs minus the pair straddling its first sample
        count = 0
        for b in range(max(t - lead, 0), min(t - lead + span, blocks)):
            count += block_crossings[b]
        if 0 <= t - lead < blocks:
            count -= first_pair[t - lead]
        crossings[t] = count / frame_length


@numba.njit(cache=True, nogil=True)
def _mel_power(
    power: np.ndarray, starts: np.ndarray, stops: np.ndarray, weights: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``power @ mel_bank`` over each filter's non-zero bins only (see ``_mel_bands``)."""
    n_frames = power.shape[0]
    n_mels = starts.shape[0]
    for t in range(n_frames):
        offset = 0
        for m in range(n_mels):
            acc = np.float32(0.0)
            for b in range(starts[m], stops[m]):
                acc += power[t, b] * weights[offset + b - starts[m]]
            offset += stops[m] - starts[m]
            out[t, m] = acc


@numba.njit(cache=True, nogil=True)
def _log_and_plain_means(
    power: np.ndarray, amin: np.float32, log_mean: np.ndarray, mean: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Per frame: mean of log(max(p, amin)) and mean of max(p, amin) (spectral_flatness).

    Logs are the costly part: products of 8 floored float32 values always fit a float64
    (1e-80 .. 3.4e38**8 = 1.8e306), so one log per 8 bins gives the same sum of logs.
    """
    n_frames, n_bins = power.shape
    for t in range(n_frames):
        logs = 0.0
        total = 0.0
        f = 0
        while f + 8 <= n_bins:
            product = 1.0
            for i in range(8):
                v = max(power[t, f + i], amin)
                total += v
                product *= float(v)
            logs += np.log(product)
            f += 8
        while f < n_bins:
            v = max(power[t, f], amin)
            total += v
            logs += np.log(np.float64(v))
            f += 1
        log_mean[t] = logs / n_bins
        mean[t] = total / n_bins


@numba.njit(cache=True, nogil=True)
def _shape_and_rolloff(
    mag: np.ndarray, freqs: np.ndarray, fraction: np.float32, moments: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Per frame: sum, first and second frequency moment of the magnitude (centroid,
    bandwidth) and the first bin whose float32 running sum reaches ``fraction`` of the
    frame's total (rolloff, as librosa's float32 cumsum)."""
    n_frames, n_bins = mag.shape
    for t in range(n_frames):
        acc = np.float32(0.0)
        total = 0.0
        first = 0.0
        second = 0.0
        for f in range(n_bins):
            v = mag[t, f]
            acc += v
            weighted = np.float64(v) * freqs[f]
            total += v
            first += weighted
            second += weighted * freqs[f]
        moments[t, 0] = total
        moments[t, 1] = first
        moments[t, 2] = second
        threshold = fraction * acc
        acc = np.float32(0.0)
        out[t] = n_bins - 1
        for f in range(n_bins):
            acc += mag[t, f]
            if acc >= threshold:
                out[t] = f
                break
