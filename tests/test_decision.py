import numpy as np
import pytest
from conftest import LABELS

from kws_stream.decision import DecisionParams, KeywordDecider

HOP = 320
RATE = 16000


def probs(top: str, score: float) -> np.ndarray:
    p = np.full(len(LABELS), (1 - score) / (len(LABELS) - 1))
    p[LABELS.index(top)] = score
    return p


def run(decider: KeywordDecider, sequence: list[tuple[str, float]]) -> list[tuple[int, str]]:
    fired = []
    for i, (label, score) in enumerate(sequence):
        d = decider.update(probs(label, score), 16000 + i * HOP, RATE)
        if d:
            fired.append((i, d.keyword))
    return fired


def test_a_word_on_top_for_many_windows_is_reported_once():
    seq = [("_silence_", 0.9)] * 5 + [("left", 0.95)] * 60 + [("_silence_", 0.9)] * 5
    assert run(KeywordDecider(LABELS, DecisionParams(smoothing=1)), seq) == [(5, "left")]


def test_silence_and_unknown_are_never_reported():
    seq = [("_silence_", 1.0)] * 10 + [("_unknown_", 1.0)] * 10
    assert run(KeywordDecider(LABELS, DecisionParams(smoothing=1)), seq) == []


def test_smoothing_ignores_a_single_window_spike():
    """The onset of "on" can score `off` for one window; averaging over 4 hides it."""
    seq = [("_silence_", 0.9)] * 4 + [("off", 0.99)] + [("on", 0.95)] * 10
    fired = run(KeywordDecider(LABELS, DecisionParams(smoothing=4)), seq)
    assert [k for _, k in fired] == ["on"]
    assert [k for _, k in run(KeywordDecider(LABELS, DecisionParams(smoothing=1)), seq)] == ["off", "on"]


def test_same_keyword_again_after_release_and_refractory():
    gap = [("_silence_", 0.95)] * 10  # 0.2 s: released but inside the 1 s refractory
    word = [("yes", 0.95)] * 10
    decider = KeywordDecider(LABELS, DecisionParams(smoothing=1, refractory=1.0))
    assert [k for _, k in run(decider, word + gap + word)] == ["yes"]
    decider = KeywordDecider(LABELS, DecisionParams(smoothing=1, refractory=0.2))
    assert [k for _, k in run(decider, word + gap + word)] == ["yes", "yes"]


def test_different_keywords_one_second_apart_are_both_reported():
    seq = [("right", 0.9)] * 50 + [("left", 0.9)] * 50
    assert [k for _, k in run(KeywordDecider(LABELS, DecisionParams(smoothing=4)), seq)] == ["right", "left"]


def test_per_keyword_threshold_and_allow_list():
    seq = [("up", 0.8)] * 10 + [("_silence_", 0.99)] * 60 + [("go", 0.8)] * 10
    params = DecisionParams(smoothing=1, thresholds={"up": 0.9})
    assert [k for _, k in run(KeywordDecider(LABELS, params), seq)] == ["go"]
    params = DecisionParams(smoothing=1, keywords=frozenset({"up"}))
    assert [k for _, k in run(KeywordDecider(LABELS, params), seq)] == ["up"]


def test_decision_carries_the_smoothed_score_and_position():
    decider = KeywordDecider(LABELS, DecisionParams(smoothing=2))
    assert decider.update(probs("stop", 0.6), 16000, RATE) is None
    d = decider.update(probs("stop", 0.9), 16320, RATE)
    assert d is not None and d.keyword == "stop"
    assert d.score == np.float64(0.75) and d.end_sample == 16320


def test_the_api_refuses_keywords_the_model_does_not_have():
    """The config and CLI refuse these before loading a model; the library says the same."""
    labels = ("yes", "no", "_silence_", "_unknown_")
    with pytest.raises(ValueError, match="not keywords of this model: marvin"):
        KeywordDecider(labels, DecisionParams(keywords=frozenset({"yes", "marvin"})))
    with pytest.raises(ValueError, match="_silence_"):
        KeywordDecider(labels, DecisionParams(thresholds={"_silence_": 0.9}))
    decider = KeywordDecider(labels, DecisionParams(keywords=frozenset({"yes"})))
    with pytest.raises(ValueError, match="up"):
        decider.retune(DecisionParams(thresholds={"up": 0.8}))
