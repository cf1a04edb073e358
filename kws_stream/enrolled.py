"""Words a user enrolled (`kws-stream enroll`), spotted beside the model's keywords.

A user's word is judged only where a command can be: on the command-shaped bursts of
speech (a short burst with a pause around it) that the command gate finds from the hop
levels alone, each cut once with a margin of audio around it (`wordbursts`). `WordJudge`
scores each such burst against every enrolled word the allow-list lets through, and reports
the best word at or above its threshold like a keyword. The model's keywords do not wait for
it and are judged as before; with no word enrolled (or none allowed) the pipeline has no
judge at all.

`WordSet` is what a process loaded (the words and the matcher that scores them); it is part
of `PipelineParams`, so a reload hands new words to a running stream as it hands new
thresholds. `WordLoader` loads it at start and on each reload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from .command import CommandParams
from .decision import DecisionParams
from .errors import KwsError
from .features import FeatureParams
from .wordbursts import BurstCutter, Cut
from .wordstore import WordStore

if TYPE_CHECKING:
    from .enrol import EnrolledWord, WordMatcher

log = logging.getLogger(__name__)

SETTLE_S = 0.2
"""How long after the first span of a stretch its others are gathered (on the custom-words
recordings, the last came at most 0.1 s later for one word, and its end 0.22 s later at most;
the margin after the burst is heard besides)."""

Audio = Callable[[int, int], np.ndarray | None]
"""Stream samples [start, end) as far as still kept (`FeatureWindow.audio`)."""


@dataclass(frozen=True, eq=False)
class WordSet:
    """The enrolled words a process loaded and the matcher that scores them. `unreadable`
    names word files that exist but could not be used (warned about when loaded): the
    config may still name them. Equal when the same words are enrolled (by their bytes)."""

    words: tuple[EnrolledWord, ...] = ()
    matcher: WordMatcher | None = None
    unreadable: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.words and self.matcher is None:
            raise ValueError("enrolled words need the matcher that scores them")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.words)

    @property
    def known(self) -> tuple[str, ...]:
        """Every enrolled name, usable or not: what `[detection]` may name besides keywords."""
        return self.names + self.unreadable

    @cached_property
    def _key(self) -> tuple[Any, ...]:
        return tuple((w.name, w.to_bytes()) for w in self.words), self.unreadable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordSet) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __bool__(self) -> bool:
        return bool(self.words)


def any_allowed(words: WordSet, decision: DecisionParams) -> bool:
    """Is an enrolled word to be judged (enrolled and not left out by the allow-list)?"""
    return any(decision.keywords is None or name in decision.keywords for name in words.names)


def model_decision(decision: DecisionParams, words: WordSet) -> DecisionParams:
    """`decision` without the enrolled names, for the model's decider (which knows only
    the model's labels). An allow-list of words only allows no keyword."""
    names = set(words.known)
    if not names or not (set(decision.keywords or ()) | set(decision.thresholds)) & names:
        return decision
    keywords = None if decision.keywords is None else frozenset(decision.keywords - names)
    thresholds = {k: v for k, v in decision.thresholds.items() if k not in names}
    return replace(decision, keywords=keywords, thresholds=thresholds)


class WordLoader:
    """The enrolled words of a store, loaded at start and again at each reload; the matcher
    is built the first time a word exists and kept for the process."""

    def __init__(self, store: WordStore | None = None, matcher: Callable[[], WordMatcher] | None = None) -> None:
        self.store = store or WordStore()
        self._load_matcher = matcher
        self._matcher: WordMatcher | None = None

    def matcher(self) -> WordMatcher:
        """The process's matcher (a KwsError, one line, if a dependency is missing)."""
        if self._matcher is None:
            if self._load_matcher is None:
                from .enrol import load_matcher

                self._load_matcher = load_matcher
            self._matcher = self._load_matcher()
        return self._matcher

    def load(self) -> WordSet:
        """The words that can be used; one warning per file that cannot (the rest load)."""
        words, unreadable = self.store.load()
        for u in unreadable:
            log.warning("event=word_unreadable word=%s error=%r action=skipped", u.name, u.reason)
        skipped = tuple(u.name for u in unreadable)
        if not words:
            return WordSet(unreadable=skipped)
        try:
            matcher = self.matcher()
        except KwsError as exc:
            log.warning("event=words_unavailable words=%s error=%r action=keywords_only",
                        ",".join(w.name for w in words), str(exc))
            return WordSet(unreadable=skipped + tuple(w.name for w in words))
        log.info("event=words_loaded words=%s dir=%s", ",".join(w.name for w in words), self.store.directory)
        return WordSet(tuple(words), matcher, skipped)


@dataclass(frozen=True)
class WordScore:
    """One burst scored against one word; `reported` when it is the word the burst was."""

    word: str
    score: float
    threshold: float
    start_sample: int
    end_sample: int
    reported: bool = False


class WordJudge:
    """Hop levels in, enrolled words out: one per stream, not thread-safe.

    `hop()` returns the words reported now: a burst is scored once its audio and the margin
    after it are heard (`wordbursts.BurstCutter`). `scores` collects every score
    (`detect --explain`) for the caller to take and clear.
    """

    def __init__(self, words: WordSet, decision: DecisionParams, command: CommandParams, audio: Audio,
                 features: FeatureParams = FeatureParams(), first_hop: int = 0) -> None:
        self._audio = audio
        self._rate = features.sample_rate
        self._cutter = BurstCutter(command, features, first_hop)
        self._last_reported: dict[str, int] = {}  # word -> end sample of its last report
        self.scores: list[WordScore] = []
        self.bursts = 0
        """Bursts scored so far."""
        self.retune(words, decision)

    def retune(self, words: WordSet, decision: DecisionParams) -> None:
        """New words, thresholds, allow-list or refractory: the levels heard and the bursts
        waiting to be scored are kept."""
        allowed = decision.keywords
        self._words = [w for w in words.words if allowed is None or w.name in allowed]
        self._thresholds = {w.name: decision.thresholds.get(w.name, w.threshold) for w in self._words}
        self._matcher = words.matcher
        self._refractory = round(decision.refractory * self._rate)

    def hop(self, level_db: float, end_sample: int) -> list[WordScore]:
        """The next hop's level; `end_sample` is the stream position of its end."""
        return self._score_all(self._cutter.hop(level_db, end_sample))

    def finish(self, heard: int) -> list[WordScore]:
        """End of stream (`heard` samples): it counts as the silence after the last burst."""
        return self._score_all(self._cutter.finish(heard))

    def _score_all(self, cuts: list[Cut]) -> list[WordScore]:
        return [best for cut in cuts if (best := self._score(cut)) is not None] if cuts else []

    def _score(self, cut: Cut) -> WordScore | None:
        audio = self._audio(cut.start, cut.end)
        start, end = cut.word_start, cut.word_end
        if audio is None or not len(audio) or not self._words or self._matcher is None:
            return None
        self.bursts += 1
        scores = [WordScore(w.name, score, self._thresholds[w.name], start, end)
                  for w, score in zip(self._words, self._matcher.scores(self._words, audio), strict=True)]
        best: WordScore | None = None
        for s in scores:
            last = self._last_reported.get(s.word)
            if s.score >= s.threshold and (last is None or end - last >= self._refractory) \
                    and (best is None or s.score / s.threshold > best.score / best.threshold):
                best = s
        if best is not None:
            best = replace(best, reported=True)
            self._last_reported[best.word] = end
        self.scores.extend(best if best is not None and s.word == best.word else s for s in scores)
        return best
