"""Command mode: report a keyword only when it was spoken as a command.

MicroNet was trained on isolated one-second words. In running speech it finds "up",
"left", "off", "right" in ordinary syllables all the time (hundreds of false accepts
per hour on read sentences), and no threshold separates those from real commands
without also losing real commands. What does separate them is the *shape of the
speech around the word*: a command is a short burst of speech with a pause before it
and a pause after it; a syllable inside a sentence is part of a long stretch of speech.

`CommandGate` sits after the plain `KeywordDecider` and judges each of its candidate
decisions from the loudness contour of the last few seconds (one level per 20 ms hop):

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

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .decision import NON_KEYWORDS, Decision, DecisionParams
from .features import HOP_SAMPLES, SAMPLE_RATE, SILENCE_DBFS, WINDOW_SAMPLES, hop_level_db
from .params import FLAG, Checked, decibels, number, seconds, setting

MIN_NOISE_FLOOR_DBFS = -70.0  # never trust a floor below this: after digital silence any click is "speech"
DIGITAL_SILENCE_DBFS = -90.0  # no microphone is this quiet: a muted/gated source, not the room's floor
NOISE_FLOOR_BLOCK_S = 0.5  # minimum statistics: the floor is the quietest smoothed level of the last
NOISE_FLOOR_BLOCKS = 3  # ... 3-4 blocks of 0.5 s, so it follows the room up within about 1.5-2 s
LEVEL_SMOOTHING_HOPS = 3  # levels are the mean power of the last 60 ms: real room noise swings
#                           +-5 dB from hop to hop, its 60 ms mean much less
LATEST_WORD_DB = 20.0  # the word that fired is the *latest* speech in the window: the last hop
#                       within 20 dB of the window's maximum (a louder word at the start of the
#                       window is its predecessor; speech still going on is the word) ...
PEAK_SEARCH_S = 0.3  # ... and the word's peak is the loudest hop in the 0.3 s up to it
SAME_WORD_S = 0.3  # candidates whose peaks are closer than this are one word (keep the best)
CORE_DROP_DB = 20.0  # a hop this far below the word's peak is not part of the word
ROW_TALKER_DB = 10.0  # a short burst before a word peaking within this of the word's peak is the same
#                      talker's: then it must be a command for the word to be the next of a row
FORWARD, BACKWARD = "forward", "backward"  # the two contour scans (`CommandGate._scans_now`)
HISTORY_S = 4.0  # loudness contour kept: > window (1 s) + max_word + pre_silence + post_silence


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


class NoiseFloor:
    """Smoothed hop levels and an adaptive noise floor (minimum statistics).

    The floor is the quietest smoothed level over the last ~2 s, kept in 0.5 s blocks so
    an update is O(1). It follows the room down at once and up within a couple of
    seconds, and speech does not raise it (speech always has dips between syllables).
    """

    def __init__(self, hop_seconds: float = HOP_SAMPLES / SAMPLE_RATE) -> None:
        self._block_hops = max(1, round(NOISE_FLOOR_BLOCK_S / hop_seconds))
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
        if self._block_count >= self._block_hops:
            # a block of digital silence says nothing about the room: the floor falls
            # to the lowest trusted one instead of being set by the next word itself
            self._blocks.append(self._block_min if self._block_min < math.inf else MIN_NOISE_FLOOR_DBFS)
            self._blocks_min = min(self._blocks)
            self._block_min = math.inf
            self._block_count = 0
        floor = self._block_min if self._block_min < self._blocks_min else self._blocks_min
        self.floor_db = floor if floor > MIN_NOISE_FLOOR_DBFS else MIN_NOISE_FLOOR_DBFS
        return level


@dataclass
class _Pending:
    decision: Decision
    hop: int  # index of the hop at which the window that fired ends


@dataclass(frozen=True)
class _Word:
    """A word judged already: where it was and which keywords it was taken for."""

    peak: int  # hop of the loudest point
    accepted: bool
    start: int = 0  # its burst's first and last hop
    end: int = -1
    keywords: frozenset[str] = frozenset()  # the keyword reported and the one that fired

    def same_word(self, other: _Word, keyword: str, same_word_hops: int) -> bool:
        """Is a candidate for `keyword` in burst `other` this word again? Peaks close
        together, or the same keyword again inside the same burst (a word with two loud
        parts: the first candidate was judged, maybe corrected, on the whole burst, and a
        later candidate for that keyword in it is the same word again)."""
        if abs(self.peak - other.peak) < same_word_hops:
            return True
        overlap = self.start <= other.end and other.start <= self.end
        return overlap and keyword in self.keywords


@dataclass
class _Probe:
    """A burst whose following gap was heard: judged by `CommandGate.bursts`."""

    hop: int  # its last hop
    start: int = 0  # its first hop (at the lowest threshold: the speech margin)
    open: list[tuple[int, int]] | None = None  # the words (latest, peak) not judged yet; None: not listed yet
    accepted: set[tuple[int, int, int]] = dataclasses.field(default_factory=set)  # as `bursts()` gives them
    shapes: dict[tuple[int, int], _Verdict] = dataclasses.field(default_factory=dict)  # bursts waiting for what follows
    waits: dict[tuple[int, int], _Wait] = dataclasses.field(default_factory=dict)  # why a word's verdict is None


@dataclass(frozen=True)
class _Wait:
    """Why a verdict was None (wait), as `bursts()` needs to know when to judge it again.

    A verdict is a pure function of the levels heard, the speech level (noise floor +
    speech_margin_db) and the newest hop; the levels of hops heard do not change. So
    while the speech level is what it was, the verdict stays None until `until`: the first
    hop at which the newest levels can end the burst, make it too long, or end the wait
    for what follows it. Re-judging before then costs a contour scan per word per hop and
    can only give None again (silence waits do not depend on the speech level at all)."""

    until: int  # the first hop at which the verdict can be something else than None
    speech_db: float | None = None  # the speech level it was judged at; None: does not depend on it


@dataclass(frozen=True)
class _Verdict:
    """The outcome of judging one burst of speech, or None while it is still going on."""

    accepted: bool
    peak: int  # hop of the word's loudest point
    start: int  # first and last hop of its burst
    end: int
    reason: str = "command"  # why it was rejected (for diagnostics), or "command"
    threshold: float = 0.0  # the level that counted as this burst's speech
    row_after: int = -1  # admitted as the next command of a row: the first hop of the short
    #                      burst before it (which must then be, or follow, a command)


class CommandGate:
    """Accepts the plain decider's candidates only when they are isolated commands.

    Drive it once per hop: `push(hop, end_sample, candidates)`, where `hop` holds the
    newest 320 samples (ending at stream position `end_sample`) and `candidates` the
    plain decisions made at this hop (usually none). It returns the decisions accepted
    now: possibly ones that fired a few hops earlier, once their trailing silence has
    been heard. A decision keeps its own `end_sample` (the end of the window that fired).
    At most one keyword is reported per word (candidates whose peaks are within
    `SAME_WORD_S` are one word), but a short burst may hold several words ("left up").
    `finish()` treats the end of the stream as silence.

    `push` is `observe` (the hop's level), `add` (the model's output for a window, which
    may be one heard a while ago) and `judge`. Between them, `ending_burst()` and
    `bursts()` tell from the levels alone where a command can be, so that the caller
    runs the model only there (`pipeline.Spotter`).
    """

    def __init__(self, params: CommandParams = CommandParams(), sample_rate: int = SAMPLE_RATE,
                 window_samples: int = WINDOW_SAMPLES, labels: Sequence[str] | None = None,
                 decision: DecisionParams = DecisionParams()) -> None:
        self.params = params
        self._labels = tuple(labels) if labels is not None else None
        self._sample_rate = sample_rate
        self.retune(decision)
        hop_s = HOP_SAMPLES / sample_rate
        self.floor = NoiseFloor(hop_s)
        self._size = int(round(HISTORY_S / hop_s))
        self._levels = np.full(self._size, SILENCE_DBFS)
        self._lv = [SILENCE_DBFS] * self._size  # the same as a list: the contour scans index it hop by hop
        # smoothed probabilities of the window ending at each hop (NaN: no inference there)
        self._ends = np.zeros(self._size, dtype=np.int64)  # stream position at the end of each hop
        self._probs = np.full((self._size, len(self._labels) if self._labels else 0), np.nan, dtype=np.float32)
        self._window_hops = int(round(window_samples / HOP_SAMPLES))
        self._search_hops = int(round(PEAK_SEARCH_S / hop_s))
        self._same_word_hops = int(round(SAME_WORD_S / hop_s))
        self._gap_hops = max(1, int(round(params.post_silence / hop_s)))
        self._pre_hops = int(round(params.pre_silence / hop_s))
        self._max_hops = int(round(params.max_word / hop_s))
        self._after_hops = max(self._gap_hops, int(round(params.after_silence / hop_s)))
        self._hops = 0  # hops seen; hop k (0-based) is stored at k % size
        self._pending: list[_Pending] = []
        self._recent: deque[_Word] = deque(maxlen=8)  # words judged lately, to report each once
        self._reported: dict[str, int] = {}  # keyword -> end_sample of its latest report
        self.rejected = 0
        """Candidates rejected so far (not commands, or a second keyword in one burst)."""
        self.on_reject: Callable[[Decision, str], None] | None = None
        """Called with each rejected candidate and `rule: measured value` (`detect --explain`)."""
        self._hop_s = hop_s
        self._burst_peak = SILENCE_DBFS  # the loudest hop of the latest burst, and its last hop
        self._burst_last = -self._size
        # last hops of bursts whose following gap has been heard, to judge by `bursts()`;
        # bounded: a caller that never asks (a model run at every hop) keeps only a few
        self._probes: deque[_Probe] = deque(maxlen=16)
        self._found: deque[tuple[int, int]] = deque(maxlen=16)  # bursts `bursts()` returned lately
        self._early_hops = max(1, self._gap_hops // 2)  # quiet after which a burst may be ending
        self._early: int | None = None  # the last hop of such a burst, for `ending_burst()`
        self._scans: dict[tuple[str, int, float, int], tuple[int, int]] = {}  # see `_scans_now`
        self._scans_at = -1  # the hop count they were done at

    def retune(self, decision: DecisionParams) -> None:
        """New thresholds, keywords or refractory from a reload, keeping the loudness history,
        the noise floor and the candidates being judged."""
        if self._labels is not None:
            self._keyword_ids = np.array([k for k, label in enumerate(self._labels) if label not in NON_KEYWORDS
                                          and (decision.keywords is None or label in decision.keywords)], dtype=int)
            self._min_scores = np.array([decision.threshold_for(self._labels[k]) for k in self._keyword_ids])
        self._refractory = int(decision.refractory * self._sample_rate)

    def push(self, hop: np.ndarray, end_sample: int, candidates: Sequence[Decision] = (),
             probabilities: np.ndarray | None = None) -> list[Decision]:
        return self.push_level(hop_level_db(hop), end_sample, candidates, probabilities)

    def push_level(self, level_db: float, end_sample: int, candidates: Sequence[Decision] = (),
                   probabilities: np.ndarray | None = None) -> list[Decision]:
        """`push` with the hop's level already measured: `observe`, `add` and `judge` in one."""
        self.observe(level_db, end_sample)
        self.add(self._hops - 1, candidates, probabilities)
        return self.judge()

    def observe(self, level_db: float, end_sample: int) -> None:
        """Record the next hop's level (and the stream position of its end)."""
        k = self._hops
        slot = k % self._size
        level = self.floor.update(level_db)
        self._levels[slot] = level
        self._lv[slot] = level
        self._probs[slot] = np.nan
        self._ends[slot] = end_sample
        self._hops += 1
        # where bursts of speech end, for `bursts()`: a burst goes on while hops within
        # CORE_DROP_DB of its peak follow each other with gaps shorter than post_silence
        if level >= self._speech_db():
            if k - self._burst_last > self._gap_hops:
                self._burst_peak, self._burst_last = level, k
            elif level >= self._burst_peak - CORE_DROP_DB:
                self._burst_peak, self._burst_last = max(self._burst_peak, level), k
        if k - self._burst_last == self._gap_hops:
            self._probes.append(_Probe(self._burst_last))
        if k - self._burst_last == self._early_hops:
            self._early = self._burst_last

    def add(self, hop: int, candidates: Sequence[Decision] = (), probabilities: np.ndarray | None = None) -> None:
        """The model's verdict on the window ending at `hop` (a hop already observed, at
        most HISTORY_S old): the decider's smoothed probabilities and its candidates."""
        if probabilities is not None and self._labels is not None:
            self._probs[hop % self._size] = probabilities
        self._pending.extend(_Pending(decision, hop) for decision in candidates)

    @property
    def last_burst_hop(self) -> int:
        """The newest hop of speech that belongs to a burst (extends the latest one)."""
        return self._burst_last

    @property
    def history_hops(self) -> int:
        """Hops of levels kept (HISTORY_S): a window the model ran on can be judged only
        while the hop it ends with is in them."""
        return self._size

    @property
    def verdict_delay_hops(self) -> int:
        """Hops after a burst's end at which the rules can accept it (after_silence)."""
        return self._after_hops

    @property
    def waiting(self) -> bool:
        """Candidates wait to be judged."""
        return bool(self._pending)

    def judge(self) -> list[Decision]:
        """The candidates that can be judged now and are commands."""
        return self._judge(final=False) if self._pending else []

    def bursts(self, final: bool = False) -> list[tuple[int, int, int]]:
        """Bursts of speech that the loudness contour alone takes for a command (the rules
        `_verdict` applies to a candidate), each as soon as it is known, as (first hop of
        the stretch of speech it is part of, its first hop, its last hop): only windows
        around these can hold a command. Each stretch ended by a gap is judged for every
        word a window ending inside it can see (a window ending mid-stretch can see another
        word than one ending after it: the "left" of a quick "left up"). With `final`, the
        end of the stream counts as silence."""
        if final and self._hops and self._burst_last >= 0 and self._hops - 1 - self._burst_last < self._gap_hops:
            self._probes.append(_Probe(self._burst_last))
        if not self._probes:  # silence, noise, running speech: nothing to judge at most hops
            return []
        found: set[tuple[int, int, int]] = set()
        waiting: list[_Probe] = []
        oldest = self._hops - self._size
        speech = self._speech_db()
        for probe in self._probes:
            if probe.hop < oldest:
                continue
            if probe.open is None:  # the words a window ending inside the stretch can see
                # (its last hop may be below the speech margin now: the noise floor moves)
                last = next((h for h in range(probe.hop, max(0, oldest, probe.hop - self._window_hops), -1)
                             if self._level(h) >= speech), probe.hop)
                probe.start, _ = self._burst_start(last, speech, max(0, oldest))
                probe.open = list(dict.fromkeys(self._latest_words(
                    [h for h in range(probe.start, probe.hop + 1) if self._level(h) >= speech])))
            probe.open = [word for word in probe.open if not self._judge_word(probe, word, final, speech)]
            found.update(probe.accepted)
            if probe.open and self._hops - 1 - probe.hop < self._window_hops:
                waiting.append(probe)
        self._probes = deque(waiting, maxlen=self._probes.maxlen)
        seen = set(self._found)  # a burst's tail can end a second stretch holding the same words
        new = sorted(b for b in found if (b[1], b[2]) not in seen)
        self._found.extend((b[1], b[2]) for b in new)
        return new

    def _judge_word(self, probe: _Probe, word: tuple[int, int], final: bool, speech: float) -> bool:
        """Judge one word of `probe` if its verdict can have changed; True once it has one."""
        if not final and not self._judge_again(probe.waits.get(word), speech):
            return False
        shape = probe.shapes.get(word)
        waits: list[_Wait] = []
        if shape is not None:  # it waits only for what follows it
            verdict = self._after(shape, final, waits)
        else:
            pending: list[_Verdict] = []
            verdict = self._verdict(probe.hop, final, word, pending=pending, waits=waits)
            if pending:
                probe.shapes[word] = pending[0]
        if verdict is None:
            if waits:
                probe.waits[word] = waits[0]
            else:  # no reason given (a subclass's verdict): judge it again at the next hop
                probe.waits.pop(word, None)
            return False
        if verdict.accepted:
            probe.accepted.add((min(probe.start, verdict.start), verdict.start, verdict.end))
        return True

    def _judge_again(self, wait: _Wait | None, speech: float) -> bool:
        """Can a verdict that was None (for `wait`) be something else now?"""
        if wait is None:
            return True
        return self._hops - 1 >= wait.until or (wait.speech_db is not None and wait.speech_db != speech)

    def ending_burst(self) -> tuple[int, int, int] | None:
        """A burst that may be ending (half of post_silence of quiet after it) and that no
        rule rejects from what is heard so far, as `bursts()` gives them; once per burst.
        Only the word a window ending with it sees is judged: this is a hint, to start
        the model early, not a verdict."""
        if self._early is None:
            return None
        hop, self._early = self._early, None
        oldest = max(0, self._hops - self._size)
        if hop < oldest:
            return None
        verdict = self._verdict(hop, False, gap_hops=self._early_hops)
        if verdict is None or not verdict.accepted:
            return None
        stretch, _ = self._burst_start(hop, self._speech_db(), oldest)
        return min(stretch, verdict.start), verdict.start, verdict.end

    def finish(self, candidates: Sequence[Decision] = (), probabilities: np.ndarray | None = None) -> list[Decision]:
        """End of stream: it counts as silence, so every waiting candidate (and
        `candidates`, decisions made on the last window, whose smoothed probabilities
        are `probabilities`) is judged now."""
        self.add(max(0, self._hops - 1), candidates, probabilities if self._hops else None)
        return self._judge(final=True) if self._pending else []

    def _judge(self, final: bool) -> list[Decision]:
        accepted: list[tuple[_Word, Decision]] = []
        waiting: list[_Pending] = []
        judged: list[tuple[_Pending, _Verdict]] = []
        oldest = self._hops - self._size
        for item in self._pending:
            if item.hop < oldest:  # never, unless a window far behind was run late: its levels are gone
                self._reject(item.decision, f"history: its window ended over {HISTORY_S:g} s ago")
                continue
            # judged in firing order: a later word waits for an earlier one still open
            verdict = None if waiting else self._verdict(item.hop, final)
            if verdict is not None and verdict.accepted and not final and self._labels is not None \
                    and self._hops - 1 < self._clean_from(verdict):
                verdict = None  # the windows free of the word before are not heard yet
            if verdict is None:
                waiting.append(item)
            else:
                judged.append((item, verdict))
        peaks = [v.peak for _, v in judged] + [w.peak for w in self._recent]
        for item, verdict in judged:
            fired = item.decision
            word = _Word(verdict.peak, verdict.accepted, verdict.start, verdict.end, frozenset({fired.keyword}))
            if any(w.same_word(word, fired.keyword, self._same_word_hops) for w in self._recent):
                self._reject(fired, "same_word: this word was judged already")  # a later, second guess
                continue
            decision = fired
            rule = None
            if word.accepted and verdict.row_after >= 0 and not self._follows_command(verdict, accepted):
                word = dataclasses.replace(word, accepted=False)
                rule = "pre_silence: the short burst before it (< pre_silence) was not a command"
            # a burst that holds several words ("left up" said quickly) cannot be judged
            # as one word: its candidates stand as the decider made them
            several = any(verdict.start <= p <= verdict.end and abs(p - verdict.peak) >= self._same_word_hops
                          for p in peaks)
            # ... and so cannot a burst that overlaps a word accepted before (words glued
            # by a gap shorter than post_silence): its windows still hear that word
            several = several or any(w.accepted and w.start <= verdict.end and verdict.start <= w.end
                                     for w in [*self._recent, *(w for w, _ in accepted)])
            if word.accepted and self._labels is not None and not several:
                rescored = self._rescore(verdict, fired)
                if rescored is None:
                    word = dataclasses.replace(word, accepted=False)
                else:
                    decision = rescored
                    word = dataclasses.replace(word, keywords=frozenset({fired.keyword, decision.keyword}))
            same = [k for k, (w, _) in enumerate(accepted)
                    if w.same_word(word, decision.keyword, self._same_word_hops)]
            if word.accepted and not same and self._repeats(decision):
                word = dataclasses.replace(word, accepted=False)  # one word reported once, as plain mode does
                rule = "same_word: the same keyword was reported within the refractory time"
            if not word.accepted:
                self._reject(fired, rule or (self._why(verdict) if self.on_reject else ""))
                self._recent.append(word)
            elif same:  # two guesses for one word in the same hop: keep the more confident
                k = same[0]  # (on a tie, the decider's own candidate over a corrected one)
                kept = accepted[k][1]
                if kept.score < decision.score or (kept.score == decision.score and decision is fired):
                    accepted[k], kept, decision = (word, decision), decision, kept
                self._reject(decision, "same_word: " + ("this word is reported once" if kept.keyword == decision.keyword
                                                        else "another keyword scored higher for this word"))
            else:
                accepted.append((word, decision))
        self._pending = waiting
        self._recent.extend(w for w, _ in accepted)
        for _, d in accepted:
            self._reported[d.keyword] = max(d.end_sample, self._reported.get(d.keyword, d.end_sample))
        return sorted((d for _, d in accepted), key=lambda d: d.end_sample)

    def _reject(self, decision: Decision, rule: str) -> None:
        self.rejected += 1
        if self.on_reject is not None:
            self.on_reject(decision, rule)

    def _why(self, verdict: _Verdict) -> str:
        """`rule: what was measured`, the rule being the CommandParams field that rejected the word."""
        p, length = self.params, (verdict.end - verdict.start + 1) * self._hop_s
        snr = self._level(verdict.peak) - self.floor.floor_db
        if verdict.accepted:  # the burst was a command, the whole word scored too low
            return f"word_score_ratio: no keyword scores {p.word_score_ratio:g} x its threshold over the whole word"
        if "max_word" in verdict.reason:
            return f"max_word: speech lasts {length:.2f} s > {p.max_word:g} s"
        if "min_snr_db" in verdict.reason:
            return f"min_snr_db: peak {snr:.1f} dB above the noise floor < {p.min_snr_db:g} dB"
        if "after_silence" in verdict.reason:
            return f"after_silence: more speech follows the word within {p.after_silence:g} s"
        oldest = max(0, self._hops - self._size)
        threshold = max(self._speech_db(), self._level(verdict.peak) - CORE_DROP_DB)
        start, before = self._burst_start(verdict.peak, threshold, oldest)
        pause = (start - max(before + 1, oldest)) * self._hop_s
        return f"pre_silence: pause before the word {pause:.2f} s < {p.pre_silence:g} s"

    def _follows_command(self, verdict: _Verdict, accepted: Sequence[tuple[_Word, Decision]]) -> bool:
        """Does the row of short bursts `verdict` ends start with a command? The short burst
        before it (or the pause before that burst) holds a word accepted as a command.
        "yes ... no" is a row of commands; "oh ... right", "so ... stop" are not: without
        this, any short word before a keyword stood in for the pause before a command."""
        words = [*self._recent, *(w for w, _ in accepted)]
        return any(w.accepted and w.start < verdict.start and w.end >= verdict.row_after - self._pre_hops
                   for w in words)

    def _repeats(self, decision: Decision) -> bool:
        """The same keyword was reported within the decider's refractory time: the same
        word again (a correction landing on the word before), never a new command."""
        last = self._reported.get(decision.keyword)
        return last is not None and abs(decision.end_sample - last) < self._refractory

    def _rescore(self, verdict: _Verdict, fired: Decision) -> Decision | None:
        """The word judged as a whole: the keyword with the highest smoothed score over
        the windows that hold the entire burst (those ending between the burst's end and
        one window after its start, as far as heard), if it clears its threshold; None
        if none does. The window that fired may have seen only the word's onset ("no"
        for "down", "off" for "on", "left" for the first syllable of "last Tuesday").
        Without probabilities for those windows, `fired` stands."""
        now = self._hops - 1
        oldest = max(0, now - self._size + 1)
        a, b = self._clean_from(verdict), verdict.start + self._window_hops - 1
        lo, hi = max(oldest, min(a, b)), min(now, max(a, b))
        if hi < lo:
            return fired
        hops = np.arange(lo, hi + 1) % self._size
        probs = self._probs[hops][:, self._keyword_ids]
        valid = ~np.isnan(probs[:, 0]) if len(self._keyword_ids) else np.zeros(len(hops), dtype=bool)
        if not valid.any():
            return fired
        hops, probs = hops[valid], probs[valid]
        best = probs.max(axis=0)
        j = int(np.argmax(best))
        if best[j] < self._min_scores[j] * self.params.word_score_ratio:
            return None
        at = int(np.argmax(probs[:, j]))  # the window where the word's keyword scored best
        assert self._labels is not None  # re-scoring happens only with labels (see _judge)
        keyword = self._labels[self._keyword_ids[j]]
        if keyword == fired.keyword:  # confirmed: report the window that fired, as plain mode does
            return fired
        return Decision(keyword, float(best[j]), int(self._ends[hops[at]]))  # corrected

    def _clean_from(self, verdict: _Verdict) -> int:
        """The first window (by its end hop) that holds all of the word and none of the
        word accepted just before it, nor that word's audible tail (any hop above the
        noise floor by speech_margin_db up to the word's start). Windows holding the end
        of "yes" and all of "no" say `go`; those starting after it say `no`. Without an
        accepted word within a window before it: the word's end (no wait). Never later
        than the last window holding the whole word."""
        last = verdict.start + self._window_hops - 1
        previous = [w.end for w in self._recent if w.accepted and verdict.start - self._window_hops <= w.end
                    < verdict.start]
        if not previous:
            return verdict.end
        speech = self._speech_db()
        oldest = max(0, self._hops - self._size)
        k = verdict.start - 1
        while k > max(previous) and k >= oldest and self._level(k) < speech:
            k -= 1
        return min(last, max(verdict.end, k + self._window_hops))

    def _speech_db(self) -> float:
        """The level from which a hop counts as speech: the noise floor + speech_margin_db."""
        return self.floor.floor_db + self.params.speech_margin_db

    def _level(self, k: int) -> float:
        return self._lv[k % self._size]

    def _burst_start(self, hop: int, threshold: float, oldest: int) -> tuple[int, int]:
        """Walk back from speech hop `hop` across gaps shorter than post_silence.

        Returns the burst's first hop and the last speech hop before the gap that ends
        it (`oldest - 1` if the history ran out first). Memoised like `_scan_forward`."""
        scans = self._scans_now()
        key = (BACKWARD, hop, threshold, oldest)
        found = scans.get(key)
        if found is None:
            found = scans[key] = self._scan_back(hop, threshold, oldest)
        return found

    def _scan_back(self, hop: int, threshold: float, oldest: int) -> tuple[int, int]:
        start, run, k = hop, 0, hop - 1
        lv, size = self._lv, self._size
        while k >= oldest:
            if lv[k % size] >= threshold:
                if run >= self._gap_hops:
                    return start, k
                start, run = k, 0
            else:
                run += 1
            k -= 1
        return start, oldest - 1

    def _scan_forward(self, peak: int, threshold: float, gap: int) -> tuple[int, int]:
        """From speech hop `peak` forward, as far as heard: the burst's last hop (hops at
        or above `threshold` separated by fewer than `gap` quiet hops) and the quiet hops
        heard after it (the burst has ended once they reach `gap`). It stops at the first
        hop that makes the burst max_word long or longer.

        Memoised for the newest hop (see `_scans_now`): most words of a stretch of running
        speech are this scan to max_word from a peak they share."""
        now = self._hops - 1
        scans = self._scans_now()
        key = (FORWARD, peak, threshold, gap)
        found = scans.get(key)
        if found is None:
            end, run, k = peak, 0, peak + 1
            lv, size, longest = self._lv, self._size, peak + self._max_hops
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

    def _scans_now(self) -> dict[tuple[str, int, float, int], tuple[int, int]]:
        """The contour scans done at the newest hop, by their arguments. A scan reads only
        the levels heard (which change only with the next hop), and `bursts()` judges every
        word of a stretch at once: they share peaks, and so bursts and pauses before them."""
        if self._scans_at != self._hops:
            self._scans.clear()
            self._scans_at = self._hops
        return self._scans

    def _latest_words(self, hops: Sequence[int]) -> list[tuple[int, int]]:
        """In the window ending at each of `hops` (ascending, in the history), the word that
        fired: its latest audible hop (the last within LATEST_WORD_DB of the window's loudest)
        and its peak (the first loudest hop in PEAK_SEARCH_S up to it). One pass: the windows
        are rows of one array (`bursts()` asks for every speech hop of a stretch). Hops
        before the history's oldest are -inf: never audible, never the loudest."""
        if not len(hops):
            return []
        ends = np.asarray(hops, dtype=np.int64)
        w, reach = self._window_hops, self._search_hops
        oldest = max(0, self._hops - self._size)
        lo = max(oldest, int(ends[0]) - w + 1)
        # padded[i + w - 1] is hop lo + i, so the window ending at hop h is padded[h - lo:][:w]
        padded = np.concatenate((np.full(w - 1, -np.inf), self._levels[np.arange(lo, int(ends[-1]) + 1) % self._size]))
        windows = padded[(ends - lo)[:, np.newaxis] + np.arange(w)]
        cut = np.maximum(windows.max(axis=1) - LATEST_WORD_DB, self._speech_db())
        audible = windows >= cut[:, np.newaxis]
        last = w - 1 - np.argmax(audible[:, ::-1], axis=1)  # the last audible column of each row
        latest = np.where(audible.any(axis=1), ends - (w - 1) + last, ends)
        # the peak: the first loudest of hops latest - reach .. latest that are in the window
        from_hop = (latest - reach)[:, np.newaxis] + np.arange(reach + 1)
        around = np.where(from_hop >= (ends - w + 1)[:, np.newaxis], padded[from_hop - lo + w - 1], -np.inf)
        peaks = latest - reach + np.argmax(around, axis=1)
        return list(zip(latest.tolist(), peaks.tolist()))

    def _verdict(self, hop: int, final: bool, word: tuple[int, int] | None = None,
                 gap_hops: int | None = None, pending: list[_Verdict] | None = None,
                 waits: list[_Wait] | None = None) -> _Verdict | None:
        """Judge the burst of speech inside the window ending at `hop` (or the one of `word`,
        as `_latest_words` gives it); None: wait. With `gap_hops` shorter than post_silence's, a
        provisional verdict: a burst followed by that much quiet that no rule rejects yet
        is accepted (reason "provisional"). A burst that waits only for what follows it is
        appended to `pending` (to be finished by `_after`). On None, why it waits is
        appended to `waits` (see `_Wait`)."""
        gap = self._gap_hops if gap_hops is None else gap_hops
        now = self._hops - 1
        oldest = max(0, now - self._size + 1)
        speech = self._speech_db()
        latest, peak_hop = word or self._latest_words([hop])[0]
        first = peak_hop  # the oldest hop read (the scans go forward from it)
        while True:
            peak = self._level(peak_hop)
            threshold = max(speech, peak - CORE_DROP_DB)
            if peak < threshold:  # nothing above the noise floor (yet: a stream that starts
                # with speech learns its floor from the pause after it): wait up to a window
                if final or now - hop >= self._window_hops:
                    return _Verdict(False, peak_hop, peak_hop, peak_hop, "no speech above the noise floor")
                if waits is not None:
                    waits.append(_Wait(min(hop + self._window_hops, self._overwritten(peak_hop)), speech))
                return None
            # forward: the burst ends at the first gap of post_silence
            end, run = self._scan_forward(peak_hop, threshold, gap)
            if end - peak_hop >= self._max_hops:  # already too long, no need to wait
                return _Verdict(False, peak_hop, peak_hop, end, "longer than max_word")
            if end >= latest:
                break
            # the burst ended before the window's latest speech: that later speech is
            # what fired, so judge the burst it belongs to
            later = max(range(end + 1, latest + 1), key=self._level)
            if self._level(later) < speech:
                break
            peak_hop = later
        if run < gap and not final:  # the burst is still going on
            if waits is not None:
                # it can end after `gap - run` more quiet hops at the earliest, or get too
                # long with the next speech hop from peak + max_word on
                until = min(now + gap - run, max(now + 1, peak_hop + self._max_hops))
                waits.append(_Wait(min(until, self._overwritten(first)), speech))
            return None
        # backward: the burst starts after a gap of post_silence. After running speech
        # it needs pre_silence; after another short burst (a command in a row of
        # commands: "left ... up") the gap of post_silence is enough.
        start, before = self._burst_start(peak_hop, threshold, oldest)
        row_after = -1
        if before < oldest:
            # no speech before the burst in the whole history: isolated if the quiet
            # heard before it is long enough, or if it reaches back to the stream start
            isolated = start - oldest >= self._pre_hops or oldest == 0
        elif start - before - 1 >= self._pre_hops:
            isolated = True
        else:
            # the previous burst must itself be a short one with a pause before it; quiet
            # that reaches back to the history's start counts as that pause
            previous, earlier = self._burst_start(before, threshold, oldest)
            bounded = earlier >= oldest or oldest == 0 or previous - oldest >= self._gap_hops
            isolated = bounded and before - previous < self._max_hops
            # a quieter burst before it is someone else (a TV, far talk): only the talker's
            # own short burst has to be a command
            own = max(self._lv[k % self._size] for k in range(previous, before + 1)) >= peak - ROW_TALKER_DB
            row_after = previous if isolated and own else -1
        loud = peak >= self.floor.floor_db + self.params.min_snr_db
        # what is known already rejects at once (running speech is rejected here, without
        # waiting for what follows)
        if end - start + 1 > self._max_hops:
            return _Verdict(False, peak_hop, start, end, "longer than max_word")
        if not isolated:
            return _Verdict(False, peak_hop, start, end, "no pause before it (pre_silence)")
        if not loud:
            return _Verdict(False, peak_hop, start, end, "too quiet above the noise floor (min_snr_db)")
        if gap != self._gap_hops:
            return _Verdict(True, peak_hop, start, end, "provisional", row_after=row_after)
        shape = _Verdict(True, peak_hop, start, end, threshold=threshold, row_after=row_after)
        verdict = self._after(shape, final, waits)
        if verdict is None and pending is not None:
            pending.append(shape)
        return verdict

    def _after(self, shape: _Verdict, final: bool, waits: list[_Wait] | None = None) -> _Verdict | None:
        """A burst that passed every other rule, judged on what follows it (None: wait, and
        why is appended to `waits`)."""
        followed = self._followed_by_quiet(shape.end, shape.threshold, self._hops - 1, final, waits)
        if followed is None:
            return None
        if not followed:
            return dataclasses.replace(shape, accepted=False, reason="running speech follows it (after_silence)")
        return shape

    def _followed_by_quiet(self, end: int, threshold: float, now: int, final: bool,
                           waits: list[_Wait] | None = None) -> bool | None:
        """After the burst ending at hop `end`: True if after_silence of quiet follows it,
        or another short burst (the next command of a row: "yes ... no") and then
        post_silence; False if longer speech follows (the first word of a sentence after
        a pause); None while that is not heard yet. The stream end counts as quiet.
        On None, when the answer can be known at the earliest is appended to `waits`
        (it does not depend on the noise floor: `threshold` is the burst's own)."""
        k = end + 1
        lv, size, heard = self._lv, self._size, min(now, end + self._after_hops)
        while k <= heard:
            if lv[k % size] >= threshold:
                break
            k += 1
        else:
            if k > end + self._after_hops or final:
                return True
            if waits is not None:
                # quiet so far: True at end + after_silence; speech coming first (from the
                # next hop on) is judged when its gap or its max_word length is heard
                speech_first = now + 1 + min(self._gap_hops, self._max_hops)
                waits.append(_Wait(min(end + self._after_hops, speech_first, self._overwritten(end + 1))))
            return None
        nxt, run, j = k, 0, k + 1
        while j <= now and run < self._gap_hops:
            if lv[j % size] >= threshold:
                nxt, run = j, 0
                if nxt - k >= self._max_hops:
                    return False
            else:
                run += 1
            j += 1
        if run >= self._gap_hops or final:
            return nxt - k + 1 <= self._max_hops
        if waits is not None:
            # the burst after it goes on: it ends after `gap - run` more quiet hops at the
            # earliest, or gets too long with a speech hop from k + max_word on
            until = min(now + self._gap_hops - run, max(now + 1, k + self._max_hops))
            waits.append(_Wait(min(until, self._overwritten(end + 1))))
        return None

    def _overwritten(self, hop: int) -> int:
        """The first newest hop at which hop `hop`'s level is no longer in the history: a
        wait that read it must be judged again then (it would read another hop's level)."""
        return hop + self._size
