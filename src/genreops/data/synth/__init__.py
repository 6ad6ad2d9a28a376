"""A deterministic stand-in for GTZAN: ten genres of synthetic music, rendered from a seed.

Real audio cannot be downloaded everywhere genreops runs, so demos, tests and benchmarks render
their corpus. Each genre has its own tempo range, drum pattern, instruments, harmony and
dynamics (four-on-the-floor disco, one-drop reggae, swung ride and walking bass in jazz, a
12-bar dominant-seventh shuffle in blues, ...); every clip draws its key, tempo, instrument mix,
levels and pattern variants from its own seeded generator, and a share of clips borrow elements
from a neighbouring genre, so a good classifier does well but not perfectly.

``drift=True`` renders the same music (same seed, same notes) as if recorded under other
conditions: band-limited like a phone or a cheap microphone, slightly slowed (pitch and tempo),
with background noise and hum, a room reverb and a lower level. Feature distributions move
clearly, which is what the drift gate is tested against.

Determinism: a clip is a pure function of ``(genre, seed, seconds, drift)``; ``render_corpus``
derives each clip's seed from ``(corpus seed, clip index)`` with ``numpy.random.SeedSequence``,
so files are bit-identical across runs, worker counts and rendering order (with the same numpy
and scipy builds: vectorised math may differ in the last bit between CPUs).

Speed: everything is vectorised per note or per track (harmonics by recursion, drum one-shots
rendered once per clip, repeated notes cached); a 30 s clip takes about 0.2 s on one core.
Separability and drift figures live in ``bench/RESULTS.md`` (``bench/synth.py``).

Layout, bottom up: ``dsp`` (rate, filters, oscillators, envelopes), ``instruments`` (pitched
note synths), ``drums`` (one-shots), ``arrangement`` (harmony, one clip's tempo grid and
parts, lead instruments), ``mixing`` (mix bus, master, the drift recording chain),
``styles`` (the ten genre arrangements and their tempo/borrowing tables), ``render`` (one
clip) and ``corpus`` (a corpus on disk with its manifest).
"""

from genreops.data.audio import SAMPLE_RATE
from genreops.data.genres import GENRES
from genreops.data.synth.corpus import GENERATOR_VERSION, MANIFEST_NAME, render_corpus
from genreops.data.synth.render import clip_seed, render_clip

__all__ = [
    "GENERATOR_VERSION",
    "GENRES",
    "MANIFEST_NAME",
    "SAMPLE_RATE",
    "clip_seed",
    "render_clip",
    "render_corpus",
]
