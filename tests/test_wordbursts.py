"""Where enrolled words are judged: the command-shaped bursts of a stream, cut once each,
on real recordings; `cut_bursts` gives what the running pipeline scores."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import LABELS

from kws_stream.enrol import BURST_MARGIN_S, EnrolledWord, load_matcher
from kws_stream.enrolled import WordSet
from kws_stream.features import MICRONET
from kws_stream.pipeline import Pipeline, PipelineParams
from kws_stream.wordbursts import cut_bursts
from testsupport.audio import AUDIO, read_wav, room_tone

RATE = MICRONET.sample_rate
PHRASES = ["custom-words/computer_020.wav", "custom-words/jarvis_010.wav", "custom-words/smart_mirror_030.wav"]


class Recording:
    """A matcher that keeps every burst it is given and matches nothing."""

    def __init__(self) -> None:
        self.bursts: list[np.ndarray] = []

    def scores(self, words: list[EnrolledWord], burst: np.ndarray) -> list[float]:
        self.bursts.append(burst)
        return [0.0] * len(words)


def in_a_row(*clips: str) -> np.ndarray:
    parts = [room_tone(1.0)]
    for clip in clips:
        audio = read_wav(clip)
        parts += [audio, room_tone(1.0, offset=len(audio))]
    return np.concatenate(parts)


def test_one_word_said_alone_is_one_burst_around_its_loudest_part():
    audio = read_wav(PHRASES[0])
    [burst] = cut_bursts(audio)
    start = next(i for i in range(len(audio)) if np.array_equal(audio[i:i + len(burst)], burst))
    loudest = int(np.argmax(np.abs(audio.astype(np.int32))))
    assert start < loudest < start + len(burst)
    assert 2 * BURST_MARGIN_S < len(burst) / RATE <= 1.0 + 2 * BURST_MARGIN_S + 0.5  # max_word, margins, a tail


def test_each_phrase_of_a_row_is_one_burst_and_quiet_or_noise_is_none():
    assert len(cut_bursts(in_a_row(*PHRASES))) == 3
    assert cut_bursts(room_tone(5.0)) == []
    assert cut_bursts(read_wav("negatives/noise_1000ms.wav")) == []


@pytest.fixture(scope="module")
def model(model_dir):
    from kws_stream.backend import KeywordModel

    return KeywordModel(model_dir / "kws_micronet_l.tflite", LABELS)


@pytest.mark.parametrize("block", [320, 1600, 16000])
def test_cut_bursts_is_what_the_pipeline_scores(model, block):
    audio = in_a_row(*PHRASES, "keywords/yes_no_go_stop.wav")
    matcher = Recording()
    word = load_matcher().enrol("computer", [read_wav(f"custom-words/computer_{i:03d}.wav") for i in range(5)])
    pipeline = Pipeline(model, "micronet-l", "test", PipelineParams(words=WordSet((word,), matcher)))
    for i in range(0, len(audio), block):
        pipeline.feed(audio[i:i + block])
    pipeline.finish()
    expected = cut_bursts(audio)
    assert len(matcher.bursts) == len(expected) >= 3
    assert all(np.array_equal(a, b) for a, b in zip(matcher.bursts, expected))


def test_a_real_dev_recording_of_running_speech_has_few_bursts():
    """Running speech is mostly no command: the matcher runs on a few bursts a minute, not per hop."""
    audio = read_wav(sorted((AUDIO / "real-dev").glob("ami_*.wav"))[0])
    bursts = cut_bursts(audio)
    assert len(bursts) <= len(audio) / RATE / 4, len(bursts)  # fewer than one per 4 s of speech
