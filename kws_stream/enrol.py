"""PLACEHOLDER matcher for enrolled words (issue 23): replaced at merge by the measured one.

Only the interface is meant to last (`BURST_MARGIN_S`, `EnrolError`, `check_take`,
`EnrolledWord`, `WordMatcher`, `load_matcher`); the plumbing around it (`enrolled`,
`wordstore`, the CLI) is built and tested against it. How it matches (Raven's way, kept
small): each take's speech hops as mean-and-variance-normalised MFCC frames (the exact
MicroNet front end), compared by dynamic time warping; the score is exp(-distance), and a
word's threshold comes from how far its own takes are from each other.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import KwsError
from .features import MICRONET, FeatureParams, MfccExtractor

BURST_MARGIN_S = 0.1
"""Audio the caller adds before and after a burst's hops when it scores one."""

_MAGIC = b"KWSW"
_VERSION = 0  # the placeholder's own format: the real matcher's files are another version
_SPEECH_DROP_DB = 30.0  # hops this far below the loudest are not the word
_MIN_PEAK_DBFS = -45.0
_CLIP = 32767 - 16
_MAX_CLIPPED = 0.001  # fraction of samples at full scale
_GAP_S = 0.3  # a quiet gap this long between two stretches of speech makes them two words
_THRESHOLD_SLACK = 1.0  # the threshold distance: the takes' largest nearest-take distance, times this


class EnrolError(KwsError):
    """A take that cannot be enrolled, or a word file that cannot be read: one line."""

    exit_code = 2


def _hop_levels(audio: np.ndarray) -> np.ndarray:
    hop = MICRONET.hop_samples
    n = len(audio) // hop
    x = audio[: n * hop].astype(np.float64).reshape(n, hop)
    power = np.maximum((x * x).mean(axis=1), 1e-10)
    return 10.0 * np.log10(power / 32768.0 ** 2)


def _speech_runs(levels: np.ndarray) -> list[tuple[int, int]]:
    """Stretches of hops within _SPEECH_DROP_DB of the loudest, joined across gaps < _GAP_S."""
    speech = np.flatnonzero(levels >= levels.max() - _SPEECH_DROP_DB)
    gap = MICRONET.hops(_GAP_S)
    runs: list[tuple[int, int]] = []
    for k in speech:
        if runs and k - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], int(k))
        else:
            runs.append((int(k), int(k)))
    return runs


def check_take(audio: np.ndarray) -> str | None:
    """Why a take (16 kHz int16 mono) cannot be enrolled, or None."""
    audio = np.asarray(audio, dtype=np.int16).reshape(-1)
    if len(audio) < MICRONET.window_samples // 4:
        return f"only {len(audio) / MICRONET.sample_rate:.2f} s long: record the whole word with a pause around it"
    clipped = float(np.mean(np.abs(audio.astype(np.int32)) >= _CLIP))
    if clipped > _MAX_CLIPPED:
        return f"clipped ({clipped:.1%} of samples at full scale): speak further away or lower the input gain"
    levels = _hop_levels(audio)
    if levels.max() < _MIN_PEAK_DBFS:
        return f"too quiet (loudest 20 ms at {levels.max():.0f} dBFS, needs {_MIN_PEAK_DBFS:.0f}): speak closer or louder"
    runs = _speech_runs(levels)
    if len(runs) > 1:
        return f"holds {len(runs)} separate bursts of speech, not one word: say the word once, alone"
    return None


def _features(audio: np.ndarray, extractor: MfccExtractor) -> np.ndarray:
    """The speech hops' MFCC frames, each coefficient normalised to mean 0 and variance 1."""
    audio = np.asarray(audio, dtype=np.int16).reshape(-1)
    p: FeatureParams = extractor.params
    levels = _hop_levels(audio)
    if len(levels) < 2:
        return np.zeros((1, p.num_mfcc))
    runs = _speech_runs(levels)
    first, last = runs[0][0], runs[-1][1]
    last = min(last, (len(audio) - p.frame_length) // p.frame_step)
    first = min(first, last)
    starts = np.arange(first, last + 1) * p.frame_step
    frames = extractor.frames(audio[starts[:, np.newaxis] + np.arange(p.frame_length)])
    return (frames - frames.mean(axis=0)) / (frames.std(axis=0) + 1e-6)


def _dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-step Euclidean distance along the best warping path."""
    cost = np.sqrt(((a[:, np.newaxis, :] - b[np.newaxis, :, :]) ** 2).sum(axis=2))
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row, above = acc[i], acc[i - 1]
        diag = np.minimum(above[:-1], above[1:]) + cost[i - 1]  # from (i-1, j-1) or (i-1, j)
        for j in range(1, m + 1):
            row[j] = min(diag[j - 1], row[j - 1] + cost[i - 1, j - 1])
    return float(acc[n, m] / (n + m))


@dataclass(frozen=True, eq=False)
class EnrolledWord:
    """A word and its templates (normalised MFCC frames of each take)."""

    name: str
    threshold: float
    templates: tuple[np.ndarray, ...] = ()

    def to_bytes(self) -> bytes:
        name = self.name.encode()
        parts = [_MAGIC, struct.pack("<BHdH", _VERSION, len(name), self.threshold, len(self.templates)), name]
        for t in self.templates:
            parts += [struct.pack("<HH", *t.shape), t.astype("<f4").tobytes()]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> EnrolledWord:
        try:
            if data[:4] != _MAGIC:
                raise ValueError("not an enrolled-word file")
            version, size, threshold, count = struct.unpack_from("<BHdH", data, 4)
            if version != _VERSION:
                raise ValueError(f"format version {version}, this kws-stream reads {_VERSION}")
            pos = 4 + struct.calcsize("<BHdH")
            name = data[pos:pos + size].decode()
            pos += size
            templates = []
            for _ in range(count):
                rows, cols = struct.unpack_from("<HH", data, pos)
                pos += 4
                end = pos + rows * cols * 4
                if end > len(data):
                    raise ValueError("truncated")
                templates.append(np.frombuffer(data[pos:end], dtype="<f4").reshape(rows, cols).astype(np.float64))
                pos = end
            if pos != len(data) or not templates or not 0 < threshold <= 1:
                raise ValueError("inconsistent contents")
        except (ValueError, struct.error, UnicodeDecodeError) as exc:
            raise EnrolError(f"not a readable enrolled word ({exc})") from None
        return cls(name, threshold, tuple(templates))


class WordMatcher:
    """Enrols words and scores bursts against them; one per process."""

    def __init__(self) -> None:
        self._extractor = MfccExtractor()

    def enrol(self, name: str, takes: Sequence[np.ndarray]) -> EnrolledWord:
        for k, take in enumerate(takes, 1):
            reason = check_take(take)
            if reason is not None:
                raise EnrolError(f"take {k}: {reason}")
        templates = tuple(_features(t, self._extractor) for t in takes)
        nearest = [min(_dtw(a, b) for j, b in enumerate(templates) if j != i) for i, a in enumerate(templates)]
        threshold = math.exp(-max(nearest) * _THRESHOLD_SLACK)
        return EnrolledWord(name, threshold, templates)

    def score(self, word: EnrolledWord, burst: np.ndarray) -> float:
        if len(burst) < MICRONET.frame_samples + MICRONET.hop_samples:
            return 0.0
        features = _features(burst, self._extractor)
        return math.exp(-min(_dtw(features, t) for t in word.templates))


def load_matcher() -> WordMatcher:
    return WordMatcher()
