"""Decode any supported clip to mono float32 at 22,050 Hz, or fail with one AudioError.

wav/flac/ogg/mp3 (and whatever else libsndfile reads) decode in-process with soundfile;
mp4/m4a/ADTS (AAC) go through the ``ffmpeg`` binary. The container is told by its magic bytes,
not its name. Only the analysis window is decoded where the library can seek, and every limit
that can be checked from a header (size, length) is checked before decoding.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlsplit

import numpy as np
import soundfile as sf
import soxr

from genreops.core.errors import AudioError

if TYPE_CHECKING:
    from genreops.data.storage import S3Config

__all__ = [
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "SAMPLE_RATE",
    "SUPPORTED_EXTENSIONS",
    "load_audio",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 22050
SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".mp4", ".m4a")
# Declared sample rates we accept. Real recordings run from 8 kHz (telephone) to 192 kHz
# (studio masters); below 4 kHz almost nothing of the band the features look at is left, and a
# header claiming 1 Hz turns 40 samples into 40 s that would be resampled into a "song"; above
# 192 kHz no audio format in use writes, and resampling from there only costs CPU and memory.
# Checked from the header, before the length limits (a length is only as true as its rate).
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 192_000

# A peak below this is no signal anyone can classify (-80 dBFS).
SILENCE_PEAK = 1e-4
# Float samples are nominally within [-1, 1]; +60 dBFS is no recording, and far beyond it the
# features overflow float32 (a float wav of 1e30 gave infinite features).
MAX_PEAK = 1e3
# ffmpeg/ffprobe get this long per call; a healthy 15-minute m4a decodes in well under 10 s.
FFMPEG_TIMEOUT_S = 120.0
# Enough to see the magic bytes, an ID3 tag of normal size and the chunks ahead of a wav's data.
_HEAD_BYTES = 64 * 1024
# A stream may end this much before its header's length without being called truncated.
_LENGTH_SLACK_S = 0.05
_TAIL_PROBE_FRAMES = 256
_FFMPEG_SLACK_S = 0.5
# WAVE format tags libsndfile decodes (PCM, ADPCM, float, A-law, mu-law, GSM, G.721, MPEG).
_SNDFILE_WAV_TAGS = frozenset({0x1, 0x2, 0x3, 0x6, 0x7, 0x11, 0x31, 0x40, 0x50, 0x55})
_FFMPEG_KINDS = frozenset({"mp4", "aac"})


@dataclass(frozen=True)
class _Source:
    """A clip located and size-checked, not yet decoded: a local file or bytes in memory."""

    name: str
    path: Path | None
    data: bytes | None
    size: int
    head: bytes


@dataclass(frozen=True)
class _AnalysisWindow:
    """The part of a clip to decode (``offset``, ``duration``) and the lengths it must keep to."""

    offset: float
    duration: float | None
    min_seconds: float
    max_seconds: float

    @property
    def required(self) -> float:
        # A window shorter than min_seconds can never hold min_seconds; ask for the window then.
        return self.min_seconds if self.duration is None else min(self.min_seconds, self.duration)


class _Sniffed(NamedTuple):
    kind: str  # wav, flac, ogg, mp3, aiff, mp4, aac or unknown
    sure: bool  # False when the magic is a weak hint (a bare MPEG sync word)


class _WavHeader(NamedTuple):
    format_tag: int | None
    sample_rate: int | None
    byte_rate: int | None
    data_offset: int | None
    data_size: int | None


def load_audio(
    source: str | os.PathLike[str] | bytes,
    offset: float = 0.0,
    duration: float | None = 30.0,
    *,
    name: str | None = None,
    min_seconds: float = 5.0,
    max_seconds: float = 900.0,
    max_bytes: int = 200 * 1024 * 1024,
    s3: S3Config | None = None,
) -> np.ndarray:
    """Decode ``duration`` seconds from ``offset`` of a path, ``s3://`` URL or encoded bytes.

    Returns mono float32 samples at ``SAMPLE_RATE``; a clip shorter than the window is returned
    as it is (no padding) as long as it holds ``min_seconds`` after ``offset``. ``duration=None``
    takes everything after ``offset``. Every problem with the clip raises ``AudioError`` whose
    message starts with ``name`` (default: the path, the URL or ``<bytes>``); invalid arguments
    raise ``ValueError``.
    """
    if not (math.isfinite(offset) and offset >= 0):
        raise ValueError(f"offset must be a finite number >= 0, got {offset!r}")
    if duration is not None and not duration > 0:
        raise ValueError(f"duration must be > 0 or None, got {duration!r}")
    if duration is not None and math.isinf(duration):
        duration = None
    if min_seconds < 0 or not max_seconds > 0 or max_bytes < 0:
        raise ValueError("min_seconds must be >= 0, max_seconds > 0 and max_bytes >= 0")
    window = _AnalysisWindow(offset, duration, min_seconds, max_seconds)

    src = _locate(source, name, max_bytes, s3)
    sniffed = _sniff(src.head)
    logger.debug("decoding %s as %s (%d bytes)", src.name, sniffed.kind, src.size)
    if sniffed.kind in _FFMPEG_KINDS:
        samples, rate = _decode_ffmpeg(src, sniffed, window)
    else:
        samples, rate = _decode_soundfile(src, sniffed, window)
    return _finish(src.name, samples, rate)


# --------------------------------------------------------------------------- locating the clip


def _locate(
    source: str | os.PathLike[str] | bytes, name: str | None, max_bytes: int, s3: S3Config | None
) -> _Source:
    """Find the clip and apply the size limit before anything is read or decoded."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        clip = name or "<bytes>"
        _check_size(clip, len(data), max_bytes)
        return _Source(clip, None, data, len(data), data[:_HEAD_BYTES])
    if isinstance(source, str) and source.startswith("s3://"):
        clip = name or source
        data = _fetch_s3(source, clip, max_bytes, s3)
        _check_size(clip, len(data), max_bytes)
        return _Source(clip, None, data, len(data), data[:_HEAD_BYTES])
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a path, an s3:// URL or bytes, not {type(source).__name__}"
        )
    clip = name or str(source)
    path = Path(source)
    if isinstance(source, str) and source.startswith("file://"):
        path = Path(unquote(urlsplit(source).path))
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise AudioError(clip, "unreadable", "is a directory, not an audio file")
        _check_size(clip, size, max_bytes)
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except FileNotFoundError:
        raise AudioError(clip, "unreadable", "file not found") from None
    except PermissionError:
        raise AudioError(clip, "unreadable", "permission denied") from None
    except OSError as exc:
        raise AudioError(clip, "unreadable", f"cannot read file ({exc.strerror or exc})") from None
    return _Source(clip, path, None, size, head)


def _check_size(clip: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise AudioError(
            clip, "too_large", f"file too large ({_mb(size)}, limit is {_mb(max_bytes)})"
        )
    if size == 0:
        raise AudioError(clip, "empty", "empty file (0 bytes)")


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n} bytes"


def _fetch_s3(url: str, clip: str, max_bytes: int, s3: S3Config | None) -> bytes:
    """Read one S3 object; storage refuses it by its ContentLength before the body is read."""
    from genreops.core.errors import ObjectNotFoundError, ObjectTooLargeError
    from genreops.data.storage import read_bytes

    # Only item-level failures become AudioErrors; an unreachable store propagates so the
    # caller retries instead of marking every clip bad.
    try:
        return read_bytes(url, s3=s3, max_bytes=max_bytes)
    except ObjectTooLargeError as exc:
        detail = str(exc).removeprefix(f"{url}: ")
        where = "" if clip == url else f" ({url})"
        raise AudioError(clip, "too_large", f"S3 object {detail}{where}") from None
    except ObjectNotFoundError as exc:
        detail = str(exc).removeprefix(f"{url}: ")
        where = "" if clip == url else f" ({url})"
        raise AudioError(clip, "unreadable", f"cannot read from S3: {detail}{where}") from None


# --------------------------------------------------------------------------- telling the format


def _sniff(head: bytes) -> _Sniffed:
    """Name the container from its first bytes; file names lie, magic bytes rarely do."""
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return _Sniffed("wav", True)
    if head[:4] == b"fLaC":
        return _Sniffed("flac", True)
    if head[:4] == b"OggS":
        return _Sniffed("ogg", True)
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return _Sniffed("aiff", True)
    if head[4:8] == b"ftyp":
        return _Sniffed("mp4", True)
    if head[:3] == b"ID3" and len(head) >= 10:
        # ID3v2 can front mp3, flac or raw AAC; look past it.
        size = _syncsafe(head[6:10]) + 10 + (10 if head[5] & 0x10 else 0)
        after = head[size : size + 4]
        if after[:4] == b"fLaC":
            return _Sniffed("flac", True)
        if len(after) >= 2 and after[0] == 0xFF and (after[1] & 0xF6) == 0xF0:
            return _Sniffed("aac", True)
        return _Sniffed("mp3", True)
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        # An 11-bit sync word: layer bits 00 mean ADTS AAC, anything else MPEG audio.
        return _Sniffed("aac" if (head[1] & 0x06) == 0 else "mp3", False)
    return _Sniffed("unknown", False)


def _syncsafe(b: bytes) -> int:
    return (b[0] & 0x7F) << 21 | (b[1] & 0x7F) << 14 | (b[2] & 0x7F) << 7 | (b[3] & 0x7F)


def _wav_header(head: bytes) -> _WavHeader:
    """The codec and the data chunk a RIFF/WAVE header declares (None where not in ``head``)."""
    tag: int | None = None
    rate: int | None = None
    byte_rate: int | None = None
    if head[:4] != b"RIFF":  # RF64 keeps its sizes in ds64; libsndfile checks those itself
        return _WavHeader(None, None, None, None, None)
    pos = 12
    while pos + 8 <= len(head):
        cid = head[pos : pos + 4]
        size = int.from_bytes(head[pos + 4 : pos + 8], "little")
        if cid == b"fmt " and pos + 24 <= len(head):
            tag, _, rate, byte_rate = struct.unpack_from("<HHII", head, pos + 8)
            if tag == 0xFFFE and size >= 26 and pos + 34 <= len(head):
                tag = struct.unpack_from("<H", head, pos + 32)[0]  # WAVE_FORMAT_EXTENSIBLE
        elif cid == b"data":
            return _WavHeader(tag, rate, byte_rate, pos + 8, size)
        pos += 8 + size + (size & 1)
    return _WavHeader(tag, rate, byte_rate, None, None)


def _has_vbr_header(head: bytes) -> bool:
    """True when an mp3 carries a Xing/Info/VBRI frame, so its frame count is exact."""
    start = 0
    if head[:3] == b"ID3" and len(head) >= 10:
        start = _syncsafe(head[6:10]) + 10
    first = head[start : start + 200]
    return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))


# --------------------------------------------------------------------------- soundfile


def _decode_soundfile(
    src: _Source, sniffed: _Sniffed, window: _AnalysisWindow
) -> tuple[np.ndarray, int]:
    """Seek to the window and read only it; check the header's length where it can be trusted."""
    clip, kind = src.name, sniffed.kind
    if kind == "wav":
        _check_wav_header(src, window)
    # bytes: a file name that is not UTF-8 opens as it is (soundfile would encode str strictly)
    target: Any = os.fsencode(src.path) if src.path is not None else io.BytesIO(src.data or b"")
    try:
        handle = sf.SoundFile(target)
    except Exception as exc:
        raise _open_error(src, sniffed, exc) from None
    with handle as f:
        frames, rate, subtype = int(f.frames), int(f.samplerate), str(f.subtype)
        label = kind if kind != "unknown" else str(f.format).lower()
        _check_rate(clip, label, rate)
        if frames <= 0:
            raise AudioError(clip, "empty", f"{label} file holds no audio frames")
        # libsndfile guesses an mp3's length from its bitrate unless a Xing/Info frame states it.
        exact = not subtype.startswith("MPEG") or (kind == "mp3" and _has_vbr_header(src.head))
        total = frames / rate
        if total > window.max_seconds:
            raise AudioError(
                clip, "too_long", f"too long ({total:.1f} s, limit is {window.max_seconds:g} s)"
            )
        start = round(window.offset * rate)
        want = frames - start if window.duration is None else round(window.duration * rate)
        if exact:
            want = min(want, frames - start)
        data = np.zeros((0, f.channels), dtype=np.float32)
        if want > 0:
            try:
                f.seek(start)
                data = f.read(want, dtype="float32", always_2d=True)
            except Exception as exc:
                if exact:
                    raise AudioError(
                        clip, "corrupt", f"damaged {label} stream ({_short(exc)})"
                    ) from None
                # An estimated length can put the offset past the real end: too short, below.
        got = data.shape[0]
        slack = round(_LENGTH_SLACK_S * rate)
        if exact and got < want - slack:
            raise AudioError(
                clip,
                "corrupt",
                f"truncated {label} (header says {total:.1f} s, stream ends at "
                f"{(start + got) / rate:.1f} s)",
            )
        _check_short(clip, got / rate, window)
        if exact and start + got < frames - slack:
            _probe_tail(f, clip, label, frames, slack, total)
    return data, rate


def _check_wav_header(src: _Source, window: _AnalysisWindow) -> None:
    """libsndfile quietly shortens a wav whose data chunk overruns the file; call that truncated.

    Unless the header claims more than the length limit: that is the user's limit, known
    without reading a sample, so such a file is refused as too long (not as damaged). A
    sample rate outside the accepted range is refused first: every length depends on it.
    """
    hdr = _wav_header(src.head)
    if hdr.sample_rate is not None:
        _check_rate(src.name, "wav", hdr.sample_rate)
    if hdr.data_offset is None or not hdr.data_size or not hdr.byte_rate:
        return
    if hdr.data_size == 0xFFFFFFFF:  # streaming writers that never filled the size in
        return
    holds = max(0, src.size - hdr.data_offset)
    if hdr.data_size - holds > _LENGTH_SLACK_S * hdr.byte_rate:
        declared = hdr.data_size / hdr.byte_rate
        if declared > window.max_seconds:
            raise AudioError(
                src.name,
                "too_long",
                f"too long (header says {declared:.1f} s, limit is {window.max_seconds:g} s)",
            )
        raise AudioError(
            src.name,
            "corrupt",
            f"truncated wav (header says {declared:.1f} s, "
            f"file holds {holds / hdr.byte_rate:.1f} s)",
        )


def _probe_tail(
    f: sf.SoundFile, clip: str, label: str, frames: int, slack: int, total: float
) -> None:
    """Read a few frames at the header's end: a cut-off file fails here without a full decode."""
    pos = max(0, frames - slack - _TAIL_PROBE_FRAMES)
    try:
        f.seek(pos)
        got = f.read(_TAIL_PROBE_FRAMES, dtype="float32", always_2d=True).shape[0]
    except Exception:
        got = 0
    if got < min(_TAIL_PROBE_FRAMES, frames - pos):
        raise AudioError(
            clip, "corrupt", f"truncated {label} (header says {total:.1f} s, the stream ends early)"
        )


def _open_error(src: _Source, sniffed: _Sniffed, exc: Exception) -> AudioError:
    """Say why libsndfile refused the file: not audio, a codec it lacks, or damage."""
    clip, kind = src.name, sniffed.kind
    if not sniffed.sure:
        return AudioError(clip, "not_audio", "not an audio file (format not recognised)")
    if kind == "wav":
        tag = _wav_header(src.head).format_tag
        if tag is not None and tag not in _SNDFILE_WAV_TAGS:
            return AudioError(clip, "unsupported", f"wav with codec 0x{tag:04x} is not supported")
    if (
        kind == "ogg"
        and _ogg_first_page_intact(src.head)
        and not any(m in src.head[:512] for m in (b"\x01vorbis", b"OpusHead", b"\x7fFLAC"))
    ):
        # only an intact first page names the codec; a cut or damaged one is just corrupt
        return AudioError(clip, "unsupported", "ogg stream is not vorbis, opus or flac audio")
    return AudioError(clip, "corrupt", f"damaged {kind} file ({_short(exc)})")


def _ogg_crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return tuple(table)


_OGG_CRC = _ogg_crc_table()


def _ogg_first_page_intact(head: bytes) -> bool:
    """True when the first Ogg page is complete and its checksum is right."""
    if len(head) < 27 or head[:4] != b"OggS":
        return False
    n = head[26]
    end = 27 + n + sum(head[27 : 27 + n])
    if len(head) < 27 + n or len(head) < end:
        return False
    page = head[:22] + b"\0\0\0\0" + head[26:end]
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[((crc >> 24) & 0xFF) ^ byte]
    return crc == int.from_bytes(head[22:26], "little")


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    # soundfile prefixes "Error opening <_io.BytesIO object at 0x...>: "; the clip is named already.
    if text.startswith("Error opening") and ": " in text:
        text = text.split(": ", 1)[1]
    return (text or type(exc).__name__)[:200]


# --------------------------------------------------------------------------- ffmpeg


def _decode_ffmpeg(
    src: _Source, sniffed: _Sniffed, window: _AnalysisWindow
) -> tuple[np.ndarray, int]:
    """Probe, then decode just the window with ffmpeg; needs a seekable file (moov may trail)."""
    clip = src.name
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        raise AudioError(
            clip, "unsupported", "ffmpeg (with ffprobe) is needed to decode mp4/m4a/aac audio"
        )
    if src.path is not None:
        return _ffmpeg_file(ffmpeg, ffprobe, src.path, src, sniffed, window)
    # mp4 from a pipe fails (silently, exit 0) when the moov box follows the audio, the usual case.
    with tempfile.NamedTemporaryFile(prefix="genreops-", suffix=".m4a") as tmp:
        tmp.write(src.data or b"")
        tmp.flush()
        return _ffmpeg_file(ffmpeg, ffprobe, Path(tmp.name), src, sniffed, window)


def _ffmpeg_file(
    ffmpeg: str, ffprobe: str, path: Path, src: _Source, sniffed: _Sniffed, window: _AnalysisWindow
) -> tuple[np.ndarray, int]:
    clip, label = src.name, sniffed.kind
    url = f"file:{path}"  # so names with ':' or a leading '-' are never read as options/protocols
    probe = _run(
        clip,
        [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", url],
    )
    if probe.returncode != 0:
        if not sniffed.sure:
            raise AudioError(clip, "not_audio", "not an audio file (format not recognised)")
        raise AudioError(clip, "corrupt", f"damaged {label} file ({_stderr(probe, url)})")
    try:
        info = json.loads(probe.stdout or b"{}")
    except ValueError:
        raise AudioError(clip, "corrupt", f"ffprobe could not describe this {label} file") from None
    audio = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        raise AudioError(clip, "unsupported", f"{label} file has no audio stream")
    stream = audio[0]
    channels, rate = int(stream.get("channels") or 0), int(stream.get("sample_rate") or 0)
    if channels <= 0 or rate <= 0:
        codec = stream.get("codec_name", "unknown")
        raise AudioError(clip, "unsupported", f"{label} audio codec {codec!r} cannot be decoded")
    _check_rate(clip, label, rate)
    total = _float(stream.get("duration")) or _float(info.get("format", {}).get("duration"))
    if total is not None and total > window.max_seconds:
        raise AudioError(
            clip, "too_long", f"too long ({total:.1f} s, limit is {window.max_seconds:g} s)"
        )
    # Without a known length, decode at most just past the limit so memory stays bounded.
    limit = window.duration if window.duration is not None else window.max_seconds + 1.0
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-v", "error"]
    if window.offset > 0:
        cmd += ["-ss", f"{window.offset:.6f}"]
    cmd += ["-i", url, "-map", "0:a:0", "-vn", "-sn", "-dn", "-t", f"{limit:.6f}"]
    cmd += ["-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(rate), "pipe:1"]
    out = _run(clip, cmd)
    if out.returncode != 0:
        err = _stderr(out, url)
        if "decoder" in err.lower() and "not found" in err.lower():
            raise AudioError(clip, "unsupported", f"{label} audio codec cannot be decoded ({err})")
        raise AudioError(clip, "corrupt", f"damaged {label} stream ({err})")
    if out.stderr:
        logger.warning("%s: ffmpeg reported decode errors: %s", clip, _stderr(out, url))
    raw = out.stdout[: len(out.stdout) - len(out.stdout) % (4 * channels)]
    data = np.frombuffer(raw, dtype="<f4").reshape(-1, channels)
    got = data.shape[0] / rate
    if total is None and window.duration is None and window.offset + got > window.max_seconds:
        raise AudioError(clip, "too_long", f"too long (over {window.max_seconds:g} s, the limit)")
    # mp4 states its length exactly (ADTS only estimates it): a stream that stops well short of
    # it was cut off. The slack covers encoder priming and padding.
    if label == "mp4" and total is not None:
        expected = min(limit, total - window.offset)
        if got < expected - _FFMPEG_SLACK_S:
            raise AudioError(
                clip,
                "corrupt",
                f"truncated {label} (header says {total:.1f} s, stream ends at "
                f"{window.offset + got:.1f} s)",
            )
    _check_short(clip, got, window)
    return data, rate


def _run(clip: str, cmd: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise AudioError(
            clip, "corrupt", f"decoding took longer than {FFMPEG_TIMEOUT_S:g} s and was stopped"
        ) from None
    except OSError as exc:
        raise AudioError(clip, "unsupported", f"cannot run {Path(cmd[0]).name} ({exc})") from None


def _stderr(proc: subprocess.CompletedProcess[bytes], url: str) -> str:
    """ffmpeg's last complaint, without the (possibly temporary) file name it starts with."""
    text = proc.stderr.decode("utf-8", "replace").replace(f"{url}: ", "").replace(url, "input")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else f"exit code {proc.returncode}")[:200]


def _float(value: object) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


# --------------------------------------------------------------------------- common checks


def _check_rate(clip: str, label: str, rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            clip,
            "bad_sample_rate",
            f"{label} header declares a sample rate of {rate:,} Hz (accepted: "
            f"{MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz)",
        )


def _check_short(clip: str, seconds: float, window: _AnalysisWindow) -> None:
    if seconds < window.required:
        where = f" after offset {window.offset:g} s" if window.offset else ""
        raise AudioError(
            clip,
            "too_short",
            f"too short ({seconds:.2f} s of audio{where}, need at least {window.required:g} s)",
        )


def _finish(clip: str, data: np.ndarray, rate: int) -> np.ndarray:
    """Reject non-finite or silent audio, downmix by mean and resample with soxr."""
    if not np.isfinite(data).all():
        raise AudioError(clip, "corrupt", "audio contains NaN or infinite samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    peak = float(np.abs(mono).max()) if mono.size else 0.0
    if peak < SILENCE_PEAK:
        raise AudioError(clip, "silent", f"silent (peak amplitude {peak:.1e})")
    if peak > MAX_PEAK:
        raise AudioError(
            clip, "corrupt", f"samples far out of range (peak {peak:.1e}, full scale is 1.0)"
        )
    if rate != SAMPLE_RATE:
        try:
            mono = soxr.resample(mono, rate, SAMPLE_RATE)
        except Exception as exc:
            raise AudioError(clip, "corrupt", f"cannot resample from {rate} Hz ({exc})") from None
    return np.ascontiguousarray(mono, dtype=np.float32)
