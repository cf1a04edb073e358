"""Command mode: report a keyword only when it was spoken as a command.

MicroNet was trained on isolated one-second words. In running speech it finds "up",
"left", "off", "right" in ordinary syllables all the time (hundreds of false accepts
per hour on read sentences), and no threshold separates those from real commands
without also losing real commands. What does separate them is the *shape of the
speech around the word*: a command is a short burst of speech with a pause before it
and a pause after it; a syllable inside a sentence is part of a long stretch of speech.

`CommandGate` sits after the plain `KeywordDecider` and judges each of its candidate
decisions from the loudness contour of the last few seconds (one level per 20 ms hop,
`contour`), with one object per rule (`rules`: the shape of the burst; `words`: the
whole word's score and one report per word), each returning a typed verdict (`verdicts`);
`bursts` finds, from the levels alone, where the model needs to run at all. The rules:

1. The loudest hop of the window that fired is taken as the word's peak. A hop counts
   as speech for this word if it is above the adaptive noise floor by `speech_margin_db`
   *and* no more than `CORE_DROP_DB` below the peak. The peak-relative part is what makes
   the rule work on real recordings: a word's own noisy tail, or a quieter word before
   it, is 20+ dB down and does not glue two commands together.
2. From the peak, the word's burst ("core") extends in both directions across gaps
   shorter than `post_silence` (the closure in "stop", a pause between syllables).
3. The candidate is accepted once `post_silence` of non-speech follows the core (and
   `after_silence`, unless another short burst follows: longer speech after it makes it
   the first word of a sentence), if the core is at most `max_word` long, at least
   `pre_silence` of non-speech precedes it (or it is the next word of a row of commands:
   after a short burst that was a command, or one `ROW_TALKER_DB` quieter than it, another
   source's, a short pause is enough), and
   its peak is `min_snr_db` above the noise floor (a TV or talk further away peaks barely
   above the room's noise, and its syllables then look like isolated short words).
   The stream start counts as preceding silence and its end (`finish`) as following
   silence, so a clip that starts or ends right at the word still works.
4. The word is then judged as a whole (when the pipeline passes the decider's smoothed
   probabilities, as it does): among the windows that hold the entire burst (ending
   between its end and one window after its start, as far as heard), the keyword with the
   highest smoothed score is the word, if that score reaches `word_score_ratio` times its
   threshold; otherwise the candidate is rejected. The window that fired may have seen
   only the word's onset: "no" for "down", "off" for "on", "left" for the "last" of "last
   Tuesday". A confirmed candidate is reported as the decider made it (its window and
   score); a corrected one with the window where the right keyword scored best. A burst
   that holds several candidates' words ("left up" said quickly) is not re-scored. After a
   word accepted less than a window before, only windows that start after it (and after its
   audible tail) are used, waiting for them if need be: windows still holding the hiss of
   "yes" score the "no" after it as `go`.

Measured on held-out data (`python -m benchmarks.command_mode --targets`, MicroNet-L):
plain spotting gives ~750 false accepts per hour on real read and meeting speech, command
mode 7 (0 on synthetic prose and with a TV 20 dB below), finding 95-100 % of the isolated keywords plain spotting
finds. One spoken word is reported once: the same keyword is never reported twice within
the decider's refractory time, and a burst that overlaps a word already accepted is not
re-scored (its windows still hear that word).

It is causal: the only wait is the `post_silence` after the word (the latency a user
accepts for a command), and in a quick row of commands the wait for windows past the word
before (up to 0.4 s more, measured on yes_no_go_stop.wav). Per hop it costs one dot product and a few float operations;
the contour scan (at most a few seconds of hops) runs only while a candidate waits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .bursts import BurstScanner, Span
from .contour import HISTORY_S, Contour, GateHops
from .decision import Decision, DecisionParams
from .features import MICRONET, StreamGeometry, hop_level_db
from .params import FLAG, Checked, decibels, number, seconds, setting
from .rules import AddedRule, ShapeRules
from .verdicts import Accept, Burst, Reject, RuleId, Verdict, Wait
from .words import SameWord, WholeWordScore, Word


@dataclass(frozen=True)
class CommandParams(Checked):
    """Command mode knobs; times in seconds. A value out of its range is a ConfigError
    (a ValueError) naming it as the [command] setting.

    enabled: False gives plain keyword spotting (keywords inside sentences too).
    max_word: the longest burst of speech accepted as a command (word or short phrase).
    pre_silence: non-speech required between running speech and the burst (the stream
        start counts); after a command (commands in a row) post_silence is enough, but a
        short word of the talker's that was no command ("oh ... right") does not count.
        0.6 s: the first word of a sentence after a pause between sentences is the main
        source of false accepts left; a command 0.75 s or more after talking is unaffected.
    post_silence: non-speech that ends a burst; also the added latency after the word.
    speech_margin_db: how far above the adaptive noise floor a hop counts as speech.
    word_score_ratio: the word, judged as a whole (the windows that hold all of it),
        must score at least this fraction of its keyword's threshold.
    min_snr_db: how far above the noise floor the word's loudest point must be: a command
        is spoken to the device, while a TV or talk further away peaks barely above the
        room's noise, and its syllables then look like isolated short words.
    after_silence: quiet required after the word unless another short burst follows
        (the next command of a row); longer speech after it means it was the first word
        of a sentence. Below post_silence it is post_silence. 0.25 s: on the dev half of
        real-dev it removed 2 of 6 false accepts (AMI meetings) at no recall cost; 0.3 s
        did no better there; each 0.05 s adds 50 ms of latency after a lone command.
    """

    section = "command"

    enabled: bool = setting(True, FLAG)
    max_word: float = setting(1.0, seconds(0.2, 3.0))
    pre_silence: float = setting(0.6, seconds(0.0, 1.5))
    post_silence: float = setting(0.2, seconds(0.06, 1.0))
    speech_margin_db: float = setting(10.0, decibels(3.0, 30.0))
    word_score_ratio: float = setting(0.7, number(0.3, 1.5))
    min_snr_db: float = setting(20.0, decibels(0.0, 40.0))
    after_silence: float = setting(0.25, seconds(0.06, 1.0))



@dataclass
class _Pending:
    decision: Decision
    hop: int  # the hop the window that fired ends with


class CommandGate:
    """Accepts the plain decider's candidates only when they are isolated commands.

    Drive it once per hop: `push(hop, end_sample, candidates)`, where `hop` holds the
    newest 320 samples (ending at stream position `end_sample`) and `candidates` the
    plain decisions made at this hop (usually none). It returns the decisions accepted
    now: possibly ones that fired a few hops earlier, once their trailing silence has
    been heard. A decision keeps its own `end_sample` (the end of the window that fired).
    At most one keyword is reported per word, but a short burst may hold several words
    ("left up"). `finish()` treats the end of the stream as silence.

    `push` is `observe` (the hop's level), `add` (the model's output for a window, which
    may be one heard a while ago) and `judge`. Between them, `ending_burst()` and
    `bursts()` tell from the levels alone where a command can be, so that the caller
    runs the model only there (`pipeline`). Hops are numbered from the stream's start; a
    gate made mid-stream (a reload) starts at `first_hop`, which counts as the start.
    `rules` are added to the shape rules (an experiment's; see `rules.AddedRule`).
    """

    def __init__(self, params: CommandParams = CommandParams(), labels: Sequence[str] | None = None,
                 decision: DecisionParams = DecisionParams(), geometry: StreamGeometry = MICRONET,
                 first_hop: int = 0, rules: Sequence[AddedRule] = (), stride: int = 1) -> None:
        self.params = params
        self.hops = GateHops.of(params, geometry)
        self._sample_rate = geometry.sample_rate
        self.contour = Contour(self.hops, params.speech_margin_db, first_hop)
        self.shapes = ShapeRules(params, self.contour, rules)
        self.score = WholeWordScore(params, self.contour, labels, decision)
        self.words = SameWord(self.contour, int(decision.refractory * geometry.sample_rate))
        self._lag = (decision.smoothing - 1) * stride
        self.scanner = BurstScanner(self.contour, self.shapes)
        self._pending: list[_Pending] = []
        self.rejected = 0
        """Candidates rejected so far (not commands, or a second keyword in one burst)."""
        self.on_reject: Callable[[Decision, Reject], None] | None = None
        """Called with each rejected candidate and the rejection (`detect --explain`)."""

    @property
    def first_hop(self) -> int:
        return self.contour.first

    def retune(self, decision: DecisionParams, stride: int = 1) -> None:
        """New thresholds, keywords, refractory or stride from a reload, keeping the loudness
        history, the noise floor and the candidates being judged."""
        self.score.retune(decision)
        self.words.refractory = int(decision.refractory * self._sample_rate)
        self._lag = (decision.smoothing - 1) * stride

    @property
    def smoothing_lag(self) -> int:
        """Hops by which the decider's smoothed score lags the windows it averages."""
        return self._lag

    def last_window(self, start: int, end: int) -> int:
        """The last window (by the hop it ends with) a candidate for the burst `start`..`end`
        may fire on: the last that holds all of it, or the one at which the burst is judged
        (after_silence after it), whichever is later, plus the smoothing lag (the decider's
        average reaches the threshold up to that many windows after the window that held the
        word: in a quick row, "no" right before "go"). A later window holds only the end of
        the word and the quiet after it ("-ter" of "computer" as `stop`, the tail of "no" as
        `go`). The event-driven scheduler runs the model up to here, so with the model at
        every hop (`detect --explain`) the same candidates count."""
        return max(end + self.hops.after, start + self.hops.window - 1) + self._lag

    def push(self, hop: np.ndarray, end_sample: int, candidates: Sequence[Decision] = (),
             probabilities: np.ndarray | None = None) -> list[Decision]:
        return self.push_level(hop_level_db(hop), end_sample, candidates, probabilities)

    def push_level(self, level_db: float, end_sample: int, candidates: Sequence[Decision] = (),
                   probabilities: np.ndarray | None = None) -> list[Decision]:
        """`push` with the hop's level already measured: `observe`, `add` and `judge` in one."""
        self.observe(level_db, end_sample)
        self.add(self.contour.now, candidates, probabilities)
        return self.judge()

    def observe(self, level_db: float, end_sample: int) -> None:
        """Record the next hop's level (and the stream position of its end)."""
        k = self.contour.heard
        level = self.contour.observe(level_db, end_sample)
        self.score.forget(k)
        self.scanner.observe(k, level)

    def add(self, hop: int, candidates: Sequence[Decision] = (), probabilities: np.ndarray | None = None) -> None:
        """The model's verdict on the window ending at `hop` (a hop already observed, at
        most HISTORY_S old): the decider's smoothed probabilities and its candidates."""
        if probabilities is not None:
            self.score.add(hop, probabilities)
        self._pending.extend(_Pending(decision, hop) for decision in candidates)

    @property
    def last_burst_hop(self) -> int:
        """The newest hop of speech that belongs to a burst (extends the latest one)."""
        return self.scanner.last

    @property
    def history_hops(self) -> int:
        """Hops of levels kept (HISTORY_S): a window the model ran on can be judged only
        while the hop it ends with is in them."""
        return self.contour.size

    @property
    def verdict_delay_hops(self) -> int:
        """Hops after a burst's end at which the rules can accept it (after_silence)."""
        return self.hops.after

    @property
    def waiting(self) -> bool:
        """Candidates wait to be judged."""
        return bool(self._pending)

    def bursts(self, final: bool = False) -> list[Span]:
        """See `BurstScanner.bursts`: only windows around these can hold a command."""
        return self.scanner.bursts(final)

    def ending_burst(self) -> Span | None:
        """See `BurstScanner.ending_burst`: a hint to start the model early."""
        return self.scanner.ending_burst()

    def judge(self) -> list[Decision]:
        """The candidates that can be judged now and are commands."""
        return self._judge(final=False) if self._pending else []

    def finish(self, candidates: Sequence[Decision] = (), probabilities: np.ndarray | None = None) -> list[Decision]:
        """End of stream: it counts as silence, so every waiting candidate (and
        `candidates`, decisions made on the last window, whose smoothed probabilities
        are `probabilities`) is judged now."""
        c = self.contour
        self.add(max(c.first, c.now), candidates, probabilities if c.heard > c.first else None)
        return self._judge(final=True) if self._pending else []

    def _shape(self, item: _Pending, final: bool) -> Verdict:
        """The shape rules' verdict on a candidate's burst; an accepted one waits until
        the windows free of the word accepted before it are heard (`clean_from`)."""
        verdict = self.shapes.verdict(item.hop, final)
        if isinstance(verdict, Accept) and not final and self.score.labels is not None \
                and self.contour.now < self.score.clean_from(verdict.burst, self.words.recent):
            return Wait(self.contour.now + 1)
        return verdict

    def _judge(self, final: bool) -> list[Decision]:
        accepted: list[tuple[Word, Decision]] = []
        waiting: list[_Pending] = []
        judged: list[tuple[_Pending, Accept | Reject]] = []
        oldest = self.contour.heard - self.contour.size
        for item in self._pending:
            if item.hop < oldest:  # never, unless a window far behind was run late: its levels are gone
                self._reject(item.decision, Reject(RuleId.HISTORY, Burst(item.hop, item.hop, item.hop),
                                                   "its window ended over {limit:g} s ago", limit=HISTORY_S))
                continue
            # judged in firing order: a later word waits for an earlier one still open
            verdict = Wait(0) if waiting else self._shape(item, final)
            if isinstance(verdict, Wait):
                waiting.append(item)
            else:
                judged.append((item, verdict))
        words, pause = self.words, self.shapes.pause_before
        peaks = [v.burst.peak for _, v in judged] + [w.peak for w in words.recent]
        for item, verdict in judged:
            fired, b = item.decision, verdict.burst
            word = Word(b.peak, verdict.accepted, b.start, b.end, frozenset({fired.keyword}))
            rejection = words.judged_already(word, fired.keyword)
            if rejection is not None:
                self._reject(fired, rejection)
                continue
            rejection = verdict if isinstance(verdict, Reject) else None
            late = item.hop - self.last_window(b.start, b.end)
            if rejection is None and late > 0:
                rejection = Reject(RuleId.LATE, b, "its window ended {measured:.2f} s after the last that holds the "
                                   "word or ends when it is judged", late * self.hops.seconds)
            decision = fired
            if rejection is None and b.row_after >= 0 \
                    and not pause.follows_command(b, [*words.recent, *(w for w, _ in accepted)]):
                rejection = pause.not_a_row(b)
            if rejection is None and self.score.applies(b, peaks, [*words.recent, *(w for w, _ in accepted)],
                                                        self.hops.same_word):
                rescored = self.score.rescore(b, fired, words.recent)
                if rescored is None:
                    rejection = self.score.rejection(b)
                else:
                    decision = rescored
                    word = Word(b.peak, True, b.start, b.end, frozenset({fired.keyword, decision.keyword}))
            same = [k for k, (w, _) in enumerate(accepted) if words.same(w, word, decision.keyword)]
            if rejection is None and not same:
                rejection = words.repeats(word, decision)  # one word reported once, as plain mode does
            if rejection is not None:
                self._reject(fired, rejection)
                words.recent.append(Word(b.peak, False, b.start, b.end, word.keywords))
            elif same:  # two guesses for one word in the same hop: keep the more confident
                k = same[0]
                kept = accepted[k][1]
                if words.more_confident(kept, decision, fired):
                    accepted[k], kept, decision = (word, decision), decision, kept
                self._reject(decision, words.once(word, kept, decision))
            else:
                accepted.append((word, decision))
        self._pending = waiting
        words.reported(accepted)
        return sorted((d for _, d in accepted), key=lambda d: d.end_sample)

    def _reject(self, decision: Decision, rejection: Reject) -> None:
        self.rejected += 1
        if self.on_reject is not None:
            self.on_reject(decision, rejection)
