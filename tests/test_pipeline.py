"""Event-driven command mode: the model runs only after a burst that can be a command.

Each test compares against `eager_inference=True` (the model at every hop, the way
command mode ran before) on real recordings.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import LABELS, read_clip

from kws_stream.command import CommandParams
from kws_stream.features import MICRONET
from kws_stream.pipeline import Pipeline, PipelineParams
from testsupport.audio import room_tone

RATE = MICRONET.sample_rate
EVENT = PipelineParams()
EAGER = PipelineParams(eager_inference=True)
CLIPS = ["down.wav", "no_1000ms.wav", "right.wav", "right_left_up.wav", "yes.wav", "yes_1000ms.wav",
         "yes_no_go_stop.wav"]
SPEECH = ["another_door.wav", "another_engineer.wav", "i_tell_you.wav", "testing_routine.wav"]


@pytest.fixture(scope="module")
def model(model_dir):
    from kws_stream.backend import KeywordModel

    return KeywordModel(model_dir / "kws_micronet_l.tflite", LABELS)


def spot(model, audio: np.ndarray, params: PipelineParams, block: int = 1600) -> tuple[list[tuple[str, float]], Pipeline]:
    pipeline = Pipeline(model, "micronet-l", "test", params)
    found = []
    for i in range(0, len(audio), block):
        found += pipeline.feed(audio[i:i + block])
    found += pipeline.finish()
    return [(d.keyword, round(d.end, 3)) for d in found], pipeline


def keywords_after_pauses(pauses: list[float], digital: bool) -> np.ndarray:
    parts = []
    for pause, clip in zip(pauses, CLIPS * 3):
        parts += [np.zeros(round(pause * RATE), dtype=np.int16) if digital else room_tone(pause),
                  read_clip(f"keywords/{clip}")[1]]
    return np.concatenate(parts + [room_tone(1.0)])


@pytest.mark.parametrize("clip", CLIPS)
def test_each_shared_clip_gives_what_inference_at_every_hop_gives(model, clip):
    _, words = read_clip(f"keywords/{clip}")
    audio = np.concatenate([room_tone(1.5), words, room_tone(1.0)])
    eager, every_hop = spot(model, audio, EAGER)
    event, pipeline = spot(model, audio, EVENT)
    assert event == eager and event
    assert pipeline.inferences < every_hop.inferences  # the room tone before it cost nothing


@pytest.mark.parametrize("digital", [False, True])
def test_words_after_pauses_of_1_to_60_s_as_with_inference_at_every_hop(model, digital):
    """Quiet of 1-60 s (room tone or digital silence) before each word: the same commands,
    for a small fraction of the model runs; a block of 1 s changes nothing."""
    audio = keywords_after_pauses([1.0, 60.0, 3.5, 10.0, 2.0, 25.0, 5.0], digital)
    eager, every_hop = spot(model, audio, EAGER)
    event, pipeline = spot(model, audio, EVENT)
    assert event == eager
    assert len(event) >= 9
    assert spot(model, audio, EVENT, block=RATE)[0] == event
    assert pipeline.inferences < every_hop.inferences / 8  # ~50 windows per word


@pytest.mark.parametrize("clip", SPEECH)
def test_sentences_give_what_inference_at_every_hop_gives(model, clip):
    _, speech = read_clip(f"negatives/{clip}")
    audio = np.concatenate([room_tone(1.0), speech, room_tone(1.0)])
    eager, _ = spot(model, audio, EAGER)
    assert spot(model, audio, EVENT)[0] == eager == []


@pytest.mark.parametrize("clip", ["ami_trn01.wav", "ami_trn09.wav", "ls_103-1240-0000.wav"])
def test_running_speech_costs_a_fraction_of_the_model_runs(model, clip):
    """Real running speech (an AMI meeting, LibriSpeech) from real-dev: what inference at
    every hop reports, for at most an eighth of the model runs (each burst that could be a
    word said alone is screened on three windows before the model looks at all of them)."""
    _, audio = read_clip(f"real-dev/{clip}")
    eager, every_hop = spot(model, audio, EAGER)
    event, pipeline = spot(model, audio, EVENT)
    assert event == eager
    assert pipeline.inferences <= every_hop.inferences / 8


def test_room_tone_and_silence_never_run_the_model(model):
    audio = np.concatenate([room_tone(20.0), np.zeros(10 * RATE, dtype=np.int16), room_tone(5.0)])
    found, pipeline = spot(model, audio, EVENT)
    assert found == [] and pipeline.inferences == 0 and pipeline.features.frames_computed == 0


def test_stride_and_a_reconfiguration_mid_stream_keep_working(model):
    """Every second window (`stride = 2`), then a reload (new thresholds: the gate starts
    afresh mid-stream): the words after the reload are found as with inference at every
    hop; a few hops after it nothing is lost."""
    audio = keywords_after_pauses([1.0, 2.0, 2.0, 2.0, 2.0], digital=False)
    half = len(audio) // 2 // 1600 * 1600
    found, pipeline = spot(model, audio[:half], dataclasses.replace(EVENT, stride=2))
    pipeline.reconfigure(dataclasses.replace(EVENT, decision=dataclasses.replace(EVENT.decision, threshold=0.69)))
    later = [(d.keyword, round(d.end, 3)) for d in pipeline.feed(audio[half:]) + pipeline.finish()]
    eager, _ = spot(model, audio, EAGER)
    after = half / RATE + 1.5
    assert len(found) >= 2
    assert [w for w in later if w[1] > after] == [w for w in eager if w[1] > after] != []


def test_plain_mode_still_runs_the_model_at_every_hop(model):
    _, words = read_clip("keywords/yes_no_go_stop.wav")
    plain = PipelineParams(command=CommandParams(enabled=False))
    _, pipeline = spot(model, words, plain)
    frames = (len(words) - MICRONET.frame_samples) // MICRONET.hop_samples + 1
    assert pipeline.inferences == frames - (MICRONET.frames - 1)  # one per full window


@pytest.mark.parametrize("before", [PipelineParams(command=CommandParams(enabled=False)), EAGER,
                                    dataclasses.replace(EVENT, command=CommandParams(pre_silence=0.5))])
def test_a_reload_to_command_mode_mid_stream_finds_the_words_after_it(model, before):
    """From plain mode, from the model at every hop, or with other rules: the reload makes a
    new gate mid-stream (past the front end's history), which numbers hops from the stream's
    start and starts at the hop of the reload, and the words after it are those inference at
    every hop finds."""
    audio = keywords_after_pauses([1.0, 2.0, 2.0, 2.0, 2.0], digital=False)
    half = len(audio) // 2 // 1600 * 1600
    assert half > 8 * RATE  # past the front end's 6 s of history
    _, pipeline = spot(model, audio[:half], before)
    pipeline.reconfigure(EVENT)
    assert pipeline.spotter.gate is not None and pipeline.spotter.gate.first_hop == pipeline.features.frames_total
    later = [(d.keyword, round(d.end, 3)) for d in pipeline.feed(audio[half:]) + pipeline.finish()]
    eager, _ = spot(model, audio, EAGER)
    after = half / RATE + 1.5
    assert [w for w in later if w[1] > after] == [w for w in eager if w[1] > after] != []


@pytest.mark.parametrize("field, value, expected", [
    ("stride", 0, "pipeline.stride: 0; expected an integer from 1 to 25"),
    ("stride", 1.5, "pipeline.stride: 1.5"),
    ("eager_inference", "yes", "pipeline.eager_inference: 'yes'; expected true or false"),
    ("command", None, "pipeline.command: None; expected a CommandParams")])
def test_pipeline_params_out_of_range_are_refused_in_one_line(field, value, expected):
    from kws_stream.params import ConfigError

    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        PipelineParams(**{field: value})
