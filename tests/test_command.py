"""Command mode: keywords only when spoken as commands, not inside running speech.

Which recordings, and why. The rules alone and the gate alone are tested on level contours
(`contour()`). The real-clip tests use the shared keyword clips and the four LibriSpeech
sentences of `negatives/`: the only real commands said in a row, and the only real sentences
outside real-dev, that the project has. `benchmarks.command_mode` reports on them too (its
default table, and the keyword clips padded in the validation side of `--targets`), but the
rules are tuned on the synthetic corpus and real-dev's dev half; these tests pin what each
clip must give (every command of a row, nothing in a sentence) and measure no rate. Two
regression tests use the real-dev recording their bug was found on, and say why.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import LABELS, read_clip

from kws_stream.command import CommandGate, CommandParams
from kws_stream.contour import (
    DIGITAL_SILENCE_DBFS,
    LATEST_WORD_DB,
    LEVEL_SMOOTHING_HOPS,
    MIN_NOISE_FLOOR_DBFS,
    NOISE_FLOOR_BLOCKS,
    Contour,
    GateHops,
    NoiseFloor,
)
from kws_stream.decision import Decision
from kws_stream.features import MICRONET
from kws_stream.pipeline import Pipeline, PipelineParams
from kws_stream.rules import Loudness, MaxWord, NoSpeech, PauseBefore, QuietAfter, ShapeRules
from kws_stream.verdicts import Accept, Burst, Reject, RuleId, Wait
from kws_stream.words import Word
from testsupport.audio import room_tone

HOP_SAMPLES = MICRONET.hop_samples
RATE = MICRONET.sample_rate
LEAD = MICRONET.hops(1.0)  # the hops of the 1 s of quiet most level contours below start with

LIBRISPEECH = ["another_door.wav", "another_engineer.wav", "i_tell_you.wav", "testing_routine.wav"]
KEYWORD_CLIPS = {
    "down.wav": ["down"], "no_1000ms.wav": ["no"], "right.wav": ["right"],
    "right_left_up.wav": ["right", "left", "up"], "yes.wav": ["yes"], "yes_1000ms.wav": ["yes"],
    "yes_no_go_stop.wav": ["yes", "no", "go", "stop"],
}
PLAIN = PipelineParams(command=CommandParams(enabled=False))


# ----------------------------------------------------------------------------- the gate alone

def run_levels(levels_db, candidates: dict[int, str], params=CommandParams()):
    """Drive the gate with one level per hop; candidates fire at the given hop indices.
    Returns [(keyword, hop at which it was accepted)] (finish() = len(levels))."""
    gate = CommandGate(params)
    out = []
    for i, level in enumerate(levels_db):
        end = (i + 1) * HOP_SAMPLES
        fired = [Decision(candidates[i], 0.9, end)] if i in candidates else []
        out += [(d.keyword, i) for d in gate.push_level(level, end, fired)]
    out += [(d.keyword, len(levels_db)) for d in gate.finish()]
    return out


def contour(*parts):
    """(seconds, dBFS) pieces -> one level per 20 ms hop."""
    return [level for seconds, level in parts for _ in range(MICRONET.hops(seconds))]


def test_an_isolated_word_is_accepted_once_its_trailing_silence_is_heard():
    levels = contour((1.0, -60), (0.5, -20), (1.0, -60))
    fired_at = 70  # the decider fires near the end of the word (hop 75)
    accepted = run_levels(levels, {fired_at: "yes"})
    assert [k for k, _ in accepted] == ["yes"]
    delay = (accepted[0][1] - 75) * 0.02
    assert 0.15 <= delay <= 0.3  # post_silence (0.2 s) plus the 60 ms level smoothing at most


def test_a_keyword_inside_running_speech_is_rejected():
    # four seconds of speech-level syllables with short dips, as in a sentence
    sentence = contour(*[(0.25, -20), (0.06, -45)] * 13)
    levels = contour((1.0, -60)) + sentence + contour((1.0, -60))
    assert run_levels(levels, {LEAD + 100: "up"}) == []


def test_a_short_phrase_right_after_running_speech_is_rejected_but_after_a_pause_accepted():
    speech = contour(*[(0.25, -20), (0.06, -45)] * 8)
    tail = contour((0.3, -60), (0.4, -20), (1.0, -60))  # 0.3 s pause < pre_silence (0.6 s)
    levels = contour((1.0, -60)) + speech + tail
    fired = len(levels) - 55
    assert run_levels(levels, {fired: "right"}) == []
    levels = contour((1.0, -60)) + speech + contour((0.8, -60), (0.4, -20), (1.0, -60))
    fired = len(levels) - 55
    assert [k for k, _ in run_levels(levels, {fired: "right"})] == ["right"]


def test_commands_in_a_row_need_only_the_short_gap():
    levels = contour((1.0, -60), (0.4, -20), (0.25, -60), (0.4, -22), (1.0, -60))
    accepted = run_levels(levels, {LEAD + 18: "left", LEAD + 20 + 12 + 18: "up"})
    assert [k for k, _ in accepted] == ["left", "up"]


def test_a_row_of_short_bursts_must_start_with_a_command():
    """"oh ... right": a short word that is no command, then a keyword 0.25 s later. The short
    gap is enough only after a command ("left ... up" above); otherwise the keyword needs
    pre_silence before it like any other."""
    levels = contour((1.0, -60), (0.4, -20), (0.25, -60), (0.4, -22), (1.0, -60))
    assert run_levels(levels, {LEAD + 20 + 12 + 18: "up"}) == []
    gap = contour((1.0, -60), (0.4, -20), (0.7, -60), (0.4, -22), (1.0, -60))  # 0.7 s >= pre_silence
    assert [k for k, _ in run_levels(gap, {LEAD + 20 + 35 + 18: "up"})] == ["up"]
    # a burst 15 dB below the word is someone else's (a TV's syllable), not the talker's own word
    tv = contour((1.0, -60), (0.4, -37), (0.25, -60), (0.4, -22), (1.0, -60))
    assert [k for k, _ in run_levels(tv, {LEAD + 20 + 12 + 18: "up"})] == ["up"]


def test_a_candidate_older_than_the_levels_kept_is_rejected_not_a_crash():
    """A caller that hands the gate a window whose levels have left its 4 s history gets a
    rejection naming the rule, not a ValueError from an empty level array."""
    gate = CommandGate()
    rules: list[Reject] = []
    gate.on_reject = lambda decision, rule: rules.append(rule)
    levels = contour((1.0, -60), (0.4, -20), (6.0, -60))
    for i, level in enumerate(levels):
        gate.observe(level, (i + 1) * HOP_SAMPLES)
    gate.add(70, [Decision("yes", 0.9, 71 * HOP_SAMPLES)])  # hop 70: over 5 s before the newest
    assert gate.judge() == []
    assert len(rules) == 1 and rules[0].rule is RuleId.HISTORY
    assert not gate.waiting


@pytest.mark.parametrize("quiet_s", [1.0, 2.5, 3.5, 5.0, 10.0, 60.0])
@pytest.mark.parametrize("room_db", [-60.0, -100.0])  # room noise, and digital silence
def test_a_word_after_a_long_quiet_is_accepted(quiet_s, room_db):
    # regression: the backward walk reached the 4 s history limit in silence and
    # counted the burst isolated only at the stream start, so a word said after
    # 3 s or more of quiet was never reported
    levels = contour((0.5, -20), (quiet_s, room_db), (0.5, -20), (1.0, room_db))
    fired = len(levels) - 55
    assert [k for k, _ in run_levels(levels, {fired: "stop"})] == ["stop"]


def test_a_candidate_over_noise_alone_is_rejected():
    rng = np.random.default_rng(0)
    levels = list(-60 + rng.normal(0, 2, 150))
    assert run_levels(levels, {100: "off"}) == []


def test_stream_start_counts_as_silence_before_and_stream_end_as_silence_after():
    levels = contour((0.4, -20), (0.06, -50))  # the word starts with the stream, which ends 60 ms after it
    assert [k for k, _ in run_levels(levels, {19: "go"})] == ["go"]


def test_a_word_longer_than_max_word_is_rejected_without_waiting_for_its_end():
    levels = contour((1.0, -60), *[(0.25, -20), (0.06, -45)] * 6, (1.0, -60))  # 1.9 s of speech
    assert run_levels(levels, {70: "down"}) == []
    params = CommandParams(max_word=2.5)
    assert [k for k, _ in run_levels(levels, {70: "down"}, params)] == ["down"]


def test_two_guesses_for_one_word_give_one_report_the_more_confident():
    gate = CommandGate()
    levels = contour((1.0, -60), (0.5, -20), (1.0, -60))
    out = []
    for i, level in enumerate(levels):
        end = (i + 1) * HOP_SAMPLES
        fired = {68: [Decision("off", 0.8, end)], 72: [Decision("on", 0.95, end)]}.get(i, [])
        out += gate.push_level(level, end, fired)
    out += gate.finish()
    assert [d.keyword for d in out] == ["on"]


def test_the_same_keyword_is_never_reported_twice_within_the_refractory_time():
    # two short bursts 0.3 s apart, each with a `yes` candidate: plain mode's refractory
    # (1 s) would report one; so does the gate, whatever route the second one takes
    levels = contour((1.0, -60), (0.3, -20), (0.3, -60), (0.3, -20), (1.0, -60))
    assert [k for k, _ in run_levels(levels, {63: "yes", 93: "yes"})] == ["yes"]
    assert [k for k, _ in run_levels(levels, {63: "yes", 93: "no"})] == ["yes", "no"]


def run_scored(levels_db, probs_at, fired_at: int, fired_keyword: str, params=CommandParams()):
    """Like run_levels, with the decider's smoothed probabilities: probs_at(hop) -> the
    top label of the window ending at that hop (score 0.9), one candidate at `fired_at`."""
    gate = CommandGate(params, labels=LABELS)
    out = []
    for i, level in enumerate(levels_db):
        end = (i + 1) * HOP_SAMPLES
        p = np.full(len(LABELS), 0.1 / (len(LABELS) - 1))
        p[LABELS.index(probs_at(i))] = 0.9
        fired = [Decision(fired_keyword, 0.9, end)] if i == fired_at else []
        out += gate.push_level(level, end, fired, p)
    return out + gate.finish()


def test_the_word_as_a_whole_corrects_an_onset_confusion():
    # "on": the windows that saw only its onset say `off`, those that hold all of it `on`
    levels = contour((1.0, -60), (0.4, -20), (1.0, -60))
    out = run_scored(levels, lambda i: "off" if i < 70 else "on", 66, "off")
    assert [d.keyword for d in out] == ["on"]
    assert out[0].end_sample > 70 * HOP_SAMPLES  # the window where `on` scored, not the one that fired


def test_a_candidate_the_whole_word_does_not_support_is_rejected():
    # the first syllable of a longer word: once all of it is in the window, it is `_unknown_`
    levels = contour((1.0, -60), (0.6, -20), (1.0, -60))
    assert run_scored(levels, lambda i: "left" if i < 66 else "_unknown_", 62, "left") == []
    # a confirmed candidate is reported as the decider made it
    out = run_scored(levels, lambda i: "left", 62, "left")
    assert [(d.keyword, d.end_sample) for d in out] == [("left", 63 * HOP_SAMPLES)]


def test_a_word_barely_above_the_noise_floor_is_rejected():
    # a TV across the room: its syllables clear the speech margin (10 dB) but not min_snr_db
    quiet = contour((1.0, -60), (0.3, -45), (1.0, -60))
    assert run_levels(quiet, {60: "up"}) == []
    assert [k for k, _ in run_levels(quiet, {60: "up"}, CommandParams(min_snr_db=10.0))] == ["up"]


def random_contour(rng: np.random.Generator, hops: int) -> np.ndarray:
    """Room noise whose level steps up and down (a moving noise floor), with words and
    sentences (syllables and short gaps) of any loudness; some levels rounded to whole dB
    (ties between hops)."""
    levels = rng.normal(-60, 3, hops) + np.repeat(rng.normal(0, 6, hops // 50 + 1), 50)[:hops]
    k = int(rng.integers(0, 40))
    while k < hops:
        loud = rng.uniform(-45, -15)
        for _ in range(int(rng.integers(1, 12))):  # syllables
            n = int(rng.integers(2, 15))
            levels[k:k + n] = rng.normal(loud, 6, len(levels[k:k + n]))
            k += n + int(rng.integers(0, 14))
        k += int(rng.integers(5, 150))
    return np.round(levels) if rng.random() < 0.5 else levels


def every_hop_gate(params: CommandParams) -> CommandGate:
    """The gate as it was: every waiting word judged again at every hop, no scan memo."""
    gate = CommandGate(params)
    gate.scanner.judge_again = lambda wait, speech: True  # type: ignore[method-assign]
    gate.contour.scans_now = dict  # type: ignore[method-assign]
    return gate


@pytest.mark.parametrize("seed", range(40))
def test_bursts_skips_only_what_cannot_change(seed):
    # bursts() judges a waiting word again only from the hop its verdict can change at,
    # and memoises scans per hop: the same bursts, at the same hops, as judging it all
    rng = np.random.default_rng(seed)
    params = CommandParams(post_silence=float(rng.choice([0.06, 0.2, 0.4])),
                           after_silence=float(rng.choice([0.06, 0.25, 0.5])),
                           max_word=float(rng.choice([0.4, 1.0])), pre_silence=float(rng.choice([0.0, 0.6])))
    fast, slow = CommandGate(params), every_hop_gate(params)
    levels = random_contour(rng, 3000)
    for i, level in enumerate(levels):
        for gate in (fast, slow):
            gate.observe(float(level), (i + 1) * HOP_SAMPLES)
        assert fast.bursts() == slow.bursts(), f"hop {i}"
        assert fast.ending_burst() == slow.ending_burst(), f"hop {i}"
    assert fast.bursts(final=True) == slow.bursts(final=True)


def test_the_noise_floor_is_the_minimum_of_its_blocks():
    # the definition NoiseFloor.update implements with a cached minimum of the blocks
    rng = np.random.default_rng(2)
    levels = np.concatenate([random_contour(rng, 600), np.full(80, -100.0), random_contour(rng, 300) - 30])
    floor, powers, blocks, block = NoiseFloor(), [], [], []
    for level in levels:
        smoothed = floor.update(float(level))
        powers = [*powers, 10.0 ** (level / 10.0)][-LEVEL_SMOOTHING_HOPS:]
        assert smoothed == 10.0 * math.log10(max(sum(powers) / len(powers), 1e-10))
        block.append(smoothed)
        trusted = [x for x in block if x > DIGITAL_SILENCE_DBFS]
        if len(block) == floor.block_hops:
            blocks = [*blocks, min(trusted, default=MIN_NOISE_FLOOR_DBFS)][-NOISE_FLOOR_BLOCKS:]
            block, trusted = [], []
        assert floor.floor_db == max(min(trusted + blocks, default=math.inf), MIN_NOISE_FLOOR_DBFS)


def latest_word_of_one_window(contour: Contour, hop: int) -> tuple[int, int]:
    """The rule `latest_words` computes in one pass, for one window at a time: the latest hop
    within LATEST_WORD_DB of the window's loudest (and above the speech level), and the first
    loudest hop in PEAK_SEARCH_S up to it."""
    first, levels = contour.window_levels(hop)
    audible = np.flatnonzero(levels >= max(float(levels.max()) - LATEST_WORD_DB, contour.speech_db()))
    latest = first + int(audible[-1]) if len(audible) else hop
    lo = max(first, latest - contour.hops.search)
    return latest, lo + int(np.argmax(levels[lo - first:latest - first + 1]))


@pytest.mark.parametrize("first_hop", [0, 1234])  # a contour made mid-stream numbers hops from the stream's start
def test_latest_words_are_those_of_one_window_at_a_time(first_hop):
    rng = np.random.default_rng(1)
    contour = Contour(GateHops.of(CommandParams()), CommandParams().speech_margin_db, first_hop)
    for i, level in enumerate(random_contour(rng, 700)):
        contour.observe(float(level), (first_hop + i + 1) * HOP_SAMPLES)
        if i % 9 == 0:
            heard = range(contour.oldest, contour.heard)
            some = sorted(int(h) for h in rng.choice(heard, size=min(len(heard), 20), replace=False))
            for hops in (list(heard), some):
                assert contour.latest_words(hops) == [latest_word_of_one_window(contour, h) for h in hops]


# ----------------------------------------------------------------------------- each rule alone

def heard(levels_db, params=CommandParams()) -> Contour:
    """A contour that heard `levels_db`, one per hop from the stream's start."""
    contour = Contour(GateHops.of(params), params.speech_margin_db)
    for i, level in enumerate(levels_db):
        contour.observe(level, (i + 1) * HOP_SAMPLES)
    return contour


def test_no_speech_rejects_a_window_of_noise_once_a_window_has_passed():
    noise = heard(contour_of_noise := [-60.0] * 150)
    rule = NoSpeech(CommandParams(), noise)
    verdict = rule.check(len(contour_of_noise) - 1, 100, final=False)
    assert isinstance(verdict, Wait) and verdict.until == len(contour_of_noise) - 1 + MICRONET.window_hops  # a window later
    verdict = rule.check(90, 80, final=False)
    assert isinstance(verdict, Reject) and verdict.rule is RuleId.NO_SPEECH
    assert verdict.measured == pytest.approx(0.0, abs=0.1) and verdict.limit == 10.0
    assert rule.check(90, 80, final=False) == verdict  # a pure function of the levels heard
    assert NoSpeech(CommandParams(), heard(contour((1.0, -60), (0.4, -20)))).check(69, 60, final=False) is None


def test_max_word_measures_the_burst():
    """Bursts as the smoothed levels give them: 1.4 s of sound from hop 50 is speech in them
    up to hop 121 (the 60 ms mean outlasts it by two hops); the length is the sound's."""
    rule = MaxWord(CommandParams(), heard(contour((1.0, -60), (1.4, -20), (1.0, -60))))
    verdict = rule.check(Burst(peak=60, start=50, end=121))
    assert isinstance(verdict, Reject) and verdict.rule is RuleId.MAX_WORD
    assert verdict.measured == pytest.approx(1.4) and str(verdict) == "max_word: speech lasts 1.40 s > 1 s"
    assert rule.check(Burst(peak=60, start=50, end=101)) is None  # 1.0 s of sound: just a command
    assert rule.check(Burst(peak=60, start=50, end=102)) is not None
    assert rule.growing(peak=60, end=112) is not None and rule.growing(peak=60, end=111) is None


def test_loudness_needs_the_room_heard_at_a_streams_start():
    """A stream that starts with the word and turns to digital silence while the word still
    decays (a clip padded to a window, a gated source) never let the room be heard: the floor
    is the word's own tail and min_snr_db cannot judge it. Where the quiet after the word
    levels off, that is the room, and the rule judges as before."""
    word = [(0.3, -20), (0.02, -24), (0.02, -27), (0.02, -30), (0.02, -34)]
    for after, accepted in (((0.3, -100),), True), (((0.3, -34),), False):
        levels = contour(*word, *after)
        verdict = ShapeRules(CommandParams(), heard(levels)).verdict(hop=len(levels) - 1, final=False)
        assert verdict.accepted is accepted, (after, verdict)
        if not accepted:
            assert isinstance(verdict, Reject) and verdict.rule is RuleId.MIN_SNR
    # room heard before the word: the rule judges, whatever follows it
    levels = contour((0.1, -34), *word, (0.3, -100))
    verdict = ShapeRules(CommandParams(), heard(levels)).verdict(hop=len(levels) - 1, final=False)
    assert isinstance(verdict, Reject) and verdict.rule is RuleId.MIN_SNR


def test_a_one_second_word_is_no_longer_than_max_word():
    """1.00 s of sound between quiet is a command of max_word 1 s (its smoothed levels
    last 1.04 s); 1.06 s is not."""
    for seconds, accepted in ((1.0, True), (1.06, False)):
        levels = contour((1.0, -60), (seconds, -20), (1.0, -60))
        verdict = ShapeRules(CommandParams(), heard(levels)).verdict(hop=90, final=True)
        assert verdict.accepted is accepted, (seconds, verdict)


def test_pause_before_measures_the_pause_and_admits_a_row():
    params = CommandParams()
    levels = contour((1.0, -60), (0.4, -20), (0.25, -60), (0.4, -22), (1.0, -60))
    row = heard(levels, params)
    verdict = ShapeRules(params, row).verdict(hop=len(levels) - 40, final=False)  # the window holding the 2nd
    assert isinstance(verdict, Accept) and verdict.burst.row_after >= 0  # the next of a row, if it follows a command
    rule = PauseBefore(params, row)
    assert not rule.follows_command(verdict.burst, [])
    assert rule.follows_command(verdict.burst, [Word(60, True, 50, 71)])  # the first word was a command
    assert str(rule.not_a_row(verdict.burst)).startswith("pre_silence: ")
    levels = contour((1.0, -60), *[(0.25, -20), (0.06, -45)] * 8, (0.3, -60), (0.4, -20), (1.0, -60))
    verdict = ShapeRules(params, heard(levels, params)).verdict(hop=len(levels) - 40, final=False)
    assert isinstance(verdict, Reject) and verdict.rule is RuleId.PRE_SILENCE  # 0.3 s after a sentence
    assert verdict.measured == pytest.approx(0.3, abs=0.07) and verdict.limit == 0.6


def test_loudness_measures_the_peak_over_the_floor():
    contour_ = heard(contour((1.0, -60), (0.3, -45), (1.0, -60)))
    verdict = Loudness(CommandParams(), contour_).check(Burst(peak=60, start=50, end=64))
    assert isinstance(verdict, Reject) and verdict.rule is RuleId.MIN_SNR
    assert verdict.measured == pytest.approx(15.0, abs=1.0)
    assert Loudness(CommandParams(min_snr_db=10.0), contour_).check(Burst(peak=60, start=50, end=64)) is None


def test_quiet_after_waits_then_accepts_or_rejects_running_speech():
    params = CommandParams()
    word = contour((1.0, -60), (0.4, -20))
    shape = Burst(peak=60, start=50, end=69, threshold=-42.0)
    verdict = QuietAfter(params, heard(word + contour((0.1, -60)), params)).judge(shape, final=False)
    assert isinstance(verdict, Wait) and verdict.shape == shape and verdict.speech_db is None
    assert isinstance(QuietAfter(params, heard(word + contour((0.3, -60)), params)).judge(shape, False), Accept)
    sentence = word + contour((0.1, -60), *[(0.25, -20), (0.06, -45)] * 5)
    verdict = QuietAfter(params, heard(sentence, params)).judge(shape, final=False)
    assert isinstance(verdict, Reject) and verdict.rule is RuleId.AFTER_SILENCE


def test_a_rule_added_by_composition_sees_every_accepted_burst():
    """An experiment's rule (a VAD, a second judge) is a callable given to the gate."""
    seen: list[Burst] = []

    def veto(burst: Burst, contour_: Contour) -> Reject | None:
        seen.append(burst)
        return Reject(RuleId.EXTRA, burst, "vetoed")

    levels = contour((1.0, -60), (0.5, -20), (1.0, -60))
    gate = CommandGate(rules=[veto])
    rejected: list[Reject] = []
    gate.on_reject = lambda decision, rule: rejected.append(rule)
    out = []
    for i, level in enumerate(levels):
        out += gate.push_level(level, (i + 1) * HOP_SAMPLES, [Decision("yes", 0.9, (i + 1) * HOP_SAMPLES)] if i == 70 else [])
    assert out + gate.finish() == [] and len(seen) == 1 and [r.rule for r in rejected] == [RuleId.EXTRA]
    assert run_levels(levels, {70: "yes"}) != []  # without it, a command


@pytest.mark.parametrize("field, value", [("max_word", 0.1), ("pre_silence", -1.0), ("post_silence", 0.0),
                                          ("speech_margin_db", 50.0), ("word_score_ratio", 0.1),
                                          ("min_snr_db", 41.0), ("after_silence", 1.5)])
def test_params_out_of_range_are_refused(field, value):
    with pytest.raises(ValueError):
        CommandParams(**{field: value})


# ----------------------------------------------------------------------------- real clips

@pytest.fixture(scope="module")
def model(model_dir):
    from kws_stream.backend import KeywordModel

    return KeywordModel(model_dir / "kws_micronet_l.tflite", LABELS)


def spot(model, audio: np.ndarray, params=PipelineParams(), block: int = 1600):
    pipeline = Pipeline(model, "micronet-l", "test", params)
    found = []
    for i in range(0, len(audio), block):
        found += pipeline.feed(audio[i:i + block])
    return found + pipeline.finish()


@pytest.mark.parametrize("clip", LIBRISPEECH)
@pytest.mark.parametrize("pad", [False, True])
def test_librispeech_sentences_give_nothing_in_command_mode(model, clip, pad):
    _, audio = read_clip(f"negatives/{clip}")
    if pad:
        audio = np.concatenate([room_tone(0.5), audio, room_tone(0.5)])
    assert [d.keyword for d in spot(model, audio)] == []


@pytest.mark.parametrize("clip", KEYWORD_CLIPS)
def test_keyword_clips_in_room_tone_yield_their_keywords_in_order(model, clip):
    _, audio = read_clip(f"keywords/{clip}")
    audio = np.concatenate([room_tone(0.5), audio, room_tone(0.5)])
    found = spot(model, audio)
    assert [d.keyword for d in found] == KEYWORD_CLIPS[clip]
    for k, d in enumerate(found):  # the window that fired, as in plain mode
        assert 0.5 + k <= d.end <= 0.5 + k + 1.0 + 1e-6
        assert d.end - d.start == pytest.approx(1.0)


@pytest.mark.parametrize("block", [HOP_SAMPLES, 1600, 4999])
def test_block_size_does_not_change_what_is_accepted(model, block):
    _, audio = read_clip("keywords/yes_no_go_stop.wav")
    audio = np.concatenate([room_tone(0.5), audio, room_tone(0.5)])
    assert [(d.keyword, d.end) for d in spot(model, audio, block=block)] == \
        [(d.keyword, d.end) for d in spot(model, audio, block=RATE)]


def test_with_command_mode_off_the_plain_behaviour_holds(model):
    _, audio = read_clip("negatives/i_tell_you.wav")
    assert [d.keyword for d in spot(model, audio, PLAIN)] == ["right"]
    _, audio = read_clip("keywords/right_left_up.wav")
    assert [d.keyword for d in spot(model, audio, PLAIN)] == ["right", "left", "up"]


def test_reconfigure_switches_command_mode(model):
    _, audio = read_clip("negatives/i_tell_you.wav")
    pipeline = Pipeline(model, "micronet-l", "test", PipelineParams())
    pipeline.reconfigure(PLAIN)
    found = pipeline.feed(audio) + pipeline.finish()
    assert [d.keyword for d in found] == ["right"]
    pipeline = Pipeline(model, "micronet-l", "test", PLAIN)
    pipeline.reconfigure(dataclasses.replace(PLAIN, command=CommandParams()))
    assert [d.keyword for d in pipeline.feed(audio) + pipeline.finish()] == []


@pytest.mark.parametrize("quiet_s", [1.0, 3.5, 5.0, 10.0, 60.0])
@pytest.mark.parametrize("digital", [False, True])
def test_words_after_long_quiet_gaps_are_all_found(model, quiet_s, digital):
    """A quiet room, then "yes", three times: every word is reported in command mode."""
    _, yes = read_clip("keywords/yes.wav")
    gap = np.zeros(round(quiet_s * RATE), dtype=np.int16) if digital else room_tone(quiet_s)
    audio = np.concatenate([gap, yes, gap, yes, gap, yes, gap])
    assert [d.keyword for d in spot(model, audio, block=RATE)] == ["yes", "yes", "yes"]


@pytest.mark.parametrize("quiet_s", [2.5, 5.0])
def test_commands_in_a_row_after_a_long_quiet_are_all_found(model, quiet_s):
    """Soak regression: after 2.5 s or more of quiet the second command of a row ("no" in
    yes-no-go-stop) was dropped: the pause before the first one ran past the history."""
    _, words = read_clip("keywords/yes_no_go_stop.wav")
    gap = np.zeros(round(quiet_s * RATE), dtype=np.int16)
    audio = np.concatenate([gap, words, gap])
    assert [d.keyword for d in spot(model, audio, block=RATE)] == ["yes", "no", "go", "stop"]


@pytest.mark.parametrize("slower", [1.25, 1.3])
def test_one_word_is_reported_once_when_a_correction_would_repeat_the_word_before(model, slower):
    """right_left_up.wav said slower (resampled: longer and lower, a real voice still):
    the whole-word re-scoring of "up" used to pick a window that still held the end of
    "left" and report `left` again 0.6 s after the first (and lose "up")."""
    import soxr

    _, audio = read_clip("keywords/right_left_up.wav")
    slow = soxr.resample(audio.astype(np.float32) / 32768, RATE, round(RATE * slower)) * 32768
    audio = np.concatenate([room_tone(0.5), np.round(slow).astype(np.int16), room_tone(1.0)])
    plain = [d.keyword for d in spot(model, audio, PLAIN)]
    found = spot(model, audio)
    assert plain == ["right", "left", "up"]
    assert [d.keyword for d in found] == plain
    for a, b in zip(found, found[1:]):
        assert not (a.keyword == b.keyword and b.end - a.end < 1.0), "one word reported twice"


def test_the_first_word_of_a_sentence_after_a_pause_is_not_a_command(model):
    """Real meeting speech (AMI, real-dev): at 18.8 s a speaker's "right" after a pause is
    followed 0.2-0.25 s later by more talk. It used to be accepted (after_silence = 0.2
    s); longer speech after a burst now means it was not a command.

    The file is in real-dev's dev half: after_silence was tuned on it, and this test pins
    that decision to the case that motivated it; it is no evidence that the rule
    generalises (the validation half and corpus of `benchmarks.command_mode --targets` are)."""
    _, audio = read_clip("real-dev/ami_trn03.wav")
    before = PipelineParams(command=CommandParams(after_silence=0.2))
    assert [(d.keyword, round(d.end, 1)) for d in spot(model, audio, before)] == [("right", 18.8)]
    assert spot(model, audio) == []


def loudest_part(audio: np.ndarray, below_peak_db: float = 30.0, peak_dbfs: float = -20.0) -> np.ndarray:
    """The hops of a real clip within `below_peak_db` of its loudest, its peak set to `peak_dbfs`."""
    x = audio.astype(np.float64)
    hops = len(x) // HOP_SAMPLES
    levels = 10 * np.log10(np.mean((x[:hops * HOP_SAMPLES] / 32768).reshape(hops, HOP_SAMPLES) ** 2, axis=1) + 1e-10)
    loud = np.flatnonzero(levels > levels.max() - below_peak_db)
    part = x[loud[0] * HOP_SAMPLES:(loud[-1] + 1) * HOP_SAMPLES]
    return np.round(part * 10 ** ((peak_dbfs - levels.max()) / 20)).astype(np.int16)


@pytest.mark.parametrize("gap_s", [0.25, 0.45])
def test_a_keyword_right_after_a_word_that_is_no_command_is_not_a_command(model, gap_s):
    """Real recordings: "marvin" (Speech Commands, not a keyword), then "right" 0.25-0.45 s
    later, both at the same level: the short word stood in for the pause before a command
    and "right" was reported. After "yes" (a command) the same "right" is the next command
    of a row; after a "marvin" 15 dB quieter (another source) it stands alone."""
    _, marvin = read_clip("negatives/marvin_617de221_0.wav")
    _, yes = read_clip("keywords/yes.wav")
    _, right = read_clip("keywords/right.wav")
    right = loudest_part(right[21 * HOP_SAMPLES:48 * HOP_SAMPLES])  # the word, without the clip's clicks
    alone = np.concatenate([room_tone(1.0), right, room_tone(1.0)])
    assert [d.keyword for d in spot(model, alone)] == ["right"]
    for first, peak_dbfs, expected in ((marvin[:, 0], -20, []), (yes, -20, ["yes", "right"]),
                                       (marvin[:, 0], -35, ["right"])):  # 15 dB down: a TV's word
        before = loudest_part(first, peak_dbfs=peak_dbfs)
        audio = np.concatenate([room_tone(1.0), before, room_tone(gap_s), right, room_tone(1.0)])
        assert [d.keyword for d in spot(model, audio)] == expected


@pytest.mark.parametrize("digital", [False, True])
def test_windows_run_long_after_they_were_heard_are_judged_or_dropped_not_a_crash(model, digital):
    """Real read speech (real-dev, LibriSpeech 887) after 3.5 s of quiet, post_silence 0.3 s:
    a burst at the end of a long stretch of speech wanted windows from the stretch's start,
    over 4 s back; a candidate from one of them reached the gate after its levels were gone,
    and the worker died (ValueError). Only windows the gate can still judge are run now.

    The file is in real-dev's validation half (`benchmarks.command_mode --targets`), and it
    is kept because it is the recording the crash was found on (the joined LibriSpeech
    sentences do not reach that far back). So the test says nothing about what is found in
    it, which would be tuning on validation data: only that it runs to the end, as the
    model at every hop does."""
    _, speech = read_clip("real-dev/ls_887-123289-0000.wav")
    lead = np.zeros(round(3.5 * RATE), dtype=np.int16) if digital else room_tone(3.5)
    params = PipelineParams(command=CommandParams(post_silence=0.3))
    audio = np.concatenate([lead, speech, room_tone(1.0)])
    every_hop = dataclasses.replace(params, eager_inference=True)
    assert [(d.keyword, d.end) for d in spot(model, audio, params)] == \
        [(d.keyword, d.end) for d in spot(model, audio, every_hop)]


def test_commands_in_a_row_are_not_taken_for_a_sentence(model):
    """after_silence does not apply when the next burst is another short command."""
    _, audio = read_clip("keywords/yes_no_go_stop.wav")
    audio = np.concatenate([room_tone(1.0), audio, room_tone(1.0)])
    long_wait = PipelineParams(command=CommandParams(after_silence=0.6))
    assert [d.keyword for d in spot(model, audio, long_wait)] == ["yes", "no", "go", "stop"]


def test_a_word_is_not_judged_on_windows_that_still_hold_the_word_before(model):
    """Soak trap: 1.19 s + 64 samples of room tone, yes_no_go_stop.wav, 1 s of room tone.
    "no" sits 0.1 s after the hiss of "yes": every window holding all of "no" that also
    holds that hiss says `go` (0.6-0.8), and `go` was reported for "no". Only the windows
    that start after the hiss say `no` (0.7-0.85)."""
    _, words = read_clip("keywords/yes_no_go_stop.wav")
    audio = np.concatenate([room_tone(1.19 + 64 / RATE), words, room_tone(1.0)])
    for block in (1600, RATE):
        assert [d.keyword for d in spot(model, audio, block=block)] == ["yes", "no", "go", "stop"]
    # `--explain`: the `go` candidate, corrected to `no`, and the decider's own `no` are one word
    pipeline = Pipeline(model, "micronet-l", "test", PipelineParams())
    rules: list[tuple[str, Reject]] = []
    pipeline.rejection_observer = lambda d, rule: rules.append((d.keyword, rule))
    pipeline.feed(audio)
    pipeline.finish()
    assert ("no", RuleId.SAME_WORD, "this word is reported once") in [(k, r.rule, r.detail) for k, r in rules]
    assert not any("another keyword" in r.detail for _, r in rules)


def test_the_benchmark_evidence_smooths_as_the_decider_does(model):
    """benchmarks.command_mode --evidence scores accepts on smoothed posteriors computed in
    bulk; they must be the decider's own (what the gate sees), or the table means nothing."""
    from benchmarks.command_mode import compute_trace, smoothed_probs
    from kws_stream.decision import DecisionParams, KeywordDecider

    _, audio = read_clip("keywords/yes_no_go_stop.wav")
    trace = compute_trace(audio, model)
    decider = KeywordDecider(LABELS, DecisionParams())
    bulk = smoothed_probs(trace.probs)
    first = np.flatnonzero(~np.isnan(trace.probs[:, 0]))[0]
    for i in range(first, len(trace.probs)):
        decider.update(trace.probs[i], (i + 1) * HOP_SAMPLES, RATE)
        np.testing.assert_allclose(bulk[i], decider.smoothed, atol=1e-5)
