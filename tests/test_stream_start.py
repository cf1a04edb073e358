"""A word at the very start of a stream (a file, a Wyoming client's stream, the microphone
all start somewhere): the event-driven command mode finds what the model at every hop finds.

The clips are real recordings (`real-keywords/`) with their lead-in quiet cut, as
`sox in.wav out.wav silence 1 0.01 1%` does: the word starts at 0.0 s. The noise floor is
then learned from the word's own decay, so none of the word counted as speech when it was
heard; before the fix the event-driven path never looked at it again (67 of the 220
sox-trimmed clips found, against 133 with the model at every hop).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import LABELS, read_clip

from kws_stream.pipeline import Pipeline, PipelineParams
from testsupport.audio import AUDIO

EVENT = PipelineParams()
EAGER = PipelineParams(eager_inference=True)
ONE_PERCENT = 328  # 1 % of full scale: sox's `silence 1 0.01 1%` threshold
CLIPS = sorted(p.name for p in (AUDIO / "real-keywords").glob("*.wav"))
SAMPLE = CLIPS[::10]  # 22 clips of 9 speakers, every keyword


@pytest.fixture(scope="module")
def model(model_dir):
    from kws_stream.backend import KeywordModel

    return KeywordModel(model_dir / "kws_micronet_l.tflite", LABELS)


def trimmed(name: str) -> np.ndarray:
    """The clip from its first sample at 1 % of full scale on."""
    _, audio = read_clip(f"real-keywords/{name}")
    return audio[int(np.argmax(np.abs(audio.astype(np.int32)) >= ONE_PERCENT)):]


def spot(model, audio: np.ndarray, params: PipelineParams) -> list[tuple[str, float, float]]:
    pipeline = Pipeline(model, "micronet-l", "test", params)
    found = []
    for i in range(0, len(audio), 1600):
        found += pipeline.feed(audio[i:i + 1600])
    found += pipeline.finish()
    return [(d.keyword, round(d.start, 3), round(d.end, 3)) for d in found]


@pytest.mark.parametrize("after", [0.0, 1.0])
def test_a_word_at_0_s_is_found_as_with_the_model_at_every_hop(model, after):
    """A 0.92 s "down" from its first sample on: shorter than a window (padded to 1 s at
    the end), or followed by a second of digital silence (a file, a stream that goes on)."""
    audio = np.concatenate([trimmed("down_aditya_01.wav"), np.zeros(round(after * 16000), dtype=np.int16)])
    assert spot(model, audio, EVENT) == spot(model, audio, EAGER) == [("down", 0.0, 1.0)]


def test_trimmed_clips_give_the_same_detections_event_driven_and_at_every_hop(model):
    """Over 22 real clips of every keyword and 9 speakers, each cut to start with its word,
    alone and followed by digital silence: `detect` and `detect --explain` agree."""
    found = 0
    for name in SAMPLE:
        word = trimmed(name)
        for audio in (word, np.concatenate([word, np.zeros(16000, dtype=np.int16)])):
            eager = spot(model, audio, EAGER)
            assert spot(model, audio, EVENT) == eager, name
            found += any(keyword == name.split("_")[0] and start == 0.0 for keyword, start, _ in eager)
    assert found >= 30  # 34 of 44: most of them are commands at 0.0 s, so the agreement is not vacuous
