"""Where a command can be, from the levels alone: bursts of speech as they end.

`BurstScanner` follows the latest burst hop by hop (one comparison per hop) and, once the
gap after a burst is heard, judges every word a window ending inside its stretch of speech
can see with the shape rules. The event-driven scheduler (`pipeline`) runs the model only
around the bursts it returns. A word that must wait is judged again only from the hop at
which its verdict can change (`verdicts.Wait`).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

from .contour import CORE_DROP_DB, NOISE_FLOOR_BLOCKS, Contour
from .features import SILENCE_DBFS
from .rules import ShapeRules
from .verdicts import Accept, Burst, Wait

Span = tuple[int, int, int]  # (first hop of the stretch of speech it is part of, first hop, last hop)


@dataclass
class _Probe:
    """A burst whose following gap was heard, and the words of its stretch being judged."""

    hop: int  # its last hop
    start: int = 0  # the stretch's first hop (at the lowest threshold: the speech margin)
    open: list[tuple[int, int]] | None = None  # the words (latest, peak) not judged yet; None: not listed yet
    accepted: set[Span] = dataclasses.field(default_factory=set)
    shapes: dict[tuple[int, int], Burst] = dataclasses.field(default_factory=dict)  # bursts waiting for what follows
    waits: dict[tuple[int, int], Wait] = dataclasses.field(default_factory=dict)  # why a word waits


class BurstScanner:
    def __init__(self, contour: Contour, shapes: ShapeRules) -> None:
        self._contour = contour
        self._shapes = shapes
        self._peak = SILENCE_DBFS  # the loudest hop of the latest burst, and its last hop
        self.last = contour.first - contour.size
        # last hops of bursts whose following gap has been heard, to judge by `bursts()`;
        # bounded: a caller that never asks (a model run at every hop) keeps only a few
        self._probes: deque[_Probe] = deque(maxlen=16)
        self._found: deque[tuple[int, int]] = deque(maxlen=16)  # bursts `bursts()` returned lately
        self._probed: deque[int] = deque(maxlen=16)  # the last hops of the bursts probed lately
        # the loudest hop taken for quiet since the last rescan: once the speech level falls
        # to it, the floor it was judged by is gone (`observe`)
        self._loudest_quiet = SILENCE_DBFS
        # while the floor learns the room (its first NOISE_FLOOR_BLOCKS blocks); a gate made
        # mid-stream (a reload) never rescans: its first hop is no pause before a word
        learning = contour.floor.block_hops * NOISE_FLOOR_BLOCKS
        self._rescan_until = min(learning, contour.size) if contour.first == 0 else contour.first
        self._early: int | None = None  # the last hop of a burst that may be ending, for `ending_burst()`

    def observe(self, k: int, level: float) -> None:
        """Hop `k`'s smoothed level: a burst goes on while hops within CORE_DROP_DB of its
        peak follow each other with gaps shorter than post_silence. If the noise floor has
        fallen so far that a hop kept and taken for quiet is speech now, the levels kept
        are scanned again (`_rescan`), while the floor learns the room at the stream's start."""
        speech = self._contour.speech_db()
        if speech <= self._loudest_quiet and k < self._rescan_until:
            self._rescan(k, speech)
            return
        self._step(k, level, speech)
        if k - self.last == self._contour.hops.early:
            self._early = self.last

    def _step(self, k: int, level: float, speech: float) -> None:
        h = self._contour.hops
        if level >= speech:
            if k - self.last > h.gap:
                self._peak, self.last = level, k
            elif level >= self._peak - CORE_DROP_DB:
                self._peak, self.last = max(self._peak, level), k
        elif level > self._loudest_quiet:
            self._loudest_quiet = level
        if k - self.last == h.gap and self.last not in self._probed:
            self._probed.append(self.last)
            self._probes.append(_Probe(self.last))

    def _rescan(self, now: int, speech: float) -> None:
        """Follow the bursts again over every hop kept, at the speech level of the floor
        heard now, as the shape rules judge them. A stream that starts with a word learns
        its floor only from the word's own decay and the pause after it: until then, the
        floor is the word, and none of it counted as speech. The bursts this reveals are
        probed like any other (those probed already are not probed twice). Only in the
        stream's first NOISE_FLOOR_BLOCKS blocks (1.5 s), while the floor learns the room:
        later, a rescan at every small fall of the floor in running speech would cost a
        few hundred steps, and screens of bursts the every-hop path rejects anyway."""
        c = self._contour
        self._peak, self._loudest_quiet, self.last = SILENCE_DBFS, SILENCE_DBFS, c.first - c.size
        for k in range(c.first, now + 1):
            self._step(k, c.level(k), speech)
        if now - self.last == c.hops.early:
            self._early = self.last

    def bursts(self, final: bool = False) -> list[Span]:
        """Bursts of speech that the shape rules take for a command, each as soon as it is
        known. Each stretch ended by a gap is judged for every word a window ending inside
        it can see (a window ending mid-stretch can see another word than one ending after
        it: the "left" of a quick "left up"). With `final`, the stream's end counts as silence."""
        c = self._contour
        if final and c.heard > c.first and self.last >= c.first and c.now - self.last < c.hops.gap:
            self._probes.append(_Probe(self.last))
        if not self._probes:  # silence, noise, running speech: nothing to judge at most hops
            return []
        found: set[Span] = set()
        waiting: list[_Probe] = []
        oldest = c.heard - c.size
        speech = c.speech_db()
        for probe in self._probes:
            if probe.hop < oldest:
                continue
            if probe.open is None:  # the words a window ending inside the stretch can see
                # (its last hop may be below the speech margin now: the noise floor moves)
                last = next((h for h in range(probe.hop, max(c.first, oldest, probe.hop - c.hops.window), -1)
                             if c.level(h) >= speech), probe.hop)
                probe.start, _ = c.burst_start(last, speech, max(c.first, oldest))
                probe.open = list(dict.fromkeys(c.latest_words(
                    [h for h in range(probe.start, probe.hop + 1) if c.level(h) >= speech])))
            probe.open = [word for word in probe.open if not self._judge_word(probe, word, final, speech)]
            found.update(probe.accepted)
            if probe.open and c.now - probe.hop < c.hops.window:
                waiting.append(probe)
        self._probes = deque(waiting, maxlen=self._probes.maxlen)
        seen = set(self._found)  # a burst's tail can end a second stretch holding the same words
        new = sorted(b for b in found if (b[1], b[2]) not in seen)
        self._found.extend((b[1], b[2]) for b in new)
        return new

    def _judge_word(self, probe: _Probe, word: tuple[int, int], final: bool, speech: float) -> bool:
        """Judge one word of `probe` if its verdict can have changed; True once it has one."""
        if not final and not self.judge_again(probe.waits.get(word), speech):
            return False
        shape = probe.shapes.get(word)
        if shape is not None:  # it waits only for what follows it
            verdict = self._shapes.after(shape, final)
        else:
            verdict = self._shapes.verdict(probe.hop, final, word)
        if isinstance(verdict, Wait):
            if verdict.shape is not None:
                probe.shapes[word] = verdict.shape
            probe.waits[word] = verdict
            return False
        if isinstance(verdict, Accept):
            b = verdict.burst
            probe.accepted.add((min(probe.start, b.start), b.start, b.end))
        return True

    def judge_again(self, wait: Wait | None, speech: float) -> bool:
        """Can a verdict that was `wait` be something else now?"""
        if wait is None:
            return True
        return self._contour.now >= wait.until or (wait.speech_db is not None and wait.speech_db != speech)

    def ending_burst(self) -> Span | None:
        """A burst that may be ending (half of post_silence of quiet after it) and that no
        rule rejects from what is heard so far, as `bursts()` gives them; once per burst.
        Only the word a window ending with it sees is judged: this is a hint, to start
        the model early, not a verdict."""
        if self._early is None:
            return None
        c = self._contour
        hop, self._early = self._early, None
        oldest = c.oldest
        if hop < oldest:
            return None
        verdict = self._shapes.verdict(hop, False, gap=c.hops.early)
        if not isinstance(verdict, Accept):
            return None
        stretch, _ = c.burst_start(hop, c.speech_db(), oldest)
        return min(stretch, verdict.burst.start), verdict.burst.start, verdict.burst.end
