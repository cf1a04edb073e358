"""Enrolled words in the pipeline: judged on the command gate's bursts beside the keywords,
with the real model, the real matcher interface and real recordings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import LABELS

from kws_stream.decision import DecisionParams
from kws_stream.enrol import load_matcher
from kws_stream.enrolled import WordSet
from kws_stream.events import Detection
from kws_stream.features import MICRONET
from kws_stream.pipeline import Pipeline, PipelineParams
from kws_stream.wyoming_server import WakeService
from testsupport.audio import read_wav, room_tone

RATE = MICRONET.sample_rate
HELD_OUT = "custom-words/computer_020.wav"  # not among the takes; the placeholder matcher scores it well
OTHER_PHRASE = "custom-words/jarvis_010.wav"


@pytest.fixture(scope="module")
def model(model_dir):
    from kws_stream.backend import KeywordModel

    return KeywordModel(model_dir / "kws_micronet_l.tflite", LABELS)


@pytest.fixture(scope="module")
def words() -> WordSet:
    matcher = load_matcher()
    computer = matcher.enrol("computer", [read_wav(f"custom-words/computer_{i:03d}.wav") for i in range(5)])
    return WordSet((computer,), matcher)


def with_words(words: WordSet, **decision: object) -> PipelineParams:
    return PipelineParams(words=words, decision=DecisionParams(**decision))  # type: ignore[arg-type]


def stream(*clips: str) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The clips in a row with a second of room tone before each and after the last, and
    where each clip lies (seconds)."""
    parts, spans, t = [room_tone(1.0)], [], 1.0
    for clip in clips:
        audio = read_wav(clip)
        parts += [audio, room_tone(1.0, offset=len(audio))]
        spans.append((t, t + len(audio) / RATE))
        t += len(audio) / RATE + 1.0
    return np.concatenate(parts), spans


def spot(model, audio: np.ndarray, params: PipelineParams, block: int = 1600,
         pipeline: Pipeline | None = None) -> list[Detection]:
    pipeline = pipeline or Pipeline(model, "micronet-l", "test", params)
    found: list[Detection] = []
    for i in range(0, len(audio), block):
        found += pipeline.feed(audio[i:i + block])
    return found + pipeline.finish()


def test_without_enrolled_words_the_pipeline_has_no_judge_at_all(model, words):
    assert Pipeline(model, "micronet-l", "test", PipelineParams()).words is None
    assert Pipeline(model, "micronet-l", "test", with_words(words)).words is not None


@pytest.mark.parametrize("params", [{}, {"command": dataclasses.replace(PipelineParams().command, enabled=False)},
                                    {"eager_inference": True}], ids=["command", "plain", "eager"])
def test_a_held_out_recording_of_the_word_is_reported_once_within_it_in_every_mode(model, words, params):
    audio, [(t0, t1)] = stream(HELD_OUT)
    found = spot(model, audio, dataclasses.replace(with_words(words), **params))
    mine = [d for d in found if d.keyword == "computer"]
    assert len(mine) == 1, found
    d = mine[0]
    assert t0 <= d.start < d.end <= t1 and d.end - d.start <= 1.5, (d, t0, t1)
    assert d.score >= d.threshold == round(words.words[0].threshold, 4) and d.model == "micronet-l"


def test_the_keywords_are_the_same_beside_an_enrolled_word(model, words):
    audio, _ = stream("keywords/yes_no_go_stop.wav", HELD_OUT, "keywords/right_left_up.wav")
    plain = [(d.keyword, d.end) for d in spot(model, audio, PipelineParams())]
    both = spot(model, audio, with_words(words))
    assert [(d.keyword, d.end) for d in both if d.keyword != "computer"] == plain
    assert [k for k, _ in plain] == ["yes", "no", "go", "stop", "right", "left", "up"]
    assert "computer" in [d.keyword for d in both]
    assert [d.end for d in both] == sorted(d.end for d in both)  # one timeline


def test_the_block_size_does_not_change_what_is_reported(model, words):
    audio, _ = stream(HELD_OUT, OTHER_PHRASE)
    runs = [[(d.keyword, round(d.start, 3), round(d.end, 3), round(d.score, 4))
             for d in spot(model, audio, with_words(words), block)] for block in (160, 1600, 16000)]
    assert runs[0] == runs[1] == runs[2] and runs[0]


def test_the_allow_list_and_the_thresholds_name_enrolled_words(model, words):
    audio, _ = stream("keywords/yes.wav", HELD_OUT)
    only_word = spot(model, audio, with_words(words, keywords={"computer"}))
    assert [d.keyword for d in only_word] == ["computer"]
    pipeline = Pipeline(model, "micronet-l", "test", with_words(words, keywords={"yes"}))
    assert [d.keyword for d in spot(model, audio, pipeline.params, pipeline=pipeline)] == ["yes"]
    assert pipeline.words is None  # a word not allowed costs nothing
    strict = spot(model, audio, with_words(words, thresholds={"computer": 0.99}))
    assert [d.keyword for d in strict] == ["yes"]
    lenient = [d for d in spot(model, audio, with_words(words, thresholds={"computer": 0.05})) if d.keyword == "computer"]
    assert lenient and all(d.threshold == 0.05 for d in lenient)


def test_words_added_and_removed_mid_stream_by_a_reload(model, words):
    audio, _ = stream(HELD_OUT)
    pipeline = Pipeline(model, "micronet-l", "test", PipelineParams())
    assert pipeline.feed(room_tone(2.0)) == []
    pipeline.reconfigure(with_words(words))  # SIGHUP after `enroll`
    assert pipeline.words is not None
    assert [d.keyword for d in pipeline.feed(audio)] == ["computer"]
    pipeline.reconfigure(PipelineParams())  # SIGHUP after `words remove`
    assert pipeline.words is None
    assert "computer" not in [d.keyword for d in pipeline.feed(audio) + pipeline.finish()]


def test_every_score_reaches_the_explain_observer(model, words):
    audio, _ = stream(HELD_OUT, OTHER_PHRASE)
    pipeline = Pipeline(model, "micronet-l", "test", with_words(words))
    scores: list[tuple[str, bool, float]] = []
    pipeline.word_observer = lambda d, reported: scores.append((d.keyword, reported, d.end))
    found = spot(model, audio, pipeline.params, pipeline=pipeline)
    reported = [end for _, ok, end in scores if ok]
    assert reported == [d.end for d in found if d.keyword == "computer"] and len(reported) == 1
    assert any(not ok for _, ok, _ in scores)  # the other phrase was scored and not reported
    assert pipeline.words is not None and not pipeline.words.scores  # taken, not kept


def test_wyoming_describes_one_wake_model_per_enrolled_word(model, words):
    service = WakeService(model, "micronet-l", with_words(words))
    models = {m.name: m for m in service.info.wake[0].models}
    assert "computer" in models and "yes" in models
    assert models["computer"].version == "enrolled" and models["yes"].version == "micronet-l"
    assert service.names_filter(["computer"], "test") == frozenset({"computer"})
    only = WakeService(model, "micronet-l", with_words(words), keywords=("computer",))
    assert [m.name for m in only.info.wake[0].models] == ["computer"]
