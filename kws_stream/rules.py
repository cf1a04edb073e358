"""The shape rules of command mode, one object each, and `ShapeRules`, which applies them
to the burst of speech a window holds.

A command is a short burst of speech with a pause before and after it. Over the loudness
contour (`contour.Contour`), in this order: the window must hold speech (`NoSpeech`); the
burst must not be longer than max_word (`MaxWord`); a pause of pre_silence must precede
it, or it must be the next command of a row (`PauseBefore`); its peak must stand
min_snr_db above the noise floor (`Loudness`); and quiet, or another short burst, must
follow it (`QuietAfter`). Each returns a `verdicts` value and explains itself. A further
rule (an experiment's) is an `AddedRule`: it sees every burst the others accept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from .contour import CORE_DROP_DB, DIGITAL_SILENCE_DBFS, SMOOTHING_TAIL_HOPS, Contour
from .verdicts import Accept, Burst, Reject, RuleId, Verdict, Wait

if TYPE_CHECKING:
    from .command import CommandParams
    from .words import Word

ROW_TALKER_DB = 10.0  # a short burst before a word peaking within this of the word's peak is the same
#                      talker's: then it must be a command for the word to be the next of a row


class AddedRule(Protocol):
    """A rule added by composition: None to let an accepted burst stand, or a Reject
    (`RuleId.EXTRA`, its own text)."""

    def __call__(self, burst: Burst, contour: Contour) -> Reject | None: ...


class NoSpeech:
    """The window must hold speech: a hop speech_margin_db above the noise floor. A stream
    that starts with speech learns its floor from the pause after it, so wait up to a window."""

    def __init__(self, params: CommandParams, contour: Contour) -> None:
        self._margin = params.speech_margin_db
        self._contour = contour

    def check(self, hop: int, peak: int, final: bool) -> Reject | Wait | None:
        c = self._contour
        speech = c.speech_db()
        if c.level(peak) >= speech:
            return None
        if final or c.now - hop >= c.hops.window:
            return Reject(RuleId.NO_SPEECH, Burst(peak, peak, peak), "peak {measured:.1f} dB above the noise floor "
                          "< {limit:g} dB", c.level(peak) - c.floor.floor_db, self._margin)
        return Wait(min(hop + c.hops.window, c.overwritten(peak)), speech)


class MaxWord:
    """A command is at most max_word long; running speech is rejected as soon as it is."""

    TEXT = "speech lasts {measured:.2f} s > {limit:g} s"

    def __init__(self, params: CommandParams, contour: Contour) -> None:
        self._limit = params.max_word
        self._hops = contour.hops

    def _seconds(self, hops: int) -> float:
        """The sound's length of a burst `hops` long in smoothed levels (without their tail)."""
        return (hops - SMOOTHING_TAIL_HOPS) * self._hops.seconds

    def growing(self, peak: int, end: int) -> Reject | None:
        """From its peak alone the burst is too long already: no need to wait for its end."""
        if end - peak < self._hops.longest:
            return None
        return Reject(RuleId.MAX_WORD, Burst(peak, peak, end), self.TEXT, self._seconds(end - peak + 1), self._limit)

    def check(self, burst: Burst) -> Reject | None:
        length = burst.end - burst.start + 1
        if length <= self._hops.longest:
            return None
        return Reject(RuleId.MAX_WORD, burst, self.TEXT, self._seconds(length), self._limit)


class PauseBefore:
    """pre_silence of non-speech before the burst (the stream's start counts), unless it is
    the next command of a row: after a short burst with a pause before it, post_silence is
    enough, if that burst was a command (`follows_command`) or someone else's (quieter by
    ROW_TALKER_DB: a TV's syllable). "yes ... no" is a row of commands; "oh ... right" is not."""

    def __init__(self, params: CommandParams, contour: Contour) -> None:
        self._limit = params.pre_silence
        self._contour = contour

    def measure(self, peak: int, start: int, before: int, threshold: float, oldest: int) -> tuple[int, float | None]:
        """For the burst from `start` (`before`: the last speech hop before it, < `oldest`
        if none is kept): the first hop of the row's previous burst if it is admitted as
        the next of a row whose start must be a command (else -1), and the pause before
        it in seconds if it is too short (None if it passes)."""
        c, h = self._contour, self._contour.hops
        row_after = -1
        if before < oldest:
            # no speech before the burst in the whole history: isolated if the quiet
            # heard before it is long enough, or if it reaches back to the stream start
            isolated = start - oldest >= h.pre or oldest == c.first
        elif start - before - 1 >= h.pre:
            isolated = True
        else:
            # the previous burst must itself be a short one with a pause before it; quiet
            # that reaches back to the history's start counts as that pause
            previous, earlier = c.burst_start(before, threshold, oldest)
            bounded = earlier >= oldest or oldest == c.first or previous - oldest >= h.gap
            isolated = bounded and before - previous < h.longest
            # a quieter burst before it is someone else (a TV, far talk): only the talker's
            # own short burst has to be a command
            own = max(c.level(k) for k in range(previous, before + 1)) >= c.level(peak) - ROW_TALKER_DB
            row_after = previous if isolated and own else -1
        return row_after, None if isolated else (start - max(before + 1, oldest)) * h.seconds

    def check(self, burst: Burst, pause: float | None) -> Reject | None:
        if pause is None:
            return None
        return Reject(RuleId.PRE_SILENCE, burst, "pause before the word {measured:.2f} s < {limit:g} s", pause,
                      self._limit)

    def follows_command(self, burst: Burst, words: Iterable[Word]) -> bool:
        """Does the row of short bursts `burst` ends start with a command? The short burst
        before it (or the pause before that burst) holds a word accepted as a command."""
        reach = burst.row_after - self._contour.hops.pre
        return any(w.accepted and w.start < burst.start and w.end >= reach for w in words)

    def not_a_row(self, burst: Burst) -> Reject:
        return Reject(RuleId.PRE_SILENCE, burst, "the short burst before it (< pre_silence) was not a command")


class Loudness:
    """The peak min_snr_db above the noise floor: a command is spoken to the device, while a
    TV or talk further away peaks barely above the room's noise.

    The floor is the room's only if the room was heard: in quiet before the word or after its
    decay. A stream that starts with the word and stops (ends, or turns to digital silence: a
    gated source, a short clip padded to a window) while the word is still decaying never let
    the room be heard, and the floor it learned is the word's own tail; then the rule has
    nothing to judge by and lets the word pass, as the stream's start counts as the pause
    before it and its end as the quiet after."""

    def __init__(self, params: CommandParams, contour: Contour) -> None:
        self._limit = params.min_snr_db
        self._contour = contour

    def check(self, burst: Burst, final: bool = False) -> Reject | None:
        peak, floor = self._contour.level(burst.peak), self._contour.floor.floor_db
        if peak >= floor + self._limit or self.room_unheard(burst, final):
            return None
        return Reject(RuleId.MIN_SNR, burst, "peak {measured:.1f} dB above the noise floor < {limit:g} dB",
                      peak - floor, self._limit)

    def room_unheard(self, burst: Burst, final: bool) -> bool:
        """Nothing but digital silence before the burst since the stream's start, and after
        it only levels that keep falling until digital silence or the stream's end."""
        c = self._contour
        if burst.start - c.first >= c.hops.gap or any(c.level(k) > DIGITAL_SILENCE_DBFS
                                                      for k in range(max(c.first, c.oldest), burst.start)):
            return False
        previous = c.level(burst.end)
        for k in range(burst.end + 1, c.now + 1):
            level = c.level(k)
            if level <= DIGITAL_SILENCE_DBFS:
                return True
            if level >= previous:  # it levels off: the room is heard
                return False
            previous = level
        return final


class QuietAfter:
    """after_silence of quiet after the burst, or another short burst and then post_silence
    (the next command of a row); longer speech after it makes it the first word of a
    sentence. The stream's end counts as quiet."""

    def __init__(self, params: CommandParams, contour: Contour) -> None:
        self._limit = params.after_silence
        self._contour = contour

    def judge(self, shape: Burst, final: bool) -> Verdict:
        """Its waits do not depend on the noise floor: the threshold is the burst's own."""
        c, h = self._contour, self._contour.hops
        end, threshold, now = shape.end, shape.threshold, c.now
        lv, size, heard = c.lv, c.size, min(now, end + h.after)
        k = end + 1
        while k <= heard:
            if lv[k % size] >= threshold:
                break
            k += 1
        else:
            if k > end + h.after or final:
                return Accept(shape)
            # quiet so far: accepted at end + after_silence; speech coming first (from the
            # next hop on) is judged when its gap or its max_word length is heard
            speech_first = now + 1 + min(h.gap, h.longest)
            return Wait(min(end + h.after, speech_first, c.overwritten(end + 1)), None, shape)
        nxt, run, j = k, 0, k + 1
        while j <= now and run < h.gap:
            if lv[j % size] >= threshold:
                nxt, run = j, 0
                if nxt - k >= h.longest:
                    return self._reject(shape)
            else:
                run += 1
            j += 1
        if run >= h.gap or final:
            return Accept(shape) if nxt - k + 1 <= h.longest else self._reject(shape)
        # the burst after it goes on: it ends after `gap - run` more quiet hops at the
        # earliest, or gets too long with a speech hop from k + max_word on
        until = min(now + h.gap - run, max(now + 1, k + h.longest))
        return Wait(min(until, c.overwritten(end + 1)), None, shape)

    def _reject(self, shape: Burst) -> Reject:
        return Reject(RuleId.AFTER_SILENCE, shape, "more speech follows the word within {limit:g} s",
                      limit=self._limit)


class ShapeRules:
    """The shape rules applied to the burst of speech a window holds."""

    def __init__(self, params: CommandParams, contour: Contour, extra: Sequence[AddedRule] = ()) -> None:
        self.contour = contour
        self.no_speech = NoSpeech(params, contour)
        self.max_word = MaxWord(params, contour)
        self.pause_before = PauseBefore(params, contour)
        self.loudness = Loudness(params, contour)
        self.quiet_after = QuietAfter(params, contour)
        self.extra = tuple(extra)

    def verdict(self, hop: int, final: bool, word: tuple[int, int] | None = None, gap: int | None = None) -> Verdict:
        """Judge the burst of speech inside the window ending at `hop` (or the one of `word`,
        (latest hop, peak) as `Contour.latest_words` gives it). With `gap` shorter than
        post_silence's, a provisional verdict: a burst followed by that much quiet that no
        rule rejects yet is accepted."""
        c, h = self.contour, self.contour.hops
        gap = h.gap if gap is None else gap
        now, oldest, speech = c.now, c.oldest, c.speech_db()
        latest, peak_hop = word or c.latest_words([hop])[0]
        first = peak_hop  # the oldest hop read (the scans go forward from it)
        quiet = self.no_speech.check(hop, peak_hop, final)
        if quiet is not None:
            return quiet
        while True:
            threshold = max(speech, c.level(peak_hop) - CORE_DROP_DB)
            # forward: the burst ends at the first gap of post_silence
            end, run = c.scan_forward(peak_hop, threshold, gap)
            too_long = self.max_word.growing(peak_hop, end)
            if too_long is not None:
                return too_long
            if end >= latest:
                break
            # the burst ended before the window's latest speech: that later speech is
            # what fired, so judge the burst it belongs to
            later = max(range(end + 1, latest + 1), key=c.level)
            if c.level(later) < speech:
                break
            peak_hop = later
        if run < gap and not final:  # the burst is still going on: it can end after `gap - run` more
            # quiet hops at the earliest, or get too long with the next speech hop from peak + max_word on
            until = min(now + gap - run, max(now + 1, peak_hop + h.longest))
            return Wait(min(until, c.overwritten(first)), speech)
        # backward: the burst starts after a gap of post_silence
        start, before = c.burst_start(peak_hop, threshold, oldest)
        row_after, pause = self.pause_before.measure(peak_hop, start, before, threshold, oldest)
        burst = Burst(peak_hop, start, end, threshold, row_after)
        # what is known already rejects at once (running speech is rejected here, without
        # waiting for what follows)
        rejected = (self.max_word.check(burst) or self.pause_before.check(burst, pause)
                    or self.loudness.check(burst, final))
        if rejected is not None:
            return rejected
        if gap != h.gap:
            return Accept(burst, provisional=True)
        return self.after(burst, final)

    def after(self, shape: Burst, final: bool) -> Verdict:
        """A burst that passed every other rule, judged on what follows it, then by the
        rules added."""
        verdict = self.quiet_after.judge(shape, final)
        if isinstance(verdict, Accept):
            for rule in self.extra:
                vetoed = rule(shape, self.contour)
                if vetoed is not None:
                    return vetoed
        return verdict
