"""The spotting pipeline for one audio stream: features -> model -> decision.

A plain object driven synchronously: `feed()` 16 kHz int16 blocks in, detections
out. `kws-stream detect` drives it from a file; the daemon drives the very same
object from its capture thread's ring buffer.

`Spotter` is the part after the front end: hop levels in, decisions out, running the
model (through a `score(hop)` callback) on the windows that need it. Plain mode runs it
on every window (`stride`), minus those the silence gate skips. Command mode is event
driven: a command is a short burst of speech with a pause before and after it, so the
cheap per-hop levels decide when such a burst has ended, and only then does the model
run, over the windows that can hold that burst. Silence, noise and running speech cost
a level per hop and nothing else. The benchmarks drive the same `Spotter` with cached
model outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .backend import KeywordModel
from .command import CommandGate, CommandParams
from .decision import Decision, DecisionParams, KeywordDecider
from .events import Detection
from .features import FeatureParams, FeatureWindow, MfccExtractor
from .silence import SilenceGate, SilenceParams

EARLY_SCORE = 1.0
"""The model starts before a burst is judged only if a keyword clears its threshold in the
window ending mid-burst or with it (see `Spotter._run_wanted`)."""
SCREEN_SCORE = 0.5
"""Command mode looks first at three windows, from the one ending mid-burst to the last one
holding the whole burst: unless a keyword scores this fraction of its threshold in one
of them, the burst is no command and the model stops there."""


@dataclass(frozen=True)
class PipelineParams:
    stride: int = 1  # run the model every `stride` hops (20 ms each)
    decision: DecisionParams = DecisionParams()
    command: CommandParams = CommandParams()  # command mode (on by default); enabled=False: plain spotting
    silence: SilenceParams = SilenceParams()  # plain mode: skip inference while quiet (off by default)
    eager_inference: bool = False
    """Command mode only: run the model at every hop as plain mode does, instead of only
    around bursts that can be commands. Same rules, 10-75x the CPU: for benchmarks and for
    checking that the event-driven path reports the same commands."""


class Spotter:
    """Hop levels in, keyword decisions out; one per stream, not thread-safe.

    `hop(index, level_db)` takes hop `index` (0-based; the window ending with it ends at
    `FeatureParams.frame_end(index)`) and returns the decisions made now. `score(index)`
    must return the model's probabilities for the window ending with hop `index`, for any
    index between `oldest_window()` and the newest hop.
    """

    def __init__(self, labels: tuple[str, ...], params: PipelineParams, score: Callable[[int], np.ndarray],
                 features: FeatureParams = FeatureParams(),
                 oldest_window: Callable[[], int] = lambda: 0) -> None:
        self.labels = labels
        self.params = params
        self._score = score
        self._features = features
        self._oldest_window = oldest_window
        self._first_window = features.num_frames - 1  # the first hop with a whole window behind it
        # the gate's window length in hops (50: a window's audio spans 50 hop steps); the
        # last window holding a burst that starts at hop s ends at s + 49, as the gate counts
        self._window_hops = round(features.window_samples / features.frame_step)
        self.decider = KeywordDecider(labels, params.decision)
        self._hops = 0  # hops seen
        self.rejections: list[tuple[Decision, str]] = []
        """Candidates command mode rejected and the rule that did, for the caller to take
        (a list, not a callback: no reference cycle keeps a finished stream alive)."""
        self.inference_observer: Callable[[float], None] | None = None
        """Called with each model run's duration in seconds (metrics)."""
        self._gate_base = 0
        self.gate = self._new_gate(params)
        self.silence = self._new_silence(params)
        self.inferences = 0
        """Model runs so far."""
        self._screened: dict[int, np.ndarray] = {}  # window (by its last hop) -> probabilities, not yet used
        self._inferred = -1  # the newest hop whose window the model ran on
        self._wanted = -1  # event-driven: the model runs on windows up to this hop ...
        self._next = 0  # ... from this one on
        self._early: tuple[int, int, int] | None = None
        """A burst that may be ending and holds a keyword: (last window it wants, its last
        hop, the hop by which it can be judged); its windows are run a few per hop."""

    @property
    def event_driven(self) -> bool:
        return self.gate is not None and not self.params.eager_inference

    def _new_gate(self, params: PipelineParams) -> CommandGate | None:
        if not params.command.enabled:
            return None
        gate = CommandGate(params.command, self._features.sample_rate, self._features.window_samples,
                           self.labels, params.decision)
        rejections = self.rejections
        gate.on_reject = lambda decision, rule: rejections.append((decision, rule))
        self._gate_base = self._hops  # a gate counts hops from its creation (a reload mid-stream)
        return gate

    def _new_silence(self, params: PipelineParams) -> SilenceGate | None:
        # plain mode only: in command mode the model does not run in silence anyway
        if not params.silence.enabled or params.command.enabled:
            return None
        return SilenceGate(params.silence, self._features.num_frames)

    def reconfigure(self, params: PipelineParams) -> None:
        """New thresholds/keywords/stride without losing the audio already seen."""
        old = self.params
        self.params = params
        self.decider.retune(params.decision)  # a word being heard keeps its smoothing
        gate_changed = params.command != old.command or params.eager_inference != old.eager_inference
        if gate_changed:
            self.gate = self._new_gate(params)
        elif self.gate is not None and params.decision != old.decision:
            self.gate.retune(params.decision)  # a word being judged stays judged (soak: SIGHUP mid-word)
        if params.silence != old.silence or gate_changed:
            self.silence = self._new_silence(params)

    def _due(self, index: int) -> bool:
        return index >= self._first_window and (index - self._first_window) % self.params.stride == 0

    def hop(self, index: int, level_db: float) -> list[Decision]:
        self._hops = index + 1
        gate, silence = self.gate, self.silence
        if gate is None:
            due = self._due(index)
            if silence is not None and not silence.push_level(level_db):
                if due:
                    silence.skipped += 1
                    self.decider.forget()  # no stale scores from before the silence
                due = False
            return self._infer(index) if due else []
        gate.observe(level_db, self._features.frame_end(index))
        if not self.event_driven:
            if self._due(index):
                gate.add(index - self._gate_base, self._infer(index), self.decider.smoothed)
            return gate.judge()
        self._run_wanted(gate, index)
        return gate.judge()

    def _run_wanted(self, gate: CommandGate, now: int, final: bool = False) -> None:
        """Run the model on the windows that can hold a burst judged a command by its
        levels, in order, as far as heard. They go from `smoothing` windows before the start
        of the stretch of speech it is part of (so that windows of any word in it are taken
        in order, the smoothing warmed up) to the last window holding all of the burst (the
        gate judges the word on those), and at least until the burst is judged (the last
        word of "left up" may fire only after the burst's end). A burst in which no keyword scores near its
        threshold over the windows that hold all of it is skipped (`SCREEN_SCORE`).

        The model starts early, when a burst may be ending (`CommandGate.ending_burst`) and
        the window ending with it holds a keyword, spreading the windows already heard over
        the hops until the burst can be judged (after_silence after it), and stopping if
        more speech comes first: the report is not delayed by a second of windows at once."""
        warmup = (self.params.decision.smoothing - 1) * self.params.stride
        base = self._gate_base
        if self._early is not None and (gate.last_burst_hop + base > self._early[1] or now > self._early[2]):
            self._early = None  # more speech: not ending after all (or judged by now)
        if not final and (early := gate.ending_burst()) is not None:
            stretch, start, end = (hop + base for hop in early)
            if self._keyword_in(start, end, now, EARLY_SCORE, count=2):
                self._extend(gate, stretch - warmup, -1)
                judged_at = end + gate.verdict_delay_hops
                self._early = (max(start + self._window_hops - 1, judged_at + warmup), end, judged_at)
        judged = False
        for stretch, start, end in self._bursts(gate, final):
            if self._keyword_in(start, end, now):
                self._extend(gate, stretch - warmup, max(end + gate.verdict_delay_hops + warmup, start + self._window_hops - 1))
                judged = True
        backlog = min(now, self._last_wanted()) - self._next + 1
        if backlog <= 0:
            return
        if self._early is not None and not (judged or final or gate.waiting):
            backlog = -(-backlog // max(1, self._early[2] - now))  # spread until it can be judged
        for index in range(self._next, self._next + backlog):
            if self._due(index):
                gate.add(index - base, self._infer(index), self.decider.smoothed)
        self._next += backlog

    def _extend(self, gate: CommandGate, first: int, last: int) -> None:
        """Windows `first`..`last` are wanted (those already run or skipped stay so), as far
        back as the gate can judge them (it judges a window by the levels around it)."""
        history = self._hops - gate.history_hops + self._window_hops
        first = max(first, self._first_window, self._oldest_window(), self._gate_base, history)
        if self._next > self._last_wanted() and first > self._inferred + self.params.stride:
            self.decider.reset()  # the windows skipped since the last run held no command
            self._next = first
        self._wanted = max(self._wanted, last)

    def _last_wanted(self) -> int:
        """The newest window a burst (judged, or maybe ending) still wants run."""
        return max(self._wanted, self._early[0] if self._early is not None else -1)

    def _bursts(self, gate: CommandGate, final: bool = False) -> list[tuple[int, int, int]]:
        base = self._gate_base
        return [(stretch + base, start + base, end + base) for stretch, start, end in gate.bursts(final)]

    def _keyword_in(self, start: int, end: int, now: int, score: float = SCREEN_SCORE, count: int = 3) -> bool:
        """Does a keyword score `score` times its threshold in one of `count` windows spread
        from the one ending mid-burst (the decider may fire there, before the word is over)
        to the last one holding the whole burst (as far as heard)?"""
        oldest = max(self._first_window, self._oldest_window())
        if len(self._screened) > 3 * self._window_hops:
            self._screened = {k: p for k, p in self._screened.items() if k >= oldest}
        lo = max((start + end) // 2, oldest)
        hi = min(now, max(end, start + self._window_hops - 1))
        if lo > hi:
            return True  # no such window heard (a stream shorter than a window): look at all
        for index in sorted({round(x) for x in np.linspace(hi, lo, count)}, reverse=True):
            probabilities = self._screened.get(index)
            if probabilities is None:
                probabilities = self._screened[index] = self._run_model(index)
            if self.decider.keyword_near(probabilities, score):
                return True
        return False

    def finish(self) -> list[Decision]:
        """End of stream: evaluate the last window if the stride skipped it; in command
        mode the end of the stream counts as the silence after the last word."""
        last = self._hops - 1
        gate = self.gate
        if gate is None:
            quiet = self.silence is not None and not self.silence.active
            return self._infer(last) if last >= self._first_window and self._inferred != last and not quiet else []
        if self.event_driven:
            self._run_wanted(gate, last, final=True)
            if self._inferred != last and last <= self._wanted and self._inferred >= last - self.params.stride:
                gate.add(last - self._gate_base, self._infer(last), self.decider.smoothed)
        elif last >= self._first_window and self._inferred != last:
            gate.add(last - self._gate_base, self._infer(last), self.decider.smoothed)
        return gate.finish()

    def _run_model(self, index: int) -> np.ndarray:
        self.inferences += 1
        if self.inference_observer is None:
            return self._score(index)
        started = time.perf_counter()
        probabilities = self._score(index)
        self.inference_observer(time.perf_counter() - started)
        return probabilities

    def _infer(self, index: int) -> list[Decision]:
        """The window ending with hop `index` through the model (or its screened result)
        and the decider."""
        self._inferred = index
        probabilities = self._screened.pop(index, None)
        if probabilities is None:
            probabilities = self._run_model(index)
        decision = self.decider.update(probabilities, self._features.frame_end(index), self._features.sample_rate)
        return [decision] if decision else []


class Pipeline:
    """Streaming keyword spotting over one stream; not thread-safe, one per stream.

    With command mode on (the default) a keyword is reported only when spoken as a
    command, once the short silence after it has been heard (so `feed` may return it a
    few blocks later, and `finish` flushes what the end of the stream completes). A
    detection's `start`/`end` stay those of the 1 s window that fired, in both modes.
    """

    def __init__(self, model: KeywordModel, model_name: str, source: str,
                 params: PipelineParams = PipelineParams(),
                 clock: Callable[[], str | None] = lambda: None) -> None:
        self.model = model
        self.model_name = model_name
        self.source = source
        self._clock = clock
        self.features = FeatureWindow(MfccExtractor())
        self._rate = self.features.params.sample_rate
        self.spotter = Spotter(model.labels, params, _scorer(model, self.features), self.features.params,
                               self.features.oldest_window)
        self.rejection_observer: Callable[[Detection, str], None] | None = None
        """Called with each candidate command mode rejects and the rule that did (`--explain`)."""

    @property
    def params(self) -> PipelineParams:
        return self.spotter.params

    @property
    def inferences(self) -> int:
        return self.spotter.inferences

    @property
    def silence(self) -> SilenceGate | None:
        return self.spotter.silence

    @property
    def inference_observer(self) -> Callable[[float], None] | None:
        """Called with each model run's duration in seconds (metrics)."""
        return self.spotter.inference_observer

    @inference_observer.setter
    def inference_observer(self, observer: Callable[[float], None] | None) -> None:
        self.spotter.inference_observer = observer

    def reconfigure(self, params: PipelineParams) -> None:
        """New thresholds/keywords/stride without losing the audio already seen."""
        self.spotter.reconfigure(params)

    @property
    def samples_seen(self) -> int:
        return self.features.samples_covered

    def _report_rejections(self) -> None:
        rejections = self.spotter.rejections
        if self.rejection_observer is not None:
            for decision, rule in rejections:
                self.rejection_observer(self._detection(decision), rule)
        rejections.clear()

    def feed(self, samples: np.ndarray) -> list[Detection]:
        """Process a block of 16 kHz mono int16 audio; returns any detections."""
        decisions: list[Decision] = []
        for hop in self.features.push(samples):
            decisions.extend(self.spotter.hop(hop.number, hop.level_db))
            if self.spotter.rejections:
                self._report_rejections()
        return [self._detection(d) for d in decisions]

    def finish(self) -> list[Detection]:
        """End of stream (see `Spotter.finish`).

        A stream shorter than one window (a 0.9 s clip) is first padded with zeros to
        1 s at its end, as the Speech Commands clips the model was trained on were."""
        window = self.features.params.window_samples
        pushed = self.features.samples_pushed
        padded = self.feed(np.zeros(window - pushed, dtype=np.int16)) if 0 < pushed < window else []
        found = padded + [self._detection(d) for d in self.spotter.finish()]
        self._report_rejections()
        return found

    def _detection(self, decision: Decision) -> Detection:
        end = decision.end_sample / self._rate
        window = self.features.params.window_samples / self._rate
        return Detection(keyword=decision.keyword, score=decision.score, start=max(0.0, end - window),
                         end=end, source=self.source, model=self.model_name, time=self._clock(),
                         threshold=self.params.decision.threshold_for(decision.keyword))


def _scorer(model: KeywordModel, features: FeatureWindow) -> Callable[[int], np.ndarray]:
    """The model's probabilities for the window ending with hop `index` (a closure over the
    model and the features, not the Pipeline: no reference cycle)."""
    def score(index: int) -> np.ndarray:
        return model.probabilities(features.window(index))
    return score
