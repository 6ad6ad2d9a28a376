"""Clip → one fixed, versioned feature vector (GTZAN-style frame statistics plus a few extras).

Everything comes from ONE short-time Fourier transform per clip (n_fft 2048, hop 512, periodic
Hann, centred with zero padding: librosa's defaults). The per-feature librosa style recomputes
that STFT for every feature and runs HPSS with two full-resolution float median filters and two
inverse STFTs; sharing the spectrogram, caching the filter banks and a few compiled loops make
this about 25-40x faster (``bench/features.py``, ``bench/RESULTS.md``) while every column agrees
with librosa's reference functions (``tests/unit/test_features.py``).

Schema v2. The first 57 names are the public GTZAN table's feature columns (features_30_sec.csv
without ``length``), in its order, and each computes that table's quantity: a column named
like a public dataset's column computes exactly that quantity; a different quantity gets its
own name, and the schema version moves (v1's harmony/perceptr were per-frame RMS estimates).

Agreement with librosa 0.11, per feature (``y`` = the clip, defaults everywhere; "mean/var" are
the mean and np.var over the whole returned array):
- chroma_stft: ``librosa.feature.chroma_stft(y=y)``, including its tuning estimate.
- rms, zero_crossing_rate: ``librosa.feature.rms(y=y)`` / ``zero_crossing_rate(y)`` (time domain).
- spectral_centroid / spectral_bandwidth / rolloff / spectral_contrast1..7 / spectral_flatness:
  ``librosa.feature.spectral_*(y=y)`` (flatness of the power spectrum, librosa's default).
- harmony / perceptr: mean and variance of the WAVEFORMS ``librosa.effects.hpss(y)`` returns
  (kernel 31 both ways, 'reflect' median filters, soft masks with power 2 and margin 1, 0.5
  where both medians are 0, ``istft(..., length=len(y))``). The medians run on 16-bit log
  levels of the magnitude (``_harmonic_waveform``), so each is the true median to within
  0.025 %; the waveforms match librosa's to ~1e-4 of the clip's peak, sample by sample.
- tempo: ``librosa.beat.beat_track(y=y)[0]``: the same median-aggregated onset envelope of the
  same dB mel spectrogram, the same tempogram and prior.
- mfcc1..20: ``librosa.feature.mfcc(y=y, n_mfcc=20)``.
- onset_strength: ``librosa.onset.onset_strength(y=y)`` (mean-aggregated spectral flux).
- chroma_rank1..12_mean: the 12 mean chroma values sorted high to low: how concentrated the
  pitch content is, independent of the key (raw pitch-class means would mostly encode the key).
- harmony_rms / perceptr_rms: ``librosa.feature.rms(y=part)`` of the same two HPSS waveforms
  (their loudness over time, which schema v1 estimated under the names harmony/perceptr).
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

from genreops.core.errors import SchemaError
from genreops.data.audio import SAMPLE_RATE

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
    *_stats("harmony_rms"),
    *_stats("perceptr_rms"),
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
            f"{len(FEATURE_NAMES)} columns, `genreops.data.features.FEATURE_NAMES`)"
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

    spectrum, power, mag = _spectrogram(frames)  # (frames, bins): complex64, float32, float32

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

    # HPSS: the harmonic waveform by one masked inverse STFT; the percussive one is the rest.
    summed, norm = _harmonic_overlap_add(y, spectrum, mag)
    del spectrum, power, mag
    sums = np.empty((2, 2), dtype=np.float64)
    energies = np.empty((2, n_frames), dtype=np.float64)
    _split_stats(y, summed, norm, N_FFT, HOP_LENGTH, sums, energies)
    for k, base in enumerate(("harmony", "perceptr")):
        mean = sums[k, 0] / y.shape[0]
        out[f"{base}_mean"] = mean
        out[f"{base}_var"] = max(sums[k, 1] / y.shape[0] - mean * mean, 0.0)
        _put(out, f"{base}_rms", np.sqrt(energies[k] / N_FFT))

    # MFCC, onset envelopes and tempo all come from the same dB mel spectrogram.
    mfcc = mel_db @ _dct_t()
    for i in range(N_MFCC):
        _put(out, f"mfcc{i + 1}", mfcc[:, i])
    flux = np.maximum(mel_db[1:] - mel_db[:-1], np.float32(0.0))
    _put(out, "onset_strength", _onset_envelope(flux.mean(axis=1), n_frames))
    flux_median = np.empty(flux.shape[0], dtype=np.float32)
    _row_medians(flux.view(np.int32), flux_median)  # np.median(flux, axis=1), faster
    out["tempo"] = _tempo(_onset_envelope(flux_median, n_frames), sr)
    return out


_TINY32 = float(np.finfo(np.float32).tiny)
_TINY64 = float(np.finfo(np.float64).tiny)
_FFT_BLOCK = 64  # frames per FFT call: the complex intermediate stays in cache (~2x faster)


def _spectrogram(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """STFT, |STFT|² and |STFT| of the (strided, unwindowed) frames with librosa's periodic
    Hann window. The complex STFT is kept for the HPSS inverse."""
    window = _window()
    shape = (frames.shape[0], N_FFT // 2 + 1)
    spectrum = np.empty(shape, dtype=np.complex64)
    power = np.empty(shape, dtype=np.float32)
    mag = np.empty(shape, dtype=np.float32)
    windowed = np.empty((_FFT_BLOCK, N_FFT), dtype=np.float32)
    for start in range(0, shape[0], _FFT_BLOCK):
        chunk = frames[start : start + _FFT_BLOCK]
        buffer = np.multiply(chunk, window, out=windowed[: chunk.shape[0]])
        stop = start + chunk.shape[0]
        block = scipy.fft.rfft(buffer, axis=1, workers=1, overwrite_x=True)
        _store_spectrum(  # copied while hot: one pass over the block instead of two
            block.view(np.float32),
            spectrum[start:stop].view(np.float32),
            power[start:stop],
            mag[start:stop],
        )
    return spectrum, power, mag


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


def _harmonic_waveform(y: np.ndarray, spectrum: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """``librosa.effects.hpss(y)[0]`` (the harmonic part) from the clip's STFT."""
    summed, norm = _harmonic_overlap_add(y, spectrum, mag)
    return np.divide(summed, norm)  # as _split_stats does sample by sample


def _harmonic_overlap_add(
    y: np.ndarray, spectrum: np.ndarray, mag: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The harmonic part of ``librosa.effects.hpss(y)`` as overlap-added frames and the
    window sum-square istft divides them by (both as long as ``y``; _split_stats divides).

    librosa median-filters the magnitude over 31 frames (harmonic) and over 31 bins
    (percussive), masks the STFT with H²/(H² + P²) (0.5 where both are 0) and inverts it.
    The medians run on 16-bit log levels of the magnitude (``_level``): a median commutes
    with a monotone map, so each median is the true one to within a level (±0.025 %), at twice
    the SIMD width of float32. The two masks sum to 1, so the percussive part is ``y`` minus
    this one (the STFT inverts exactly); only one inverse STFT is needed.

    The harmonic median needs every frame, so it runs first; the percussive median, the mask,
    the inverse FFT and the overlap-add then go block by block of _MEDIAN_LANES frames, so
    nothing but the harmonic levels makes a full-size intermediate.
    """
    n_frames, n_bins = mag.shape
    peak = float(mag.max())
    if not peak > _TINY32:  # every mask is 0.5, as librosa's split_zeros: half of (next to) 0
        return (0.5 * y).astype(np.float32), np.ones_like(y)
    base = np.int32(_level_base(peak))
    bits = mag.view(np.int32)
    harm = np.empty((n_frames, _round_up(n_bins)), dtype=np.int16)
    if n_frames > HPSS_KERNEL // 2:
        _harmonic_levels(bits, base, harm)
    else:  # tiny clip: 'reflect' reaches past the far edge; the general filter handles that
        levels = np.empty_like(harm[:, :n_bins])
        _log_levels(bits, base, levels)
        _running_median(levels, harm[:, :n_bins])

    # Level values, scaled by a power of two so the peak is below 2 (squares stay in range;
    # the mask is scale-free): a level's float32 bits minus the peak's exponent.
    value_bits = np.int32(base + (1 << (_LEVEL_SHIFT - 1)) - _exponent_bits(peak))
    window = _window()
    padded = np.zeros((n_frames - 1) * HOP_LENGTH + N_FFT, dtype=np.float32)
    lanes = _MEDIAN_LANES
    tile = np.empty((n_bins + HPSS_KERNEL - 1, lanes), dtype=np.int16)
    perc = np.empty((n_bins, lanes), dtype=np.int16)
    rows_t = np.empty((lanes, n_bins), dtype=np.int16)
    masked = np.empty((lanes, n_bins), dtype=np.complex64)
    pairs = spectrum.view(np.float32)
    for start in range(0, n_frames, lanes):
        stop = min(start + lanes, n_frames)
        block = masked[: stop - start]
        scratch = (tile, perc, rows_t)
        _mask_block(bits, base, harm, pairs, start, value_bits, *scratch, block.view(np.float32))
        frames = scipy.fft.irfft(block, n=N_FFT, axis=1, workers=1)
        _overlap_add(frames, window, start * HOP_LENGTH, padded)
    wss = _window_sumsquare(n_frames)  # >= 1.25 everywhere on the clip: no division guard
    half = N_FFT // 2
    return padded[half : half + y.shape[0]], wss[half : half + y.shape[0]]


# 16-bit log levels for the HPSS medians. The bits of a non-negative float32 increase with its
# value (exponent, then mantissa: a piecewise-linear log2), so (bits - base) >> _LEVEL_SHIFT is
# monotone: 2**(23 - _LEVEL_SHIFT) = 2048 levels per octave (steps of 0.049 %, 0.004 dB) over
# _LEVEL_OCTAVES octaves (193 dB) below the clip's peak; anything lower is level 0 (taken as 0).
_LEVEL_SHIFT = 12
_LEVEL_OCTAVES = 32
_LEVELS = 1 << 16
_LEVEL_OFFSET = 1 << 15  # levels are stored as int16 (signed SIMD compares): level - 32768


def _exponent_bits(value: float) -> int:
    """What to subtract from a positive float32's bits to divide it by 2**floor(log2(value))."""
    return (int(np.float32(value).view(np.int32)) & 0x7F800000) - (127 << 23)


def _round_up(count: int) -> int:
    return -(-count // _MEDIAN_LANES) * _MEDIAN_LANES


def _level_base(peak: float) -> int:
    """The bits that map to level 0: the peak lands on the top level, and no value below the
    smallest normal float32 gets a level (zero and denormals stay at 0)."""
    peak_bits = int(np.float32(peak).view(np.int32))
    base = peak_bits - (_LEVEL_OCTAVES << 23) + (1 << _LEVEL_SHIFT)
    return max(base, 1 << 23)


@lru_cache(maxsize=8)
def _window_sumsquare(n_frames: int) -> np.ndarray:
    """Sum of the squared synthesis windows over the padded signal (librosa.filters.
    window_sumsquare, as istft divides by it)."""
    square = np.square(_window())
    wss = np.zeros((n_frames - 1) * HOP_LENGTH + N_FFT, dtype=np.float32)
    for k in range(N_FFT // HOP_LENGTH):  # quarter k of every frame: one strided add
        part = wss[k * HOP_LENGTH : (k + n_frames) * HOP_LENGTH].reshape(n_frames, HOP_LENGTH)
        part += square[k * HOP_LENGTH : (k + 1) * HOP_LENGTH]
    return wss


def _running_median(values: np.ndarray, out: np.ndarray) -> None:
    """Median over HPSS_KERNEL rows around each row, per column, with 'reflect' edges, as
    scipy.ndimage.median_filter does in librosa's hpss."""
    if values.shape[0] <= HPSS_KERNEL // 2:  # tiny input: the general filter reflects deeper
        out[:] = scipy.ndimage.median_filter(values, size=(HPSS_KERNEL, 1), mode="reflect")
    else:
        _running_median_columns(values, out)


# ---------------------------------------------------------------------------------------------
# Numba kernels: loops that numpy can only express with sorts or big temporaries.


_MEDIAN_LANES = 32  # columns filtered together (a multiple of the SIMD width; 32 was fastest)
_TOP_LEVEL = _LEVELS - 1 - _LEVEL_OFFSET  # the +inf of the medians (pads partial lane blocks)


@numba.njit(cache=True, nogil=True)
def _level(bits: Any, base: Any) -> Any:  # pragma: no cover - compiled
    """The stored (int16) log level of a non-negative float32 given as its bits."""
    level = min(max((bits - base) >> _LEVEL_SHIFT, 0), _LEVELS - 1)
    return np.int16(level - _LEVEL_OFFSET)


@numba.njit(cache=True, nogil=True)
def _log_levels(bits: np.ndarray, base: np.int32, levels: np.ndarray) -> None:  # pragma: no cover
    """16-bit log level (``_level``) of each magnitude, given as its float32 bits."""
    rows, cols = bits.shape
    for t in range(rows):
        for f in range(cols):
            levels[t, f] = _level(bits[t, f], base)


@numba.njit(cache=True, nogil=True)
def _reflected(j: int, n: int) -> int:  # pragma: no cover - compiled
    """Row read for row ``j`` of a 'reflect'-padded axis of length n (d c b a | a b c d)."""
    return -j - 1 if j < 0 else (2 * n - j - 1 if j >= n else j)


@numba.njit(cache=True, nogil=True)
def _running_median_columns(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """_running_median for inputs with more than HPSS_KERNEL // 2 rows."""
    n, cols = x.shape
    half = HPSS_KERNEL // 2
    lanes = _MEDIAN_LANES
    top = x.dtype.type(_TOP_LEVEL)
    tile = np.empty((n + 2 * half, lanes), dtype=x.dtype)
    done = np.empty((n, lanes), dtype=x.dtype)
    for c0 in range(0, cols, lanes):
        width = min(lanes, cols - c0)
        for r in range(n + 2 * half):
            row = _reflected(r - half, n)
            for c in range(lanes):
                tile[r, c] = x[row, c0 + c] if c < width else top
        _median_down(tile, top, done)
        for i in range(n):
            for c in range(width):
                out[i, c0 + c] = done[i, c]


@numba.njit(cache=True, nogil=True)
def _harmonic_levels(
    bits: np.ndarray, base: np.int32, harm: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Median over HPSS_KERNEL frames ('reflect' edges) of the levels of the magnitudes (given
    as float32 bits, more than HPSS_KERNEL // 2 frames), into ``harm`` (frames, bins padded
    to a multiple of _MEDIAN_LANES; the padding columns are filled with the top level)."""
    n_frames, n_bins = bits.shape
    half = HPSS_KERNEL // 2
    lanes = _MEDIAN_LANES
    top = np.int16(_TOP_LEVEL)
    tile = np.empty((n_frames + 2 * half, lanes), dtype=np.int16)
    for c0 in range(0, harm.shape[1], lanes):
        width = min(lanes, n_bins - c0)
        for r in range(n_frames + 2 * half):
            row = _reflected(r - half, n_frames)
            for c in range(width):
                tile[r, c] = _level(bits[row, c0 + c], base)
            for c in range(width, lanes):
                tile[r, c] = top
        _median_down(tile, top, harm[:, c0 : c0 + lanes])


@numba.njit(cache=True, nogil=True)
def _median_down(src: np.ndarray, top: Any, out: np.ndarray) -> None:  # pragma: no cover
    """``out[i, c]`` = median of ``src[i : i + HPSS_KERNEL, c]`` for every row of ``out``
    (``src`` is already padded at both ends; _MEDIAN_LANES columns, ``top`` above all values).

    Each column keeps its window sorted. A step deletes the oldest value and inserts the new
    one with compares, mins and maxes only, so _MEDIAN_LANES columns move together in SIMD:
    without the old value, slot k holds ``d[k] = w[k] if w[k] < old else w[k + 1]``; inserting
    the new value v gives ``min(d[k], max(d[k - 1], v))`` (d[-1] = -inf, d[kernel - 1] = top).
    """
    kernel = HPSS_KERNEL
    half = kernel // 2
    lanes = _MEDIAN_LANES
    window = np.empty((kernel + 1, lanes), dtype=src.dtype)  # row `kernel`: the +inf sentinel
    below = np.empty(lanes, dtype=src.dtype)
    column = np.empty(kernel, dtype=src.dtype)
    for c in range(lanes):
        for k in range(kernel):
            column[k] = src[k, c]
        column.sort()
        for k in range(kernel):
            window[k, c] = column[k]
        window[kernel, c] = top
        out[0, c] = window[half, c]
    for i in range(1, out.shape[0]):
        old = src[i - 1]
        new = src[i - 1 + kernel]
        for c in range(lanes):  # slot 0: nothing below it
            here = window[0, c]
            kept = here if here < old[c] else window[1, c]
            window[0, c] = min(kept, new[c])
            below[c] = kept
        for k in range(1, kernel):
            for c in range(lanes):
                here = window[k, c]
                kept = here if here < old[c] else window[k + 1, c]
                window[k, c] = min(kept, max(below[c], new[c]))
                below[c] = kept
        for c in range(lanes):
            out[i, c] = window[half, c]


@numba.njit(cache=True, nogil=True)
def _mask_block(
    bits: np.ndarray,
    base: np.int32,
    harm: np.ndarray,
    spectrum: np.ndarray,
    start: int,
    value_bits: np.int32,
    tile: np.ndarray,
    perc: np.ndarray,
    rows_t: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The harmonic-masked STFT of frames [start, start + len(out)).

    First the percussive median over bins of these frames: their levels transposed into
    ``tile`` (bins with 'reflect' edges, one frame per lane), the median into ``perc``
    (``rows_t``: scratch, frames by bins). Then librosa's soft mask H²/(H² + P²) (0.5 where
    both medians are 0) times the STFT. A level's value is made from its bits (``value_bits``:
    see _harmonic_overlap_add), not looked up in a table: that vectorises; level 0 is 0.
    ``spectrum`` and ``out`` are complex arrays viewed as float32 pairs.
    """
    rows = out.shape[0]
    n_bins = bits.shape[1]
    half = HPSS_KERNEL // 2
    lanes = _MEDIAN_LANES
    top = np.int16(_TOP_LEVEL)
    # Levels row by row (vectorised), then transposed into the tile (the strided side in L1).
    for t in range(lanes):
        for f in range(n_bins):
            rows_t[t, f] = _level(bits[start + t, f], base) if t < rows else top
    for f in range(n_bins):
        for t in range(lanes):
            tile[half + f, t] = rows_t[t, f]
    for j in range(half):
        for t in range(lanes):
            tile[half - 1 - j, t] = tile[half + j, t]
            tile[half + n_bins + j, t] = tile[half + n_bins - 1 - j, t]
    _median_down(tile, top, perc)
    for t in range(rows):  # and back, frame by frame for the mask (strided reads: 3x faster)
        for f in range(n_bins):
            rows_t[t, f] = perc[f, t]

    h_bits = np.empty(n_bins, dtype=np.int32)
    p_bits = np.empty(n_bins, dtype=np.int32)
    h_values = h_bits.view(np.float32)
    p_values = p_bits.view(np.float32)
    for t in range(rows):
        for f in range(n_bins):
            h = np.int32(harm[start + t, f]) + _LEVEL_OFFSET
            p = np.int32(rows_t[t, f]) + _LEVEL_OFFSET
            h_bits[f] = (h << _LEVEL_SHIFT) + value_bits if h > 0 else 0
            p_bits[f] = (p << _LEVEL_SHIFT) + value_bits if p > 0 else 0
        for f in range(n_bins):
            h = h_values[f]
            p = p_values[f]
            h2 = h * h
            total = h2 + p * p
            share = h2 / total if total > np.float32(0.0) else np.float32(0.5)
            out[t, 2 * f] = spectrum[start + t, 2 * f] * share
            out[t, 2 * f + 1] = spectrum[start + t, 2 * f + 1] * share


@numba.njit(cache=True, nogil=True)
def _overlap_add(
    frames: np.ndarray, window: np.ndarray, offset: int, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Windowed frames added into ``out`` one hop apart from ``offset`` (istft's overlap-add).
    (Slices per frame: indexing ``out`` directly does not vectorise, ~5x slower.)"""
    n, length = frames.shape
    for i in range(n):
        target = out[offset + i * HOP_LENGTH : offset + i * HOP_LENGTH + length]
        frame = frames[i]
        for k in range(length):
            target[k] += frame[k] * window[k]


@numba.njit(cache=True, nogil=True)
def _store_spectrum(
    pairs: np.ndarray, spectrum: np.ndarray, power: np.ndarray, mag: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Complex values (given as float32 pairs) copied into ``spectrum``, with |X|² and |X|."""
    rows, bins = power.shape
    for t in range(rows):
        for f in range(bins):
            re = pairs[t, 2 * f]
            im = pairs[t, 2 * f + 1]
            spectrum[t, 2 * f] = re
            spectrum[t, 2 * f + 1] = im
            p = re * re + im * im
            power[t, f] = p
            mag[t, f] = np.sqrt(p)


@numba.njit(cache=True, nogil=True)
def _split_stats(
    y: np.ndarray,
    summed: np.ndarray,
    norm: np.ndarray,
    frame_length: int,
    hop: int,
    sums: np.ndarray,
    energies: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Sum and sum of squares of the harmonic part (``summed / norm``, as istft divides the
    overlap-added frames by the window sum-square) and of the percussive part (y - harmonic)
    into ``sums[part]``, and each part's energy per centred frame (zero padding, as
    librosa.feature.rms) into ``energies[part]``: one pass over the clip, float64 sums.

    The variance is then E[x²] - mean²: audio means are tiny next to its power, so the
    cancellation costs a few of float64's 16 digits.
    """
    n = y.shape[0]
    n_frames = energies.shape[1]
    span = frame_length // hop
    lead = frame_length // 2 // hop  # padding blocks before the first sample
    blocks = (n + hop - 1) // hop
    block_energy = np.zeros((2, n_frames + span), dtype=np.float64)
    sums[:] = 0.0
    for b in range(blocks):
        stop = min(b * hop + hop, n)
        h_sum = 0.0
        h_square = 0.0
        p_sum = 0.0
        p_square = 0.0
        for m in range(b * hop, stop):
            harmonic = summed[m] / norm[m]  # float32, as istft
            h = float(harmonic)
            p = float(y[m] - harmonic)  # in float32, as librosa's own percussive part
            h_sum += h
            h_square += h * h
            p_sum += p
            p_square += p * p
        sums[0, 0] += h_sum
        sums[0, 1] += h_square
        sums[1, 0] += p_sum
        sums[1, 1] += p_square
        block_energy[0, lead + b] = h_square
        block_energy[1, lead + b] = p_square
    for part in range(2):
        for t in range(n_frames):
            acc = 0.0
            for b in range(t, t + span):
                acc += block_energy[part, b]
            energies[part, t] = acc


@numba.njit(cache=True, nogil=True)
def _row_medians(bits: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """np.median of each row of non-negative float32 values (the onset flux) given as their
    bits, as float32.

    A non-negative float32's bits order like its value, so the middle order statistic is
    found bit by bit, counting the row's values below a trial pattern: branch-free, vectorised
    passes instead of a partition per row.
    """
    rows, n = bits.shape
    k = (n - 1) // 2  # the lower middle value, 0-based
    pair = np.empty(2, dtype=np.int32)
    pair_values = pair.view(np.float32)
    row = np.empty(n, dtype=np.int32)
    for r in range(rows):
        for j in range(n):
            row[j] = bits[r, j] & 0x7FFFFFFF  # -0.0 is 0
        lo = 0
        for bit in range(30, -1, -1):
            trial = lo | (1 << bit)
            below = 0
            for j in range(n):
                below += row[j] < trial
            if below <= k:  # fewer than k + 1 values under trial: the answer is >= trial
                lo = trial
        upper = lo
        if n % 2 == 0:  # the next order statistic: lo again if it repeats, else the next value
            at_most = 0
            above = 0x7FFFFFFF
            for j in range(n):
                at_most += row[j] <= lo
                above = min(above, row[j] if row[j] > lo else 0x7FFFFFFF)
            upper = lo if at_most >= k + 2 else above
        pair[0] = lo
        pair[1] = upper
        out[r] = (pair_values[0] + pair_values[1]) / np.float32(2.0)


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
