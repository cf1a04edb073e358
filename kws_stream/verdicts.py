"""What command mode's rules say about a burst of speech: accept, reject (which rule and
what it measured), or wait until a later hop. Typed, so that `--explain`, the benchmarks
and the tests read the rule id, never the text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar


class RuleId(StrEnum):
    """The rule that rejected a candidate, named by the `[command]` setting that tunes it."""

    NO_SPEECH = "speech_margin_db"  # nothing above the noise floor by speech_margin_db
    MAX_WORD = "max_word"  # the burst is too long for a command
    PRE_SILENCE = "pre_silence"  # no pause before it (nor a command just before it)
    MIN_SNR = "min_snr_db"  # its peak is too close to the noise floor
    AFTER_SILENCE = "after_silence"  # running speech follows it
    WORD_SCORE = "word_score_ratio"  # the whole word does not score as a keyword
    SAME_WORD = "same_word"  # this word was judged or reported already
    HISTORY = "history"  # its window's levels are no longer kept
    LATE = "late_window"  # its window holds only the word's end (`CommandGate.last_window`)
    JUDGE = "judge"  # the second judge (`judge`) disagreed
    EXTRA = "extra"  # a rule added by composition (`CommandGate(rules=...)`: an experiment's)


@dataclass(frozen=True)
class Burst:
    """A burst of speech as the rules located it, in hops from the stream's start."""

    peak: int  # its loudest hop
    start: int  # its first and last hop
    end: int
    threshold: float = 0.0  # the level that counted as this burst's speech
    row_after: int = -1  # admitted as the next command of a row: the first hop of the short
    #                      burst before it (which must then be, or follow, a command)


@dataclass(frozen=True)
class Accept:
    burst: Burst
    provisional: bool = False  # judged before post_silence was heard (a hint: `ending_burst`)
    accepted: ClassVar[bool] = True


@dataclass(frozen=True)
class Reject:
    """A rejection: `rule` and what it measured against its limit; `text` (a format string
    over `measured` and `limit`) says it in words, built only when asked."""

    rule: RuleId
    burst: Burst
    text: str
    measured: float = math.nan
    limit: float = math.nan
    accepted: ClassVar[bool] = False

    @property
    def detail(self) -> str:
        return self.text.format(measured=self.measured, limit=self.limit)

    def __str__(self) -> str:
        """`rule: what was measured`, as `detect --explain` prints it."""
        return f"{self.rule.value}: {self.detail}"


@dataclass(frozen=True)
class Wait:
    """No verdict yet. A verdict is a pure function of the levels heard, the speech level
    (noise floor + speech_margin_db) and the newest hop; the levels of hops heard do not
    change. So while the speech level is `speech_db`, it stays a Wait until hop `until`:
    the first hop at which the newest levels can end the burst, make it too long, or end
    the wait for what follows it (re-judging before then can only wait again)."""

    until: int
    speech_db: float | None = None  # the speech level it was judged at; None: does not depend on it
    shape: Burst | None = None  # a burst every rule but the quiet after it accepted: only that is awaited


Verdict = Accept | Reject | Wait
