"""Per-hop speech flags (benchmarks/vad.py) and the benchmark's VAD rules, on real recordings."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import command_mode as cm
from benchmarks.vad import HOP_SAMPLES, SpeechFlags
from kws_stream.command import CommandParams
from kws_stream.decision import DecisionParams
from kws_stream.features import MICRONET
from testsupport.audio import read_wav, room_tone


def test_real_speech_is_flagged_and_a_quiet_room_is_not():
    room = room_tone(3.0)  # real background noise at -60 dBFS
    words = read_wav("keywords/yes_no_go_stop.wav")  # one word per second
    flags = SpeechFlags().flags(np.concatenate([room, words]))
    in_room = flags[10:150]  # after the VAD's first 0.2 s (it starts out calling everything speech)
    assert in_room.mean() <= 0.02
    per_word = flags[150:].reshape(4, 50)
    assert all(word.sum() >= 10 for word in per_word), per_word.sum(axis=1)
    sentence = SpeechFlags().flags(read_wav("negatives/another_door.wav"))
    assert sentence.mean() >= 0.5
    assert not SpeechFlags().flags(np.zeros(MICRONET.sample_rate, dtype=np.int16)).any()  # digital silence


def test_flags_of_a_stream_are_its_hops_fed_one_by_one():
    x = read_wav("keywords/right_left_up.wav")
    one = SpeechFlags(3)
    by_hop = [one(x[i:i + HOP_SAMPLES]) for i in range(0, len(x) - HOP_SAMPLES + 1, HOP_SAMPLES)]
    assert SpeechFlags(3).flags(x).tolist() == by_hop
    assert 0 < sum(by_hop) < len(by_hop)


@pytest.mark.parametrize("hop", [np.zeros(MICRONET.hop_samples // 2, dtype=np.int16),
                                 np.zeros(MICRONET.hop_samples, dtype=np.float32)])
def test_a_hop_of_the_wrong_length_or_type_is_refused(hop):
    with pytest.raises(ValueError, match=f"{MICRONET.hop_samples} int16 samples"):
        SpeechFlags()(hop)


def test_an_unknown_aggressiveness_is_refused():
    with pytest.raises(ValueError, match="0, 1, 2 or 3"):
        SpeechFlags(4)


@pytest.fixture(scope="module")
def model(model_dir):
    from kws_stream.backend import KeywordModel

    return KeywordModel(model_dir / "kws_micronet_l.tflite", cm.LABELS)


def test_the_pause_rule_vetoes_a_word_after_a_sentence_going_on_below_the_margin(model):
    """A far talker's sentence 25 dB below the word, going on up to it: the level rules take
    the word as isolated (a hop 20 dB below its peak is a pause), the VAD hears speech there."""
    word = read_wav("keywords/yes.wav")
    talk = read_wav("negatives/another_door.wav")[MICRONET.sample_rate:3 * MICRONET.sample_rate]  # no pause at its end
    far = cm.scaled(talk, cm.speech_level_db(word) - 25 - cm.speech_level_db(talk))
    x = np.concatenate([room_tone(1.0), far + room_tone(2.0), word, room_tone(1.0)])
    quiet = np.concatenate([room_tone(3.0), word, room_tone(1.0)])
    rule = cm.VadRule("pause", 3, 5)
    flags = {"far": cm.vad_flags_for_audio(x), "quiet": cm.vad_flags_for_audio(quiet)}
    traces = {"far": cm.compute_trace(x, model), "quiet": cm.compute_trace(quiet, model)}

    def said(name: str, rule: cm.VadRule | None) -> list[str]:
        fired = cm.replay(traces[name], DecisionParams(), CommandParams(), flags[name], rule)
        return [f.keyword for f in fired]

    assert said("far", None) == ["yes"]  # the level rules alone accept it
    assert said("far", rule) == []
    assert said("quiet", rule) == ["yes"]  # a pause free of speech keeps the word
    assert said("far", cm.VadRule("pause", 3, 30)) == ["yes"]  # more than the whole pause: never vetoes


def test_without_a_rule_the_vad_gate_reports_what_the_gate_reports(model):
    """The benchmark's VAD rules are measured against the real gate, not a copy of it."""
    x = cm.padded(read_wav("keywords/yes_no_go_stop.wav"))
    trace = cm.compute_trace(x, model)
    plain = cm.replay(trace, DecisionParams(), CommandParams())
    assert [f.keyword for f in plain] == ["yes", "no", "go", "stop"]
    assert cm.replay(trace, DecisionParams(), CommandParams(), cm.vad_flags_for_audio(x), None) == plain
