"""Clip → one fixed, versioned feature vector (GTZAN-style frame statistics plus a few extras).

Everything comes from ONE short-time Fourier transform per clip (n_fft 2048, hop 512, periodic
Hann, centred with zero padding: librosa's defaults). The per-feature librosa style recomputes
that STFT for every feature and runs two full-resolution median filters for HPSS; sharing the
spectrogram, caching the filter banks, a few compiled loops and a reduced HPSS grid make this
about 50x faster (``bench/features.py``, ``bench/RESULTS.md``), while the features agree with
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
    "SAMPLE_RATE",
    "SCHEMA_HASH",
    "SCHEMA_VERSION",
    "extract_features",
    "require_schema",
    "schema_hash",
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

SCHEMA_VERSION = "1"


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


@lru_cache(maxsize=128)  # tuning is estimated in steps of 0.01: at most 101 banks (50 kB each)
def _chroma_bank(sr: float, tuning: float) -> np.ndarray:
    """(bins, 12): ``power @ bank`` is chroma_stft before its per-frame normalisation."""
    bank = librosa.filters.chroma(sr=sr, n_fft=N_FFT, tuning=tuning, n_chroma=N_CHROMA)
    return np.ascontiguousarray(bank.T, dtype=np.float32)


@lru_cache(maxsize=4)
def _moment_bank(sr: float) -> np.ndarray:
    """(bins, 3): ``mag @ bank`` gives each frame's sum, first and second frequency moment."""
    freq = _freqs(sr)
    return np.ascontiguousarray(
        np.stack([np.ones_like(freq), freq, freq**2], axis=1), dtype=np.float32
    )


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
    rms = np.sqrt(np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / N_FFT)
    _put(out, "rms", rms)
    _put(out, "zero_crossing_rate", _zero_crossing_rate(y, n_frames))

    mel_db = _power_to_db(power @ _mel_bank(sr))
    # chroma_stft estimates the tuning first and builds its filter bank for it.
    chroma = power @ _chroma_bank(sr, round(_estimate_tuning(power, sr), 2))
    peak = chroma.max(axis=1, keepdims=True)
    chroma = np.divide(chroma, peak, out=np.zeros_like(chroma), where=peak > _TINY32)
    _put(out, "chroma_stft", chroma)
    for rank, value in enumerate(np.sort(chroma.mean(axis=0))[::-1], start=1):
        out[f"chroma_rank{rank}_mean"] = float(value)

    # Spectral shape of the magnitude: one product gives sum, first and second moments.
    moments = (mag @ _moment_bank(sr)).astype(np.float64)
    total = moments[:, 0]
    voiced = total > _TINY32
    safe = np.where(voiced, total, 1.0)
    centroid = np.where(voiced, moments[:, 1] / safe, 0.0)
    spread = np.where(voiced, moments[:, 2] / safe - np.square(centroid), 0.0)
    _put(out, "spectral_centroid", centroid)
    _put(out, "spectral_bandwidth", np.sqrt(np.maximum(spread, 0.0)))
    rolloff_bins = np.empty(n_frames, dtype=np.int64)
    _rolloff_bins(mag, np.float32(ROLLOFF), rolloff_bins)
    _put(out, "rolloff", _freqs(sr)[rolloff_bins])

    starts, stops, counts = _contrast_bands(sr)
    peak_band = np.empty((len(starts), n_frames))
    valley_band = np.empty_like(peak_band)
    _band_extremes(mag, starts, stops, counts, peak_band, valley_band)
    contrast = _power_to_db(peak_band) - _power_to_db(valley_band)
    for k in range(len(starts)):
        _put(out, f"spectral_contrast{k + 1}", contrast[k])

    floor = np.maximum(power, np.float32(AMIN))
    log_mean = np.log(floor).mean(axis=1, dtype=np.float64)
    _put(out, "spectral_flatness", np.exp(log_mean) / floor.mean(axis=1, dtype=np.float64))
    del floor

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
    for start in range(0, frames.shape[0], _FFT_BLOCK):
        spectrum = scipy.fft.rfft(frames[start : start + _FFT_BLOCK] * window, axis=1, workers=1)
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


def _zero_crossing_rate(y: np.ndarray, n_frames: int) -> np.ndarray:
    """librosa.feature.zero_crossing_rate: edge padding; |x| <= 1e-10 counts as +0."""
    rate = np.empty(n_frames, dtype=np.float64)
    _crossing_rate(y, np.float32(ZC_THRESHOLD), N_FFT, HOP_LENGTH, rate)
    return rate


def _estimate_tuning(power: np.ndarray, sr: float) -> float:
    """librosa.estimate_tuning(S=power), as chroma_stft calls it, at a fraction of the cost.

    piptrack only reports pitches between 150 Hz and 4 kHz, so only those bins (and one
    neighbour each side) are scanned, and the parabolic fit is done at the peaks only.
    """
    lo, hi = _tuning_bins(sr)
    block = power[:, lo - 1 : hi + 1]
    ref = np.float32(0.1) * power.max(axis=1, keepdims=True)
    gated = np.where(block > ref, block, np.float32(0.0))
    center = gated[:, 1:-1]
    peaks = (center > gated[:, :-2]) & (center >= gated[:, 2:])
    rows, cols = np.nonzero(peaks)
    if rows.size == 0:
        return 0.0
    prev = block[rows, cols]
    cur = block[rows, cols + 1]
    nxt = block[rows, cols + 2]
    slope = (nxt - prev) / 2  # np.gradient in the interior
    curve = nxt + prev - 2 * cur
    shift = np.zeros_like(cur)
    np.divide(-slope, curve, out=shift, where=np.abs(slope) < np.abs(curve))
    pitch = (cols + lo + shift) * np.float32(sr / N_FFT)
    strength = cur + np.float32(0.5) * slope * shift
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
    summed = np.zeros(n_pad // 2 + 1)
    for start in range(0, n, 2 * _FFT_BLOCK):
        stop = start + 2 * _FFT_BLOCK
        spectrum = scipy.fft.rfft(frames[start:stop], n=n_pad, axis=1, workers=1)
        summed += weights[start:stop] @ (np.square(spectrum.real) + np.square(spectrum.imag))
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
    harm = _median_rows(np.ascontiguousarray(level.T), HPSS_KERNEL).T
    perc = np.empty_like(typical)
    _median5_rows(typical, perc)
    h2 = np.square(harm)
    p2 = np.square(perc)
    total = h2 + p2
    silent = total <= _TINY32
    total[silent] = 1.0
    # 2 * one-sided power / n_fft**2 is the mean square of the windowed frame; the window's
    # mean square turns it into the RMS of a signal that is steady over the frame.
    scale = 2.0 / (N_FFT**2 * float(np.mean(np.square(_window(), dtype=np.float64))))
    amplitude = np.sqrt(energy * np.float32(scale))
    results = []
    for part in (h2, p2):
        mask = part / total
        mask[silent] = 0.5
        results.append(_overlap_add_rms(mask * amplitude))
    return results[0], results[1]


_GROUP = 8  # bins per group in the HPSS grid; _pool_octets is written for exactly 8
# Hann² overlap-add weights (hop = n_fft / 4): a frame's share of the resynthesised signal at
# its own centre (neighbours at ±1 hop: 1/4 each) and half a hop off centre (the two nearest
# frames: cos²(π/8)² each, the next two: sin²(π/8)² each); every point sums to 1.5.
_OLA_NEAR = float(np.cos(np.pi / 8) ** 4)
_OLA_FAR = float(np.sin(np.pi / 8) ** 4)
_OLA_SUM = 1.5


def _overlap_add_rms(amplitude: np.ndarray) -> np.ndarray:
    """RMS per frame of the signal an inverse STFT would build from per-group amplitudes.

    ``amplitude`` is (frames, groups). Overlap-add mixes neighbouring frames into the signal
    with Hann² weights; ``librosa.feature.rms`` then averages that signal's power over n_fft
    samples around each frame centre (here: 9 points, every half hop, trapezoid rule).
    """
    n_frames = amplitude.shape[0]
    padded = np.pad(amplitude, ((1, 2), (0, 0)))
    before, here, after, later = padded[:-3], padded[1:-2], padded[2:-1], padded[3:]
    at_centre = (here + 0.25 * (before + after)) / _OLA_SUM
    off_centre = (_OLA_NEAR * (here + after) + _OLA_FAR * (before + later)) / _OLA_SUM
    centre_power = np.square(at_centre).sum(axis=1, dtype=np.float64)
    half_power = np.square(off_centre).sum(axis=1, dtype=np.float64)  # at t + hop/2
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


def _median_rows(rows: np.ndarray, kernel: int) -> np.ndarray:
    """Median along each row with 'reflect' edges, as scipy.ndimage.median_filter in hpss.

    Rows are padded by reflection and laid end to end, so one call of scipy's fast 1-D running
    median does them all; no window reaches into the next row.
    """
    half = kernel // 2
    if half >= rows.shape[1]:  # tiny input: the general (slow) filter handles deep reflection
        return np.asarray(
            scipy.ndimage.median_filter(rows, size=(1, kernel), mode="reflect"), dtype=rows.dtype
        )
    padded = np.pad(rows, ((0, 0), (half, half)), mode="symmetric")
    flat = scipy.ndimage.median_filter(padded.reshape(-1), size=kernel, mode="reflect")
    return flat.reshape(padded.shape)[:, half:-half]


# ---------------------------------------------------------------------------------------------
# Numba kernels: loops that numpy can only express with sorts or big temporaries.


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
def _crossing_rate(
    y: np.ndarray, threshold: np.float32, frame_length: int, hop: int, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Sign changes per sample within each centred, edge-padded frame (zero_crossing_rate)."""
    n = y.shape[0]
    half = frame_length // 2
    counts = np.zeros(n, dtype=np.int64)  # counts[m]: crossings between samples 0..m
    previous = y[0] < -threshold
    total = 0
    for m in range(1, n):
        current = y[m] < -threshold
        total += current != previous  # branch-free: noisy audio crosses at random
        counts[m] = total
        previous = current
    for t in range(out.shape[0]):
        # the frame's sample pairs (j-1, j) with j in [start+1, start+frame_length-1] of the
        # padded signal; edge padding repeats the end samples, so pairs in the padding never cross
        first = max(t * hop + 1 - half, 1)
        last = min(t * hop + frame_length - 1 - half, n - 1)
        out[t] = (counts[last] - counts[first - 1]) / frame_length if last >= first else 0.0


@numba.njit(cache=True, nogil=True)
def _rolloff_bins(
    mag: np.ndarray, fraction: np.float32, out: np.ndarray
) -> None:  # pragma: no cover
    """First bin whose float32 running sum reaches ``fraction`` of the frame's total (rolloff)."""
    n_frames, n_bins = mag.shape
    for t in range(n_frames):
        acc = np.float32(0.0)
        for f in range(n_bins):
            acc += mag[t, f]
        threshold = fraction * acc
        acc = np.float32(0.0)
        out[t] = n_bins - 1
        for f in range(n_bins):
            acc += mag[t, f]
            if acc >= threshold:
                out[t] = f
                break
