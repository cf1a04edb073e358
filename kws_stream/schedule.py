"""When the model runs: one scheduler per mode, chosen when the pipeline is (re)configured.

`Windows` runs the model and the decider on the window ending with a given hop (hops are
numbered from the stream's start) and counts the runs. `PlainScheduler` runs it on every
`stride`-th window, minus those the silence gate skips. `EagerScheduler` does the same in
command mode, every candidate going through the `CommandGate` (benchmarks, `--explain`).
`EventScheduler` is command mode's default: a command is a short burst of speech with a
pause before and after it, so the cheap per-hop levels decide when such a burst has
ended, and only then does the model run, over the windows that can hold that burst.
Silence, noise and running speech cost a level per hop and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .command import CommandGate
from .decision import Decision, KeywordDecider
from .features import FeatureParams
from .silence import SilenceGate

if TYPE_CHECKING:
    from .pipeline import PipelineParams

EARLY_SCORE = 1.0
"""The model starts before a burst is judged only if a keyword clears its threshold in the
window ending mid-burst or with it (see `EventScheduler.hop`)."""
SCREEN_SCORE = 0.5
"""Command mode looks first at three windows, from the one ending mid-burst to the last one
holding the whole burst: unless a keyword scores this fraction of its threshold in one
of them, the burst is no command and the model stops there."""


class Windows:
    """The stream's windows, by the hop each ends with, through the model and the decider."""

    def __init__(self, decider: KeywordDecider, params: PipelineParams, score: Callable[[int], np.ndarray],
                 features: FeatureParams, oldest_window: Callable[[], int]) -> None:
        self.decider = decider
        self.params = params
        self._score = score
        self.features = features
        self.geometry = features.geometry
        self.oldest_window = oldest_window
        self.first = self.geometry.frames - 1  # the first hop with a whole window behind it
        self.heard = 0  # hops seen
        self.inferred = -1  # the newest hop whose window the model ran on
        self.inferences = 0
        self.inference_observer: Callable[[float], None] | None = None
        self._screened: dict[int, np.ndarray] = {}  # window (by its last hop) -> probabilities, not yet used

    def due(self, index: int) -> bool:
        return index >= self.first and (index - self.first) % self.params.stride == 0

    def run(self, index: int) -> np.ndarray:
        self.inferences += 1
        if self.inference_observer is None:
            return self._score(index)
        started = time.perf_counter()
        probabilities = self._score(index)
        self.inference_observer(time.perf_counter() - started)
        return probabilities

    def forget_screened(self, oldest: int) -> None:
        """Drop screened windows before `oldest` (they can be run no more) once there are many."""
        if len(self._screened) > 3 * self.geometry.window_hops:
            self._screened = {k: p for k, p in self._screened.items() if k >= oldest}

    def screen(self, index: int) -> np.ndarray:
        """The model's output for a window, kept for `infer` (a screen before a burst's run)."""
        probabilities = self._screened.get(index)
        if probabilities is None:
            probabilities = self._screened[index] = self.run(index)
        return probabilities

    def infer(self, index: int) -> list[Decision]:
        """The window ending with hop `index` through the model (or its screened result)
        and the decider."""
        self.inferred = index
        probabilities = self._screened.pop(index, None)
        if probabilities is None:
            probabilities = self.run(index)
        decision = self.decider.update(probabilities, self.features.frame_end(index), self.geometry.sample_rate)
        return [decision] if decision else []


class PlainScheduler:
    """Plain spotting: every `stride`-th window, minus those the silence gate skips."""

    gate = None

    def __init__(self, windows: Windows, params: PipelineParams) -> None:
        self._windows = windows
        self.silence = SilenceGate(params.silence, windows.geometry.frames) if params.silence.enabled else None

    def hop(self, index: int, level_db: float) -> list[Decision]:
        w, silence = self._windows, self.silence
        due = w.due(index)
        if silence is not None and not silence.push_level(level_db):
            if due:
                silence.skipped += 1
                w.decider.forget()  # no stale scores from before the silence
            due = False
        return w.infer(index) if due else []

    def finish(self) -> list[Decision]:
        """The last window if the stride skipped it."""
        w, last = self._windows, self._windows.heard - 1
        quiet = self.silence is not None and not self.silence.active
        return w.infer(last) if last >= w.first and w.inferred != last and not quiet else []


class EagerScheduler:
    """Command mode with the model at every `stride`-th window, as plain mode runs it."""

    silence = None

    def __init__(self, windows: Windows, gate: CommandGate) -> None:
        self._windows = windows
        self.gate = gate

    def hop(self, index: int, level_db: float) -> list[Decision]:
        w, gate = self._windows, self.gate
        gate.observe(level_db, w.features.frame_end(index))
        if w.due(index):
            gate.add(index, w.infer(index), w.decider.smoothed)
        return gate.judge()

    def finish(self) -> list[Decision]:
        w, last = self._windows, self._windows.heard - 1
        if last >= w.first and w.inferred != last:
            self.gate.add(last, w.infer(last), w.decider.smoothed)
        return self.gate.finish()


class EventScheduler:
    """Command mode, event driven: the model runs on the windows that can hold a burst the
    gate judges a command by its levels, in order, as far as heard. They go from `smoothing`
    windows before the start of the stretch of speech it is part of (so that windows of any
    word in it are taken in order, the smoothing warmed up) to the last window holding all
    of the burst (the gate judges the word on those), and at least until the burst is judged
    (the last word of "left up" may fire only after the burst's end). A burst in which no
    keyword scores near its threshold over the windows that hold all of it is skipped
    (`SCREEN_SCORE`).

    The model starts early, when a burst may be ending (`CommandGate.ending_burst`) and the
    window ending with it holds a keyword, spreading the windows already heard over the hops
    until the burst can be judged (after_silence after it), and stopping if more speech comes
    first: the report is not delayed by a second of windows at once."""

    silence = None

    def __init__(self, windows: Windows, gate: CommandGate) -> None:
        self._windows = windows
        self.gate = gate
        self._wanted = -1  # the model runs on windows up to this hop ...
        self._next = windows.heard  # ... from this one on
        self._early: tuple[int, int, int] | None = None
        """A burst that may be ending and holds a keyword: (last window it wants, its last
        hop, the hop by which it can be judged); its windows are run a few per hop."""

    def hop(self, index: int, level_db: float) -> list[Decision]:
        self.gate.observe(level_db, self._windows.features.frame_end(index))
        self._run_wanted(index)
        return self.gate.judge()

    def finish(self) -> list[Decision]:
        """The end of the stream counts as the silence after the last word."""
        w, gate, last = self._windows, self.gate, self._windows.heard - 1
        self._run_wanted(last, final=True)
        if w.inferred != last and last <= self._wanted and w.inferred >= last - w.params.stride:
            gate.add(last, w.infer(last), w.decider.smoothed)
        return gate.finish()

    def _run_wanted(self, now: int, final: bool = False) -> None:
        w, gate = self._windows, self.gate
        warmup = gate.smoothing_lag
        if self._early is not None and (gate.last_burst_hop > self._early[1] or now > self._early[2]):
            self._early = None  # more speech: not ending after all (or judged by now)
        if not final and (early := gate.ending_burst()) is not None:
            stretch, start, end = early
            if self._keyword_in(start, end, now, EARLY_SCORE, count=2):
                self._extend(stretch - warmup, -1)
                self._early = (gate.last_window(start, end), end, end + gate.verdict_delay_hops)
        judged = False
        for stretch, start, end in gate.bursts(final):
            if self._keyword_in(start, end, now):
                self._extend(stretch - warmup, gate.last_window(start, end))
                judged = True
        backlog = min(now, self._last_wanted()) - self._next + 1
        if backlog <= 0:
            return
        if self._early is not None and not (judged or final or gate.waiting):
            backlog = -(-backlog // max(1, self._early[2] - now))  # spread until it can be judged
        for index in range(self._next, self._next + backlog):
            if w.due(index):
                gate.add(index, w.infer(index), w.decider.smoothed)
        self._next += backlog

    def _extend(self, first: int, last: int) -> None:
        """Windows `first`..`last` are wanted (those already run or skipped stay so), as far
        back as the gate can judge them (it judges a window by the levels around it)."""
        w, gate = self._windows, self.gate
        history = w.heard - gate.history_hops + w.geometry.window_hops
        first = max(first, w.first, w.oldest_window(), gate.first_hop, history)
        if self._next > self._last_wanted() and first > w.inferred + w.params.stride:
            w.decider.reset()  # the windows skipped since the last run held no command
            self._next = first
        self._wanted = max(self._wanted, last)

    def _last_wanted(self) -> int:
        """The newest window a burst (judged, or maybe ending) still wants run."""
        return max(self._wanted, self._early[0] if self._early is not None else -1)

    def _keyword_in(self, start: int, end: int, now: int, score: float = SCREEN_SCORE, count: int = 3) -> bool:
        """Does a keyword score `score` times its threshold in one of `count` windows spread
        from the one ending mid-burst (the decider may fire there, before the word is over)
        to the last one holding the whole burst (as far as heard)?"""
        w = self._windows
        oldest = max(w.first, w.oldest_window())
        w.forget_screened(oldest)
        lo = max((start + end) // 2, oldest)
        hi = min(now, max(end, start + w.geometry.window_hops - 1))
        if lo > hi:
            return True  # no such window heard (a stream shorter than a window): look at all
        for index in sorted({round(x) for x in np.linspace(hi, lo, count)}, reverse=True):
            if w.decider.keyword_near(w.screen(index), score):
                return True
        return False


Scheduler = PlainScheduler | EagerScheduler | EventScheduler
