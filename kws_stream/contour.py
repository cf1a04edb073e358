"""The loudness contour command mode judges on: one smoothed level per 20 ms hop.

`NoiseFloor` smooths each hop's level and follows the room's noise floor. `Contour` keeps
the last `HISTORY_S` of levels (hops numbered from the stream's start) and the scans over
them that the rules need: where a burst of speech ends (`scan_forward`) and starts
(`burst_start`), and which word a window holds (`latest_words`). `GateHops` is
`CommandParams` and the stream geometry counted in hops.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .features import MICRONET, SILENCE_DBFS, StreamGeometry

if TYPE_CHECKING:
    from .command import CommandParams

MIN_NOISE_FLOOR_DBFS = -70.0  # never trust a floor below this: after digital silence any click is "speech"
DIGITAL_SILENCE_DBFS = -90.0  # no microphone is this quiet: a muted/gated source, not the room's floor
NOISE_FLOOR_BLOCK_S = 0.5  # minimum statistics: the floor is the quietest smoothed level of the last
NOISE_FLOOR_BLOCKS = 3  # ... 3-4 blocks of 0.5 s, so it follows the room up within about 1.5-2 s
LEVEL_SMOOTHING_HOPS = 3  # levels are the mean power of the last 60 ms: real room noise swings
#                           +-5 dB from hop to hop, its 60 ms mean much less
SMOOTHING_TAIL_HOPS = LEVEL_SMOOTHING_HOPS - 1  # ... so a burst's smoothed levels outlast its sound
#                     by 2 hops (the last loud hop is 1.8 and 4.8 dB down in them): a 1.00 s word
#                     measures 1.04 s, and max_word counts those hops on top (GateHops.longest)
LATEST_WORD_DB = 20.0  # the word that fired is the *latest* speech in the window: the last hop
#                       within 20 dB of the window's maximum (a louder word at the start of the
#                       window is its predecessor; speech still going on is the word) ...
PEAK_SEARCH_S = 0.3  # ... and the word's peak is the loudest hop in the 0.3 s up to it
SAME_WORD_S = 0.3  # candidates whose peaks are closer than this are one word (keep the best)
CORE_DROP_DB = 20.0  # a hop this far below the word's peak is not part of the word
HISTORY_S = 4.0  # loudness contour kept: > window (1 s) + max_word + pre_silence + post_silence
FORWARD, BACKWARD = "forward", "backward"  # the two contour scans (`Contour.scans_now`)


class NoiseFloor:
    """Smoothed hop levels and an adaptive noise floor (minimum statistics).

    The floor is the quietest smoothed level over the last ~2 s, kept in 0.5 s blocks so
    an update is O(1). It follows the room down at once and up within a couple of
    seconds, and speech does not raise it (speech always has dips between syllables).
    """

    def __init__(self, hop_seconds: float = MICRONET.hop_seconds) -> None:
        self.block_hops = max(1, round(NOISE_FLOOR_BLOCK_S / hop_seconds))
        self._blocks: deque[float] = deque(maxlen=NOISE_FLOOR_BLOCKS)
        self._blocks_min = math.inf  # min(self._blocks): it changes only when a block ends
        self._block_min = math.inf
        self._block_count = 0
        self._powers: deque[float] = deque(maxlen=LEVEL_SMOOTHING_HOPS)
        self.floor_db = MIN_NOISE_FLOOR_DBFS

    def update(self, level_db: float) -> float:
        """Feed one hop's level (dBFS); returns its smoothed level (updates `floor_db`).
        Called at every hop: plain comparisons instead of min()/max() calls."""
        powers = self._powers
        powers.append(10.0 ** (level_db / 10.0))
        level = 10.0 * math.log10(max(sum(powers) / len(powers), 1e-10))
        if DIGITAL_SILENCE_DBFS < level < self._block_min:
            self._block_min = level
        self._block_count += 1
        if self._block_count >= self.block_hops:
            # a block of digital silence says nothing about the room: the floor falls
            # to the lowest trusted one instead of being set by the next word itself
            self._blocks.append(self._block_min if self._block_min < math.inf else MIN_NOISE_FLOOR_DBFS)
            self._blocks_min = min(self._blocks)
            self._block_min = math.inf
            self._block_count = 0
        floor = self._block_min if self._block_min < self._blocks_min else self._blocks_min
        self.floor_db = floor if floor > MIN_NOISE_FLOOR_DBFS else MIN_NOISE_FLOOR_DBFS
        return level


@dataclass(frozen=True)
class GateHops:
    """`CommandParams` and the stream geometry in hops of the stream."""

    seconds: float  # one hop
    window: int  # hops one model window spans
    history: int  # hops of levels kept (HISTORY_S)
    search: int  # PEAK_SEARCH_S
    same_word: int  # SAME_WORD_S
    gap: int  # post_silence: quiet that ends a burst
    pre: int  # pre_silence
    longest: int  # max_word, as the smoothed levels measure it (+ the smoothing's tail)
    after: int  # after_silence (at least post_silence)
    early: int  # quiet after which a burst may be ending (half of post_silence)

    @classmethod
    def of(cls, params: CommandParams, geometry: StreamGeometry = MICRONET) -> GateHops:
        hop_s = geometry.hop_seconds
        gap = max(1, int(round(params.post_silence / hop_s)))
        return cls(hop_s, geometry.window_hops, int(round(HISTORY_S / hop_s)), int(round(PEAK_SEARCH_S / hop_s)),
                   int(round(SAME_WORD_S / hop_s)), gap, int(round(params.pre_silence / hop_s)),
                   int(round(params.max_word / hop_s)) + SMOOTHING_TAIL_HOPS,
                   max(gap, int(round(params.after_silence / hop_s))),
                   max(1, gap // 2))


class Contour:
    """The smoothed levels of the last `hops.history` hops, the noise floor, and the
    memoised scans over them. Hop k (counted from the stream's start) is stored at
    k % history; `first` is the first hop this contour heard (a gate built mid-stream
    counts it as the stream's start)."""

    def __init__(self, hops: GateHops, speech_margin_db: float, first: int = 0) -> None:
        self.hops = hops
        self.size = hops.history
        self.first = first
        self.heard = first  # hops heard: the newest is heard - 1
        self.floor = NoiseFloor(hops.seconds)
        self._margin = speech_margin_db
        self.levels = np.full(self.size, SILENCE_DBFS)
        self.lv = [SILENCE_DBFS] * self.size  # the same as a list: the contour scans index it hop by hop
        self.ends = np.zeros(self.size, dtype=np.int64)  # stream position at the end of each hop
        self._scans: dict[tuple[str, int, float, int], tuple[int, int]] = {}  # see `scans_now`
        self._scans_at = -1  # the hop count they were done at

    def observe(self, level_db: float, end_sample: int) -> float:
        """Record the next hop's level; returns it smoothed."""
        slot = self.heard % self.size
        level = self.floor.update(level_db)
        self.levels[slot] = level
        self.lv[slot] = level
        self.ends[slot] = end_sample
        self.heard += 1
        return level

    @property
    def now(self) -> int:
        """The newest hop heard."""
        return self.heard - 1

    @property
    def oldest(self) -> int:
        """The oldest hop whose level is kept."""
        return max(self.first, self.heard - self.size)

    def speech_db(self) -> float:
        """The level from which a hop counts as speech: the noise floor + speech_margin_db."""
        return self.floor.floor_db + self._margin

    def level(self, k: int) -> float:
        return self.lv[k % self.size]

    def overwritten(self, hop: int) -> int:
        """The first newest hop at which hop `hop`'s level is no longer kept: a wait that
        read it must be judged again then (it would read another hop's level)."""
        return hop + self.size

    def burst_start(self, hop: int, threshold: float, oldest: int) -> tuple[int, int]:
        """Walk back from speech hop `hop` across gaps shorter than post_silence.

        Returns the burst's first hop and the last speech hop before the gap that ends
        it (`oldest - 1` if the history ran out first). Memoised like `scan_forward`."""
        scans = self.scans_now()
        key = (BACKWARD, hop, threshold, oldest)
        found = scans.get(key)
        if found is None:
            found = scans[key] = self._scan_back(hop, threshold, oldest)
        return found

    def _scan_back(self, hop: int, threshold: float, oldest: int) -> tuple[int, int]:
        start, run, k = hop, 0, hop - 1
        lv, size, gap = self.lv, self.size, self.hops.gap
        while k >= oldest:
            if lv[k % size] >= threshold:
                if run >= gap:
                    return start, k
                start, run = k, 0
            else:
                run += 1
            k -= 1
        return start, oldest - 1

    def scan_forward(self, peak: int, threshold: float, gap: int) -> tuple[int, int]:
        """From speech hop `peak` forward, as far as heard: the burst's last hop (hops at
        or above `threshold` separated by fewer than `gap` quiet hops) and the quiet hops
        heard after it (the burst has ended once they reach `gap`). It stops at the first
        hop that makes the burst max_word long or longer.

        Memoised for the newest hop (see `scans_now`): most words of a stretch of running
        speech are this scan to max_word from a peak they share."""
        now = self.heard - 1
        scans = self.scans_now()
        key = (FORWARD, peak, threshold, gap)
        found = scans.get(key)
        if found is None:
            end, run, k = peak, 0, peak + 1
            lv, size, longest = self.lv, self.size, peak + self.hops.longest
            while k <= now and run < gap:
                if lv[k % size] >= threshold:
                    end, run = k, 0
                    if end >= longest:
                        break
                else:
                    run += 1
                k += 1
            found = scans[key] = end, run
        return found

    def scans_now(self) -> dict[tuple[str, int, float, int], tuple[int, int]]:
        """The contour scans done at the newest hop, by their arguments. A scan reads only
        the levels heard (which change only with the next hop), and `bursts()` judges every
        word of a stretch at once: they share peaks, and so bursts and pauses before them."""
        if self._scans_at != self.heard:
            self._scans.clear()
            self._scans_at = self.heard
        return self._scans

    def latest_words(self, hops: Sequence[int]) -> list[tuple[int, int]]:
        """In the window ending at each of `hops` (ascending, in the history), the word that
        fired: its latest audible hop (the last within LATEST_WORD_DB of the window's loudest)
        and its peak (the first loudest hop in PEAK_SEARCH_S up to it). One pass: the windows
        are rows of one array (`bursts()` asks for every speech hop of a stretch). Hops
        before the history's oldest are -inf: never audible, never the loudest."""
        if not len(hops):
            return []
        ends = np.asarray(hops, dtype=np.int64)
        w, reach = self.hops.window, self.hops.search
        lo = max(self.oldest, int(ends[0]) - w + 1)
        # padded[i + w - 1] is hop lo + i, so the window ending at hop h is padded[h - lo:][:w]
        padded = np.concatenate((np.full(w - 1, -np.inf), self.levels[np.arange(lo, int(ends[-1]) + 1) % self.size]))
        windows = padded[(ends - lo)[:, np.newaxis] + np.arange(w)]
        cut = np.maximum(windows.max(axis=1) - LATEST_WORD_DB, self.speech_db())
        audible = windows >= cut[:, np.newaxis]
        last = w - 1 - np.argmax(audible[:, ::-1], axis=1)  # the last audible column of each row
        latest = np.where(audible.any(axis=1), ends - (w - 1) + last, ends)
        # the peak: the first loudest of hops latest - reach .. latest that are in the window
        from_hop = (latest - reach)[:, np.newaxis] + np.arange(reach + 1)
        around = np.where(from_hop >= (ends - w + 1)[:, np.newaxis], padded[from_hop - lo + w - 1], -np.inf)
        peaks = latest - reach + np.argmax(around, axis=1)
        return list(zip(latest.tolist(), peaks.tolist()))

    def window_levels(self, hop: int) -> tuple[int, np.ndarray]:
        """The first hop kept of the window ending at `hop`, and the levels from it to `hop`."""
        first = max(self.oldest, hop - self.hops.window + 1)
        return first, self.levels[np.arange(first, hop + 1) % self.size]
