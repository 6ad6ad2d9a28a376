"""A seeded corpus of hostile inputs, so every door (load_audio, extraction, client, ensemble)
can be shown to refuse each one with a specific reason, and good files to mix in with them.

Real clips are made first (``genreops.data.synth`` music written by soundfile, mp4 by ffmpeg) and
then damaged on purpose. Every item carries the ``AudioError`` reasons that are honest for it:
damage that a decoder may legitimately survive (bit flips inside audio samples, a trailing cut
of a stream without a stated length) is not in the corpus, or only where the remaining audio is
too short to use. Files go to ``<folder>/bad/`` and ``<folder>/<genre>/`` (the GTZAN layout), so
the same folder feeds the extraction stage as it is.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from genreops.core.errors import AudioError

__all__ = [
    "HOSTILE_CLIP_IDS",
    "KINDS",
    "BadItem",
    "GoodItem",
    "generate_bad_corpus",
    "good_items",
]

Size = Literal["fast", "full"]
BAD_DIR = "bad"
RATE = 22050  # the base clips' rate (genreops.data.synth renders at this rate)
BASE_SECONDS = 8.0  # longer than the 5 s minimum, short enough to keep the corpus small
LONG_SECONDS = 2 * 3600.0  # "2 h clips": far over the 900 s default limit

# Clip ids a client may send: path traversal, absolute paths, NUL bytes, bytes that are not
# UTF-8, control characters, a fake "[reason]" prefix, something very long.
HOSTILE_CLIP_IDS: tuple[bytes, ...] = (
    b"../../etc/passwd",
    b"\xff\xfe\xfd not utf-8 \xc3\x28",
    b"bad\x00.wav",
    b"/etc/passwd",
    b"..\\..\\windows\\system32\\config\\sam",
    b"\xc0\xae\xc0\xae/\xc0\xae\xc0\xae/etc/passwd",  # overlong-encoded "../"
    b"%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"file:///etc/shadow",
    b"s3://other-bucket/../../secret",
    b"-rf --help",
    b"[silent] forged reason\n[ok] second line\r",
    b"\xe2\x80\xaevaw.exe",  # right-to-left override
    b"x" * 5000,
    b"",
)

# Every kind the corpus holds, with what it is (the report groups figures by kind).
KINDS: dict[str, str] = {
    "random_bytes": "random bytes under an audio extension",
    "magic_then_random": "a real format's magic bytes followed by random bytes",
    "truncated_header": "a good file cut inside its header",
    "truncated": "a good file cut mid-stream, leaving less than the minimum length",
    "bitflip_header": "bits flipped in a header field, frame syncs or a checksummed page",
    "zero_length": "an empty file",
    "huge_size_header": "a header claiming a huge size (4 GB data, 2^36 samples, 256 MB tag)",
    "absurd_sample_rate": "a header claiming 0 Hz, 1 Hz or 4 GHz",
    "out_of_range_rate": "a whole, decodable file at 1 Hz, 2 kHz or 400 kHz (outside 4-192 kHz)",
    "nan_samples": "float samples that are NaN or infinite",
    "huge_samples": "float samples far outside [-1, 1] (1e30)",
    "silent": "all-zero or below -80 dBFS audio",
    "short_clip": "a 0.1 s clip",
    "long_clip": "a small file whose header says 2 h",
    "wrong_extension": "a file that is not audio under an audio extension",
    "hostile_clip_id": "a bad file sent under a hostile clip id",
    "hostile_filename": "a bad file whose name is hostile (not UTF-8, newline, leading dash)",
}


@dataclass(frozen=True)
class BadItem:
    """One bad file: ``reasons`` are the AudioError reasons that are correct for it."""

    path: Path
    kind: str
    clip_id: str  # may hold NUL, surrogate-escaped non-UTF-8 bytes, "../"
    reasons: frozenset[str]
    detail: str = ""

    @property
    def clip_id_bytes(self) -> bytes:
        """The id as sent on the wire (surrogate escapes back to the original bytes)."""
        return self.clip_id.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class GoodItem:
    """One usable clip (possibly under a misleading extension); it must be answered."""

    path: Path
    kind: str
    clip_id: str
    genre: str


# --------------------------------------------------------------------------- encoding helpers


def _have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


def _sf_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    """Encode with libsndfile through a temporary file (its mp3 writer wants a real file)."""
    with tempfile.TemporaryDirectory(prefix="genreops-bad-") as tmp:
        path = Path(tmp) / f"clip.{fmt.lower()}"
        sf.write(path, samples, rate, format=fmt, subtype=subtype)
        data = path.read_bytes()
    if fmt == "OGG":
        return _ogg_normalize(data)
    peak = _wav_chunks(data).get(b"PEAK") if fmt == "WAV" else None
    if peak is not None:  # float wavs get a PEAK chunk stamped with the time of writing
        data = _patch(data, peak + 12, bytes(4))
    return data


def _mp4_bytes(
    samples: np.ndarray, rate: int, *, faststart: bool = False, codec: str = "aac"
) -> bytes:
    """AAC (or ALAC, which keeps any sample rate) in mp4 with ffmpeg, bit-exact (no encoder
    version or time in the file)."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with tempfile.TemporaryDirectory(prefix="genreops-bad-") as tmp:
        out = Path(tmp) / "clip.m4a"
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(rate)]
        cmd += ["-ac", str(channels), "-i", "pipe:0", "-c:a", codec]
        cmd += ["-b:a", "64k"] if codec == "aac" else []
        cmd += ["-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]
        if faststart:
            cmd += ["-movflags", "+faststart"]
        raw = np.ascontiguousarray(samples, dtype="<f4").tobytes()
        subprocess.run([*cmd, str(out)], input=raw, check=True, capture_output=True, timeout=120)
        return out.read_bytes()


def _encode(fmt: str, samples: np.ndarray, rate: int = RATE) -> bytes:
    if fmt == "wav":
        return _sf_bytes(samples, rate, "WAV", "PCM_16")
    if fmt == "flac":
        return _sf_bytes(samples, rate, "FLAC", "PCM_16")
    if fmt == "ogg":
        return _sf_bytes(samples, rate, "OGG", "VORBIS")
    if fmt == "mp3":
        return _sf_bytes(samples, rate, "MP3", "MPEG_LAYER_III")
    if fmt == "mp4":
        return _mp4_bytes(samples, rate)
    raise ValueError(f"unknown format {fmt!r}")


EXT = {"wav": ".wav", "flac": ".flac", "ogg": ".ogg", "mp3": ".mp3", "mp4": ".m4a"}


# --------------------------------------------------------------------------- ogg pages


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_OGG_CRC = _crc_table()


def _ogg_pages(data: bytes | bytearray) -> list[tuple[int, int]]:
    """(start, end) of every Ogg page, in order."""
    pages, pos = [], 0
    while pos + 27 <= len(data) and data[pos : pos + 4] == b"OggS":
        n = data[pos + 26]
        end = pos + 27 + n + sum(data[pos + 27 : pos + 27 + n])
        pages.append((pos, end))
        pos = end
    return pages


def _ogg_fix_crc(data: bytearray, start: int, end: int) -> None:
    data[start + 22 : start + 26] = b"\0\0\0\0"
    crc = 0
    for byte in data[start:end]:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[((crc >> 24) & 0xFF) ^ byte]
    data[start + 22 : start + 26] = struct.pack("<I", crc)


def _ogg_normalize(data: bytes) -> bytes:
    """libsndfile picks a random stream serial; a fixed one keeps the corpus deterministic."""
    out = bytearray(data)
    for start, end in _ogg_pages(out):
        out[start + 14 : start + 18] = struct.pack("<I", 0x67656E72)
        _ogg_fix_crc(out, start, end)
    return bytes(out)


def _ogg_edit(data: bytes, edit: Callable[[bytearray, list[tuple[int, int]]], None]) -> bytes:
    """Change fields inside pages, then make the page checksums right again."""
    out = bytearray(data)
    pages = _ogg_pages(out)
    edit(out, pages)
    for start, end in pages:
        _ogg_fix_crc(out, start, end)
    return bytes(out)


# --------------------------------------------------------------------------- mp4 atoms

_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta"}


def _mp4_atoms(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, start, size) of every atom, depth first."""
    end = len(data) if end is None else end
    found, pos = [], start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = bytes(data[pos + 4 : pos + 8])
        if size < 8 or pos + size > end:
            break
        found.append((kind, pos, size))
        if kind in _MP4_CONTAINERS:
            found += _mp4_atoms(data, pos + 8, pos + size)
        pos += size
    return found


def _mp4_atom(data: bytes, kind: bytes) -> tuple[int, int]:
    for k, start, size in _mp4_atoms(data):
        if k == kind:
            return start, size
    raise ValueError(f"no {kind!r} atom")


def _mp4_set_duration(data: bytes, seconds: float) -> bytes:
    """Make the movie, track, media and edit-list headers claim ``seconds``, and the sample
    table agree (its last frame lasts the rest), so the stream's own length is ``seconds``."""
    out = bytearray(data)

    def put(offset: int, value: float) -> None:
        out[offset : offset + 4] = int(value).to_bytes(4, "big")

    def word(offset: int) -> int:
        return int.from_bytes(out[offset : offset + 4], "big")

    mvhd, _ = _mp4_atom(data, b"mvhd")  # version 0 layouts throughout (what ffmpeg writes)
    movie_scale = word(mvhd + 20)
    put(mvhd + 24, seconds * movie_scale)
    put(_mp4_atom(data, b"tkhd")[0] + 28, seconds * movie_scale)
    put(_mp4_atom(data, b"elst")[0] + 16, seconds * movie_scale)
    mdhd, _ = _mp4_atom(data, b"mdhd")
    scale = word(mdhd + 20)
    put(mdhd + 24, seconds * scale)
    stts, _ = _mp4_atom(data, b"stts")
    entries = word(stts + 12)
    total = sum(word(stts + 16 + 8 * i) * word(stts + 20 + 8 * i) for i in range(entries))
    last = stts + 16 + 8 * (entries - 1)
    put(last + 4, word(last + 4) + seconds * scale - total)
    return bytes(out)


# --------------------------------------------------------------------------- wav and flac fields


def _wav_chunks(data: bytes) -> dict[bytes, int]:
    """Offset of each chunk header of a RIFF/WAVE file."""
    found: dict[bytes, int] = {}
    pos = 12
    while pos + 8 <= len(data):
        cid = bytes(data[pos : pos + 4])
        found.setdefault(cid, pos)
        if cid == b"data":
            break
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        pos += 8 + size + (size & 1)
    return found


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _flip(data: bytes, offset: int, mask: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


def _flac_streaminfo_word(data: bytes) -> int:
    # fLaC, block header (4 bytes), 10 bytes of block/frame sizes, then 64 bits:
    # sample rate (20) | channels-1 (3) | bits-1 (5) | total samples (36)
    return int.from_bytes(data[18:26], "big")


def _flac_set(data: bytes, *, rate: int | None = None, total: int | None = None) -> bytes:
    word = _flac_streaminfo_word(data)
    if rate is not None:
        word = (word & ((1 << 44) - 1)) | (rate << 44)
    if total is not None:
        word = (word & ~((1 << 36) - 1)) | total
    return _patch(data, 18, word.to_bytes(8, "big"))


def _mp3_frame_starts(data: bytes) -> list[int]:
    """Offsets of MPEG audio frames found by walking frame lengths from the first sync."""
    bitrates = {  # MPEG-2/2.5 layer III and MPEG-1 layer III, kbit/s by index
        0: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0),
        1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0),
    }
    rates = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
    starts, pos = [], 0
    while pos + 4 <= len(data):
        b1, b2 = data[pos + 1], data[pos + 2]
        if data[pos] != 0xFF or (b1 & 0xE0) != 0xE0:
            pos += 1
            continue
        version = (b1 >> 3) & 3
        if version == 1 or ((b2 >> 2) & 3) == 3 or (b2 >> 4) in (0, 15):
            pos += 1
            continue
        kbps = bitrates[1 if version == 3 else 0][b2 >> 4] * 1000
        rate = rates[version][(b2 >> 2) & 3]
        length = (144 if version == 3 else 72) * kbps // rate + ((b2 >> 1) & 1)
        starts.append(pos)
        pos += max(length, 1)
    return starts


def _mp3_xing_frames(data: bytes, frames: int) -> bytes:
    """Set the frame count of the Xing/Info tag (libsndfile's mp3 writer adds one)."""
    at = max(data.find(b"Xing", 0, 400), data.find(b"Info", 0, 400))
    if at < 0:
        raise ValueError("no Xing/Info tag")
    flags = int.from_bytes(data[at + 4 : at + 8], "big")
    if not flags & 1:
        raise ValueError("Xing tag without a frame count")
    return _patch(data, at + 8, frames.to_bytes(4, "big"))


# --------------------------------------------------------------------------- the corpus


class _Builder:
    """Collects files and their honest expectations; base clips are encoded once per format."""

    def __init__(self, folder: Path, size: Size, seed: int) -> None:
        self.root = Path(folder)
        self.dir = self.root / BAD_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.full = size == "full"
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBAD]))
        self.seed = seed
        self.items: list[BadItem] = []
        self.formats = ["wav", "flac", "ogg", "mp3"] + (["mp4"] if _have_ffmpeg() else [])
        self._bases: dict[tuple[str, int], bytes] = {}
        self._music: dict[int, np.ndarray] = {}

    def music(self, variant: int = 0) -> np.ndarray:
        if variant not in self._music:
            from genreops.data.synth import render_clip

            genres = ("rock", "jazz", "classical", "metal", "pop", "blues")
            genre = genres[variant % len(genres)]
            self._music[variant] = render_clip(genre, self.seed * 1000 + variant, BASE_SECONDS)
        return self._music[variant]

    def base(self, fmt: str, variant: int = 0) -> bytes:
        """A good clip of ``fmt`` (variant 1 is stereo, to reach other code paths)."""
        key = (fmt, variant)
        if key not in self._bases:
            y = self.music(variant)
            if variant % 2 == 1:
                y = np.stack([y, 0.6 * y], axis=1)
            self._bases[key] = _encode(fmt, y)
        return self._bases[key]

    def add(
        self,
        kind: str,
        name: str,
        data: bytes,
        reasons: set[str] | frozenset[str],
        detail: str,
        *,
        clip_id: str | None = None,
        filename: bytes | None = None,
    ) -> None:
        assert kind in KINDS, kind
        unknown = set(reasons) - set(AudioError.REASONS)
        assert not unknown, unknown
        index = len(self.items)
        file_name = filename or f"{index:03d}-{kind}-{name}".encode()
        path = self.dir / os.fsdecode(file_name)
        path.write_bytes(data)
        rel = f"{BAD_DIR}/{os.fsdecode(file_name)}"
        self.items.append(
            BadItem(path, kind, rel if clip_id is None else clip_id, frozenset(reasons), detail)
        )

    def count(self, fast: int, full: int) -> int:
        return full if self.full else fast

    # -- kinds -----------------------------------------------------------------------------

    def random_bytes(self) -> None:
        exts = [".wav", ".mp3", ".flac", ".ogg", ".m4a", ".mp4"]
        sizes = [1, 17, 4096, 60_000]
        n = self.count(2, 24)
        for i in range(n):
            ext, size = exts[i % len(exts)], sizes[(i // len(exts)) % len(sizes)]
            data = bytearray(self.rng.integers(0, 256, size, dtype=np.uint8).tobytes())
            if data[0] in (0xFF, 0x00) or data[:3] == b"ID3":
                data[0] = 0x42  # not by chance a sync word or a magic
            self.add(
                "random_bytes",
                f"{size}b{ext}",
                bytes(data),
                {"not_audio"},
                f"{size} random bytes",
            )

    def magic_then_random(self) -> None:
        magics = [
            (b"RIFF\x24\x10\x00\x00WAVE", ".wav", {"corrupt"}),
            (b"fLaC", ".flac", {"corrupt"}),
            (b"OggS\x00\x02", ".ogg", {"corrupt"}),
            (b"ID3\x03\x00\x00\x00\x00\x00\x00", ".mp3", {"corrupt"}),
            (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", ".m4a", {"corrupt"}),
            (b"FORM\x00\x00\x10\x00AIFF", ".wav", {"corrupt"}),
        ]
        if not _have_ffmpeg():
            magics = [m for m in magics if m[1] != ".m4a"]
        n = self.count(2, 12)
        for i in range(n):
            magic, ext, reasons = magics[i % len(magics)]
            size = 2000 if i < len(magics) else 30_000
            tail = self.rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            self.add(
                "magic_then_random",
                f"{magic[:4].hex()}{ext}",
                magic + tail,
                reasons,
                f"{magic[:4]!r} magic then {size} random bytes",
            )

    def truncated_header(self) -> None:
        cuts = [3, 12, 40, 120]
        n = self.count(2, 20)
        for i in range(n):
            fmt = self.formats[i % len(self.formats)]
            cut = cuts[(i // len(self.formats)) % len(cuts)]
            data = self.base(fmt, i % 2)[:cut]
            # 3 bytes are no magic at all; the rest is a known format that stops in its header
            reasons = {"not_audio"} if cut < 4 else {"corrupt", "not_audio"}
            self.add(
                "truncated_header",
                f"{cut}b{EXT[fmt]}",
                data,
                reasons,
                f"{fmt} cut after {cut} bytes",
            )

    def truncated(self) -> None:
        # Less than 5 s of an 8 s clip remains: a format that states its length is corrupt,
        # one that does not (ogg) is too short, or empty when no whole audio page is left.
        shares = [0.5, 0.3, 0.6, 0.12]
        n = self.count(5, 20)
        for i in range(n):
            fmt = self.formats[i % len(self.formats)]
            share = shares[(i // len(self.formats)) % len(shares)]
            data = self.base(fmt, i % 2)
            self.add(
                "truncated",
                f"{int(share * 100)}pct{EXT[fmt]}",
                data[: int(len(data) * share)],
                {"corrupt", "too_short", "empty"},
                f"{fmt} cut to {share:.0%} of its bytes",
            )

    def bitflip_header(self) -> None:
        recipes: list[tuple[str, str, Callable[[bytes], bytes], set[str]]] = []

        def wav_field(field: str, mask: int) -> Callable[[bytes], bytes]:
            def damage(d: bytes) -> bytes:
                fmt = _wav_chunks(d)[b"fmt "]
                at = {"tag": fmt + 9, "channels": fmt + 10, "bits": fmt + 22, "id": fmt + 3}
                # channels: flip exactly the bits that are set, leaving 0 channels (a flip to
                # another count decodes, as interleaved noise: libsndfile trusts the field)
                return _flip(d, at[field], d[at[field]] if mask == 0 else mask)

            return damage

        recipes += [
            ("wav", "format-tag", wav_field("tag", 0x80), {"unsupported"}),
            ("wav", "channels", wav_field("channels", 0), {"corrupt"}),
            ("wav", "bits", wav_field("bits", 0x40), {"corrupt", "unsupported"}),
            ("wav", "fmt-id", wav_field("id", 0x02), {"corrupt"}),
        ]

        def flac_syncs(d: bytes) -> bytes:
            out = bytearray(d)
            pos = out.find(b"\xff\xf8", 42)
            while pos >= 0:
                out[pos] ^= 0x10
                pos = out.find(b"\xff\xf8", pos + 2)
            return bytes(out)

        recipes += [
            ("flac", "block-type", lambda d: _flip(d, 4, 0x05), {"corrupt"}),
            ("flac", "frame-syncs", flac_syncs, {"corrupt"}),
        ]

        def mp3_syncs(d: bytes) -> bytes:
            out = bytearray(d)
            for start in _mp3_frame_starts(d):
                out[start + 1] ^= 0x80
            return bytes(out)

        def ogg_page(index: int, offset: int) -> Callable[[bytes], bytes]:
            # a flipped bit breaks the page checksum: the page, and its headers, are lost
            def damage(d: bytes) -> bytes:
                start, end = _ogg_pages(d)[index]
                return _flip(d, min(start + offset, end - 1), 0x04)

            return damage

        recipes += [
            ("mp3", "frame-syncs", mp3_syncs, {"not_audio", "corrupt"}),
            ("ogg", "ident-page", ogg_page(0, 40), {"corrupt", "unsupported"}),
            ("ogg", "setup-page", ogg_page(1, 60), {"corrupt", "unsupported"}),
        ]
        if "mp4" in self.formats:

            def mp4_type(kind: bytes) -> Callable[[bytes], bytes]:
                def damage(d: bytes) -> bytes:
                    start, _ = _mp4_atom(d, kind)
                    return _flip(d, start + 4, 0x20)

                return damage

            recipes += [
                ("mp4", "moov-type", mp4_type(b"moov"), {"corrupt"}),
                ("mp4", "stsd-type", mp4_type(b"stsd"), {"corrupt", "unsupported"}),
            ]
        n = self.count(4, 2 * len(recipes))
        for i in range(n):
            fmt, name, damage, reasons = recipes[
                (i * 3) % len(recipes) if not self.full else i % len(recipes)
            ]
            variant = i // len(recipes)
            self.add(
                "bitflip_header",
                f"{name}{EXT[fmt]}",
                damage(self.base(fmt, variant)),
                reasons,
                f"{fmt}: bits flipped in {name.replace('-', ' ')}",
            )

    def zero_length(self) -> None:
        exts = [".wav", ".flac", ".ogg", ".mp3", ".m4a", ".mp4"]
        for ext in exts[: self.count(1, len(exts))]:
            self.add("zero_length", f"empty{ext}", b"", {"empty"}, "0 bytes")

    def huge_size_header(self) -> None:
        recipes: list[tuple[str, str, Callable[[bytes], bytes], set[str]]] = []

        def wav_4gb(d: bytes) -> bytes:
            data_at = _wav_chunks(d)[b"data"]
            d = _patch(d, 4, (0xFFFFFFF0).to_bytes(4, "little"))
            return _patch(d, data_at + 4, (0xFFFFFFE0).to_bytes(4, "little"))

        def wav_fmt_4gb(d: bytes) -> bytes:
            fmt = _wav_chunks(d)[b"fmt "]
            return _patch(d, fmt + 4, (0xFFFFFFF0).to_bytes(4, "little"))

        def id3_256mb(d: bytes) -> bytes:
            return b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + d  # syncsafe 0x0FFFFFFF

        recipes += [
            ("wav", "riff-data-4gb", wav_4gb, {"too_long", "corrupt"}),
            (
                "flac",
                "total-samples-2e36",
                lambda d: _flac_set(d, total=(1 << 36) - 1),
                {"too_long"},
            ),
            ("mp3", "id3-256mb", id3_256mb, {"corrupt", "not_audio"}),
            ("mp3", "xing-4g-frames", lambda d: _mp3_xing_frames(d, 0xFFFFFFF0), {"too_long"}),
            ("wav", "fmt-chunk-4gb", wav_fmt_4gb, {"corrupt"}),
        ]
        if "mp4" in self.formats:

            def mdat_4gb(d: bytes) -> bytes:
                start, _ = _mp4_atom(d, b"mdat")
                return _patch(d, start, (0xFFFFFFF0).to_bytes(4, "big"))

            recipes.append(("mp4", "mdat-4gb", mdat_4gb, {"corrupt"}))
        n = self.count(4, 2 * len(recipes))
        for i in range(n):
            fmt, name, damage, reasons = recipes[i % len(recipes)]
            self.add(
                "huge_size_header",
                f"{name}{EXT[fmt]}",
                damage(self.base(fmt, i // len(recipes))),
                reasons,
                f"{fmt} header: {name.replace('-', ' ')}",
            )

    def absurd_sample_rate(self) -> None:
        def wav_rate(rate: int) -> Callable[[bytes], bytes]:
            def damage(d: bytes) -> bytes:
                fmt = _wav_chunks(d)[b"fmt "]
                channels = int.from_bytes(d[fmt + 10 : fmt + 12], "little")
                d = _patch(d, fmt + 12, rate.to_bytes(4, "little"))
                return _patch(
                    d, fmt + 16, (min(rate * 2 * channels, 0xFFFFFFFF)).to_bytes(4, "little")
                )

            return damage

        def ogg_rate(rate: int) -> Callable[[bytes], bytes]:
            def edit(out: bytearray, pages: list[tuple[int, int]]) -> None:
                start, _ = pages[0]
                body = start + 27 + out[start + 26]
                out[body + 12 : body + 16] = struct.pack("<I", rate)

            return lambda d: _ogg_edit(d, edit)

        # 1 Hz would turn 8 s of samples into 176,400 s (too long), 4 GHz into microseconds
        # (too short), but the rate is checked first: every length depends on it. genreops
        # reads a wav's header itself; libsndfile may refuse a flac/ogg header outright.
        recipes: list[tuple[str, str, Callable[[bytes], bytes]]] = [
            ("wav", "1hz", wav_rate(1)),
            ("wav", "4ghz", wav_rate(4_000_000_000)),
            ("flac", "0hz", lambda d: _flac_set(d, rate=0)),
            ("ogg", "1hz", ogg_rate(1)),
            ("wav", "0hz", wav_rate(0)),
            ("flac", "1hz", lambda d: _flac_set(d, rate=1)),
            ("ogg", "0hz", ogg_rate(0)),
            ("ogg", "4ghz", ogg_rate(4_000_000_000)),
        ]
        for i in range(self.count(2, 2 * len(recipes))):
            fmt, name, damage = recipes[i % len(recipes)]
            self.add(
                "absurd_sample_rate",
                f"{name}{EXT[fmt]}",
                damage(self.base(fmt, i // len(recipes))),
                {"bad_sample_rate"} if fmt == "wav" else {"bad_sample_rate", "corrupt"},
                f"{fmt} header says {name}",
            )

    def out_of_range_rate(self) -> None:
        """Files that decode as they are, long enough and not silent, but were written at a
        rate no recording has: before issue 14 they were resampled and got a genre (40
        samples at 1 Hz are 40 s of "audio")."""
        y = self.music(0)
        recipes: list[tuple[str, int, int]] = [  # format, rate, frames
            ("wav", 1, 40),
            ("flac", 2_000, 8 * 2_000),
            ("wav", 400_000, 6 * 400_000),
            ("flac", 1, 40),
            ("wav", 2_000, 8 * 2_000),
            ("flac", 400_000, 6 * 400_000),
            ("wav", 3_999, 8 * 3_999),  # just under the limit
        ]
        if "mp4" in self.formats:  # ALAC in m4a keeps any rate: the ffmpeg path
            recipes.append(("mp4", 2_000, 8 * 2_000))
        for fmt, rate, frames in recipes[: self.count(3, len(recipes))]:
            samples = np.resize(y, frames)  # the clip's samples, relabelled at ``rate``
            if fmt == "mp4":
                data = _mp4_bytes(samples, rate, codec="alac")
            else:
                data = _encode(fmt, samples, rate)
            self.add(
                "out_of_range_rate",
                f"{rate}hz{EXT[fmt]}",
                data,
                {"bad_sample_rate"},
                f"{fmt} of {frames:,} samples at {rate:,} Hz ({frames / rate:g} s)",
            )

    def nan_samples(self) -> None:
        values = [np.nan, np.inf, -np.inf]
        for i in range(self.count(1, 8)):
            y = self.music(0).copy()
            bad = values[i % len(values)]
            at = int(RATE * (0.5 + i * 0.7))
            y[at : at + (1 if i % 2 else 500)] = bad
            subtype = "FLOAT" if i < 4 else "DOUBLE"
            self.add(
                "nan_samples",
                f"{bad}-{subtype.lower()}.wav",
                _sf_bytes(y, RATE, "WAV", subtype),
                {"corrupt"},
                f"{subtype} wav with {bad} samples",
            )

    def huge_samples(self) -> None:
        for i in range(self.count(1, 3)):
            y = self.music(0).astype(np.float64) * (1e30 if i != 1 else 1e300)
            subtype = "DOUBLE" if i == 1 else "FLOAT"
            self.add(
                "huge_samples",
                f"x{i}-{subtype.lower()}.wav",
                _sf_bytes(y, RATE, "WAV", subtype),
                {"corrupt"},
                f"{subtype} wav with samples around {np.abs(y).max():.0e}",
            )

    def silent(self) -> None:
        n = int(RATE * BASE_SECONDS)
        quiet = self.rng.choice(np.array([-1, 0, 1], dtype=np.float32), n) / 32768.0 * 2
        cases = [(fmt, "zeros", np.zeros(n, dtype=np.float32)) for fmt in self.formats]
        cases += [(fmt, "dither", quiet) for fmt in ("wav", "flac")]
        for fmt, name, y in cases[: self.count(2, len(cases))]:
            self.add(
                "silent",
                f"{name}{EXT[fmt]}",
                _encode(fmt, y),
                {"silent"},
                f"{fmt} of {BASE_SECONDS:g} s {name} (below -80 dBFS)",
            )

    def short_clip(self) -> None:
        y = self.music(0)[: int(RATE * 0.1)]
        fmts = [*self.formats, "wav-44k-stereo"]
        for fmt in fmts[: self.count(2, len(fmts))]:
            if fmt == "wav-44k-stereo":
                data = _sf_bytes(np.stack([y, y], axis=1), 44100, "WAV", "PCM_16")
                ext = ".wav"
            else:
                data, ext = _encode(fmt, y), EXT[fmt]
            self.add("short_clip", f"0.1s{ext}", data, {"too_short"}, f"{fmt}, 0.1 s")

    def long_clip(self) -> None:
        recipes: list[tuple[str, str, Callable[[], bytes] | None]] = [
            ("wav", "sparse-8bit", None),
            (
                "flac",
                "streaminfo",
                lambda: _flac_set(self.base("flac"), total=int(LONG_SECONDS * RATE)),
            ),
            (
                "mp3",
                "xing",
                lambda: _mp3_xing_frames(self.base("mp3"), int(LONG_SECONDS * RATE / 576)),
            ),
            ("ogg", "granule", lambda: self._ogg_long()),
            ("wav", "data-size", lambda: self._wav_long()),
        ]
        if "mp4" in self.formats:
            recipes.append(
                ("mp4", "mdhd", lambda: _mp4_set_duration(self.base("mp4"), LONG_SECONDS))
            )
        for fmt, name, make in recipes[: self.count(3, len(recipes))]:
            if make is None:
                self._sparse_long_wav(name)
                continue
            self.add(
                "long_clip",
                f"2h-{name}{EXT[fmt]}",
                make(),
                {"too_long"},
                f"{fmt} whose {name} says 2 h",
            )

    def _sparse_long_wav(self, name: str) -> None:
        """A real 2 h wav (8 kHz, 8 bit): 57.6 MB on paper, a few kB on disk (a sparse file)."""
        rate, frames = 8000, int(LONG_SECONDS * 8000)
        header = io.BytesIO()
        with sf.SoundFile(header, "w", rate, 1, "PCM_U8", format="WAV") as f:
            f.write(np.zeros(1, dtype=np.float32))
        head = bytearray(header.getvalue())
        data_at = _wav_chunks(bytes(head))[b"data"]
        head = head[: data_at + 8]
        head[data_at + 4 : data_at + 8] = frames.to_bytes(4, "little")
        head[4:8] = (len(head) - 8 + frames).to_bytes(4, "little")
        self.add("long_clip", f"2h-{name}.wav", bytes(head), {"too_long"}, "8 kHz 8-bit wav, 2 h")
        path = self.items[-1].path
        with path.open("r+b") as fh:
            fh.truncate(len(head) + frames)  # zeros, unread: the length alone refuses it

    def _ogg_long(self) -> bytes:
        def edit(out: bytearray, pages: list[tuple[int, int]]) -> None:
            start, _ = pages[-1]
            out[start + 6 : start + 14] = struct.pack("<q", int(LONG_SECONDS * RATE))

        return _ogg_edit(self.base("ogg"), edit)

    def _wav_long(self) -> bytes:
        d = self.base("wav")
        data_at = _wav_chunks(d)[b"data"]
        size = int(LONG_SECONDS * RATE * 2)
        d = _patch(d, 4, (data_at + size).to_bytes(4, "little"))
        return _patch(d, data_at + 4, size.to_bytes(4, "little"))

    def wrong_extension(self) -> None:
        cases = [
            ("text.flac", b"These are my notes, not a song.\n" * 40),
            ("page.mp4", b"<!DOCTYPE html><html><body>" + b"x" * 3000 + b"</body></html>"),
            ("image.ogg", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(2000)),
            ("data.m4a", b'{"genre": "rock", "clip": [1, 2, 3]}' * 50),
            ("program.mp3", b"\x7fELF\x02\x01\x01" + bytes(4000)),
            ("archive.wav", b"PK\x03\x04\x14\x00" + bytes(3000)),
            ("paper.wav", b"%PDF-1.7\n" + b"0" * 3000),
            ("song.wav", b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0" + bytes(500)),
        ]
        for name, data in cases[: self.count(2, len(cases))]:
            self.add("wrong_extension", name, data, {"not_audio"}, f"not audio, named {name}")

    def hostile_clip_id(self) -> None:
        ids = [i for i in HOSTILE_CLIP_IDS if i]  # an empty id falls back to a default name
        contents: list[tuple[str, bytes, set[str]]] = [
            ("random.wav", bytes(range(7, 250)) * 20, {"not_audio"}),
            ("empty.mp3", b"", {"empty"}),
            ("short.wav", _encode("wav", self.music(0)[: RATE // 10]), {"too_short"}),
        ]
        for i in range(self.count(4, 2 * len(ids))):
            name, data, reasons = contents[i % len(contents)]
            raw = ids[i % len(ids)]
            self.add(
                "hostile_clip_id",
                name,
                data,
                reasons,
                f"sent as clip id {raw[:40]!r}",
                clip_id=raw.decode("utf-8", "surrogateescape"),
            )

    def hostile_filename(self) -> None:
        names = [
            b"\xff\xfe-not-utf8-\xe9.wav",
            b"-rf --help.wav",
            b"file:..%2f..%2fetc%2fpasswd.mp3",
            b"new\nline.flac",
            b"..wav",
            b" spaced $(touch pwned) `id`.ogg",
            b"semi;colon&amp|pipe.wav",
            b"quote\"'.m4a",
        ]
        for raw in names[: self.count(2, len(names))]:
            data = self.rng.integers(1, 255, 1500, dtype=np.uint8).tobytes()
            data = b"B" + data[1:]
            self.add(
                "hostile_filename",
                "",
                data,
                {"not_audio"},
                f"random bytes in a file named {raw!r}",
                filename=f"{len(self.items):03d}-".encode() + raw,
            )


def generate_bad_corpus(
    folder: Path | str,
    *,
    size: Size = "fast",
    seed: int = 0,
    kinds: Iterable[str] | None = None,
) -> list[BadItem]:
    """Write the bad corpus under ``<folder>/bad/``; the same seed gives the same files.

    ``fast``: one or a few of every kind (about 40 files); ``full``: at least 200. ``kinds``
    limits it to some of ``KINDS``. mp4 items need ffmpeg and are left out without it.
    """
    if size not in ("fast", "full"):
        raise ValueError(f"size must be 'fast' or 'full', not {size!r}")
    wanted = list(KINDS) if kinds is None else list(kinds)
    unknown = set(wanted) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    builder = _Builder(Path(folder), size, seed)
    for kind in wanted:
        getattr(builder, kind)()
    return builder.items


def good_items(
    folder: Path | str, n: int, *, seed: int = 0, seconds: float = BASE_SECONDS
) -> list[GoodItem]:
    """``n`` usable clips in ``<folder>/<genre>/``: synth music in every supported format, some
    under a misleading extension (an mp3 named .wav must still be answered)."""
    from genreops.data.synth import GENRES, render_clip

    root = Path(folder)
    layouts = [  # (real format, extension on disk, kind)
        ("wav", ".wav", "wav"),
        ("flac", ".flac", "flac"),
        ("ogg", ".ogg", "ogg"),
        ("mp3", ".mp3", "mp3"),
        ("mp4", ".m4a", "mp4"),
        ("mp3", ".wav", "mp3_named_wav"),
        ("flac", ".ogg", "flac_named_ogg"),
        ("mp4", ".mp3", "mp4_named_mp3"),
    ]
    if not _have_ffmpeg():
        layouts = [layout for layout in layouts if layout[0] != "mp4"]
    items = []
    for i in range(n):
        fmt, ext, kind = layouts[i % len(layouts)]
        genre = GENRES[i % len(GENRES)]
        y = render_clip(genre, seed * 10_000 + i, seconds)
        (root / genre).mkdir(parents=True, exist_ok=True)
        name = f"good-{i:03d}-{kind}{ext}"
        path = root / genre / name
        path.write_bytes(_encode(fmt, y))
        items.append(GoodItem(path, kind, f"{genre}/{name}", genre))
    return items
