"""The rules on words rather than on the contour's shape: the whole word's score and
reporting one spoken word once.

`WholeWordScore`: among the windows that hold the entire burst (ending between its end
and one window after its start, as far as heard, and after the audible tail of a word
accepted just before it), the keyword with the highest smoothed score is the word, if it
reaches word_score_ratio times its threshold. The window that fired may have seen only the
word's onset: "no" for "down", "off" for "on", "left" for the "last" of "last Tuesday".

`SameWord`: candidates whose peaks are within SAME_WORD_S, or the same keyword again in
one burst, are one word (judged once, the more confident guess kept); the same keyword is
never reported twice within the decider's refractory time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .contour import Contour
from .decision import NON_KEYWORDS, Decision, DecisionParams
from .verdicts import Burst, Reject, RuleId

if TYPE_CHECKING:
    from .command import CommandParams


@dataclass(frozen=True)
class Word:
    """A word judged already: where it was and which keywords it was taken for."""

    peak: int  # hop of the loudest point
    accepted: bool
    start: int = 0  # its burst's first and last hop
    end: int = -1
    keywords: frozenset[str] = frozenset()  # the keyword reported and the one that fired


class SameWord:
    """One spoken word is reported once. Keeps the words judged lately (`recent`) and the
    last report of each keyword."""

    def __init__(self, contour: Contour, refractory_samples: int) -> None:
        self._hops = contour.hops.same_word
        self.refractory = refractory_samples
        self.recent: deque[Word] = deque(maxlen=8)
        self._reported: dict[str, int] = {}  # keyword -> end_sample of its latest report

    def same(self, word: Word, other: Word, keyword: str) -> bool:
        """Is a candidate for `keyword` in burst `other` the word `word` again? Peaks close
        together, or the same keyword again inside the same burst (a word with two loud
        parts: the first candidate was judged, maybe corrected, on the whole burst, and a
        later candidate for that keyword in it is the same word again)."""
        if abs(word.peak - other.peak) < self._hops:
            return True
        overlap = word.start <= other.end and other.start <= word.end
        return overlap and keyword in word.keywords

    def judged_already(self, word: Word, keyword: str) -> Reject | None:
        """A later, second guess for a word judged before."""
        if not any(self.same(w, word, keyword) for w in self.recent):
            return None
        return self._reject(word, "this word was judged already")

    def repeats(self, word: Word, decision: Decision) -> Reject | None:
        """The same keyword was reported within the refractory time: the same word again (a
        correction landing on the word before), never a new command."""
        last = self._reported.get(decision.keyword)
        if last is None or abs(decision.end_sample - last) >= self.refractory:
            return None
        return self._reject(word, "the same keyword was reported within the refractory time")

    def more_confident(self, kept: Decision, other: Decision, fired: Decision) -> bool:
        """Two guesses for one word in the same hop: does `other` beat `kept`? (On a tie,
        the decider's own candidate `fired` beats a corrected one.)"""
        return kept.score < other.score or (kept.score == other.score and other is fired)

    def once(self, word: Word, kept: Decision, dropped: Decision) -> Reject:
        return self._reject(word, "this word is reported once" if kept.keyword == dropped.keyword
                            else "another keyword scored higher for this word")

    def reported(self, accepted: Iterable[tuple[Word, Decision]]) -> None:
        for word, d in accepted:
            self.recent.append(word)
            self._reported[d.keyword] = max(d.end_sample, self._reported.get(d.keyword, d.end_sample))

    @staticmethod
    def _reject(word: Word, text: str) -> Reject:
        return Reject(RuleId.SAME_WORD, Burst(word.peak, word.start, word.end), text)


class WholeWordScore:
    """The word judged as a whole from the decider's smoothed probabilities (kept per
    window, by the hop it ends with); without labels, no re-scoring."""

    def __init__(self, params: CommandParams, contour: Contour, labels: Sequence[str] | None,
                 decision: DecisionParams) -> None:
        self._ratio = params.word_score_ratio
        self._contour = contour
        self.labels = tuple(labels) if labels is not None else None
        # smoothed probabilities of the window ending at each hop (NaN: no inference there)
        self._probs = np.full((contour.size, len(self.labels) if self.labels else 0), np.nan, dtype=np.float32)
        self.retune(decision)

    def retune(self, decision: DecisionParams) -> None:
        if self.labels is not None:
            self._keyword_ids = np.array([k for k, label in enumerate(self.labels) if label not in NON_KEYWORDS
                                          and (decision.keywords is None or label in decision.keywords)], dtype=int)
            self._min_scores = np.array([decision.threshold_for(self.labels[k]) for k in self._keyword_ids])

    def forget(self, hop: int) -> None:
        """A new hop: no window ending with it was scored yet."""
        self._probs[hop % self._contour.size] = np.nan

    def add(self, hop: int, probabilities: np.ndarray) -> None:
        if self.labels is not None:
            self._probs[hop % self._contour.size] = probabilities

    def applies(self, burst: Burst, peaks: Iterable[int], words: Iterable[Word], same_word_hops: int) -> bool:
        """A burst that holds several words ("left up" said quickly) cannot be judged as one
        word: its candidates stand as the decider made them; nor can a burst that overlaps
        a word accepted before (words glued by a gap shorter than post_silence): its windows
        still hear that word."""
        if self.labels is None:
            return False
        if any(burst.start <= p <= burst.end and abs(p - burst.peak) >= same_word_hops for p in peaks):
            return False
        return not any(w.accepted and w.start <= burst.end and burst.start <= w.end for w in words)

    def clean_from(self, burst: Burst, recent: Iterable[Word]) -> int:
        """The first window (by its end hop) that holds all of the word and none of the
        word accepted just before it, nor that word's audible tail (any hop above the
        noise floor by speech_margin_db up to the word's start). Windows holding the end
        of "yes" and all of "no" say `go`; those starting after it say `no`. Without an
        accepted word within a window before it: the word's end (no wait). Never later
        than the last window holding the whole word."""
        c, window = self._contour, self._contour.hops.window
        last = burst.start + window - 1
        previous = [w.end for w in recent if w.accepted and burst.start - window <= w.end < burst.start]
        if not previous:
            return burst.end
        speech, oldest = c.speech_db(), c.oldest
        k = burst.start - 1
        while k > max(previous) and k >= oldest and c.level(k) < speech:
            k -= 1
        return min(last, max(burst.end, k + window))

    def rescore(self, burst: Burst, fired: Decision, recent: Iterable[Word]) -> Decision | None:
        """The keyword with the highest smoothed score over the windows that hold the
        entire burst, if it clears word_score_ratio of its threshold (None if none does);
        `fired` if it is that keyword or those windows have no probabilities."""
        c = self._contour
        a, b = self.clean_from(burst, recent), burst.start + c.hops.window - 1
        lo, hi = max(c.oldest, min(a, b)), min(c.now, max(a, b))
        if hi < lo:
            return fired
        hops = np.arange(lo, hi + 1) % c.size
        probs = self._probs[hops][:, self._keyword_ids]
        valid = ~np.isnan(probs[:, 0]) if len(self._keyword_ids) else np.zeros(len(hops), dtype=bool)
        if not valid.any():
            return fired
        hops, probs = hops[valid], probs[valid]
        best = probs.max(axis=0)
        j = int(np.argmax(best))
        if best[j] < self._min_scores[j] * self._ratio:
            return None
        at = int(np.argmax(probs[:, j]))  # the window where the word's keyword scored best
        assert self.labels is not None  # re-scoring happens only with labels (`applies`)
        keyword = self.labels[self._keyword_ids[j]]
        if keyword == fired.keyword:  # confirmed: report the window that fired, as plain mode does
            return fired
        return Decision(keyword, float(best[j]), int(c.ends[hops[at]]))  # corrected

    def rejection(self, burst: Burst) -> Reject:
        return Reject(RuleId.WORD_SCORE, burst, "no keyword scores {limit:g} x its threshold over the whole word",
                      limit=self._ratio)
