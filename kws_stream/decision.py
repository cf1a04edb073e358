"""Turning a stream of per-window class probabilities into keyword detections.

In the spirit of TFLM's RecognizeCommands: average the posteriors over a short
history, take the top class, and report it once when it clears its threshold.
A keyword that fired is disarmed until its smoothed score falls back below a
release level *and* its refractory period has passed, so one spoken word (which
stays on top for many consecutive windows) is reported exactly once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .params import KEYWORD_SCORES, KEYWORD_SET, SCORE, Checked, integer, seconds, setting

NON_KEYWORDS = frozenset({"_silence_", "_unknown_"})
DEFAULT_THRESHOLD = 0.7  # Arm's reference application reports a keyword at >= 0.7.
RELEASE_FRACTION = 0.5  # A fired keyword re-arms once its smoothed score drops below half its threshold.


@dataclass(frozen=True)
class DecisionParams(Checked):
    """How posteriors become detections; all times in seconds. A bad value is a
    ConfigError (a ValueError) naming it as the [detection] setting it comes from."""

    section = "detection"

    smoothing: int = setting(4, integer(1, 50, note="inferences"))  # inferences averaged
    threshold: float = setting(DEFAULT_THRESHOLD, SCORE)
    thresholds: Mapping[str, float] = setting(rule=KEYWORD_SCORES, factory=dict)  # per-keyword overrides
    refractory: float = setting(1.0, seconds(0, 10))
    keywords: frozenset[str] | None = setting(None, KEYWORD_SET)  # allow-list; None reports every keyword

    def threshold_for(self, keyword: str) -> float:
        return self.thresholds.get(keyword, self.threshold)


@dataclass(frozen=True)
class Decision:
    """A keyword that fired: its name, smoothed score and the stream position it fired at."""

    keyword: str
    score: float
    end_sample: int


class KeywordDecider:
    """Smoothing, thresholds and refractory handling for one audio stream."""

    def __init__(self, labels: tuple[str, ...], params: DecisionParams) -> None:
        self.labels = labels
        self._history: deque[np.ndarray] = deque()
        self.retune(params)
        self._armed = np.ones(len(labels), dtype=bool)
        self._last_fired: dict[int, int] = {}
        self.smoothed: np.ndarray | None = None
        """The smoothed probability vector of the latest window (None before the first);
        command mode re-scores whole words from these."""

    def _is_reportable(self, label: str) -> bool:
        if label in NON_KEYWORDS:
            return False
        return self.params.keywords is None or label in self.params.keywords

    def retune(self, params: DecisionParams) -> None:
        """New thresholds, keywords, smoothing or refractory, keeping what was heard (the
        smoothing history, which keywords are armed, when each last fired)."""
        _check_keywords(self.labels, params)
        self.params = params
        self._history = deque(self._history, maxlen=max(1, params.smoothing))
        self._reportable = np.array([self._is_reportable(label) for label in self.labels])
        self._thresholds = np.array([params.threshold_for(label) for label in self.labels])

    def keyword_near(self, probabilities: np.ndarray, fraction: float) -> bool:
        """Does an allowed keyword score `fraction` of its threshold in one window's
        (unsmoothed) probabilities? Command mode's screen before it runs a whole burst."""
        return bool((probabilities[self._reportable] >= fraction * self._thresholds[self._reportable]).any())

    def forget(self) -> None:
        """Drop the smoothing history (after a stretch the model did not see)."""
        self._history.clear()

    def reset(self) -> None:
        """`forget`, and re-arm every keyword: the windows not seen held no word (command
        mode runs the model only around bursts of speech; between them, every score would
        have fallen). Refractory times still count."""
        self._history.clear()
        self._armed[:] = True

    def update(self, probabilities: np.ndarray, end_sample: int, sample_rate: int) -> Decision | None:
        """Feed one window's probabilities; returns a Decision when a keyword fires."""
        self._history.append(probabilities)
        smoothed = np.mean(self._history, axis=0)
        self.smoothed = smoothed
        release = smoothed < self._thresholds * RELEASE_FRACTION
        self._armed |= release
        top = int(np.argmax(smoothed))
        score = float(smoothed[top])
        if not (self._reportable[top] and self._armed[top] and score >= self._thresholds[top]):
            return None
        last = self._last_fired.get(top)
        if last is not None and end_sample - last < self.params.refractory * sample_rate:
            return None
        self._armed[top] = False
        self._last_fired[top] = end_sample
        return Decision(self.labels[top], score, end_sample)


def _check_keywords(labels: tuple[str, ...], params: DecisionParams) -> None:
    """The allow-list and per-keyword thresholds name the model's keywords (the config and
    CLI say so in one line before a model is loaded; this is the same check for the API)."""
    keywords = set(labels) - NON_KEYWORDS
    unknown = sorted((set(params.keywords or ()) | set(params.thresholds)) - keywords)
    if unknown:
        raise ValueError(f"not keywords of this model: {', '.join(unknown)} (its keywords: {', '.join(sorted(keywords))})")
