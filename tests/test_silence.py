import numpy as np
import pytest
from conftest import LABELS, SHARED_MODELS, read_clip

from kws_stream.backend import KeywordModel
from kws_stream.command import CommandParams
from kws_stream.features import MICRONET
from kws_stream.pipeline import Pipeline, PipelineParams
from kws_stream.silence import SilenceGate, SilenceParams, level_dbfs
from testsupport.audio import room_tone

HOP = MICRONET.hop_samples
ON = SilenceParams(enabled=True, floor_dbfs=-50.0)


def tone(dbfs: float, n: int = HOP) -> np.ndarray:
    amplitude = 32768 * 10 ** (dbfs / 20) * np.sqrt(2)
    return np.round(amplitude * np.sin(np.arange(n) * 0.3)).astype(np.int16)


def test_level_of_a_tone():
    assert level_dbfs(tone(-20.0, 3200)) == pytest.approx(-20.0, abs=0.1)


def test_gate_stays_open_while_a_loud_hop_is_inside_the_window():
    gate = SilenceGate(ON, frames=MICRONET.frames)
    assert not gate.push(tone(-70))  # a new stream starts quiet
    assert gate.push(tone(-30))
    for _ in range(MICRONET.frames - 1):
        assert gate.push(tone(-70))  # the loud hop is still inside the 1 s window
    assert not gate.push(tone(-70))


@pytest.fixture(scope="module")
def model() -> KeywordModel:
    return KeywordModel(SHARED_MODELS / "kws_micronet_l.tflite", LABELS)


def run(model: KeywordModel, audio: np.ndarray, silence: SilenceParams, command: bool = True):
    pipeline = Pipeline(model, "micronet-l", "t", PipelineParams(silence=silence,
                                                                  command=CommandParams(enabled=command)))
    found = []
    for i in range(0, len(audio), 1600):
        found += pipeline.feed(audio[i : i + 1600])
    found += pipeline.finish()
    return [(d.keyword, d.end) for d in found], pipeline


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(word in it for word in needle)


def keywords_between_quiet_stretches() -> np.ndarray:
    parts = []
    for clip in ("yes.wav", "right_left_up.wav", "down.wav", "right.wav", "yes_no_go_stop.wav"):
        parts += [room_tone(4.0), read_clip(f"keywords/{clip}")[1]]
    return np.concatenate(parts + [room_tone(2.0)])


def test_same_detections_with_the_gate_and_inference_skipped_in_silence(model):
    """Plain mode, keywords between long quiet stretches: identical detections, most
    inferences skipped."""
    audio = keywords_between_quiet_stretches()
    plain, off = run(model, audio, SilenceParams(), False)
    gated, on = run(model, audio, ON, False)
    assert gated == plain
    expected = ["yes", "right", "left", "up", "down", "right", "yes", "no", "go", "stop"]
    assert is_subsequence(expected, [k for k, _ in gated])
    assert on.silence is not None and on.silence.skipped > 0.4 * off.inferences
    assert on.inferences + on.silence.skipped == off.inferences


def test_command_mode_needs_no_silence_gate(model):
    """Command mode runs the model only around bursts of speech that can be commands: the
    silence gate is not built, and a minute of room tone before a word costs nothing."""
    audio = np.concatenate([room_tone(60.0), read_clip("keywords/yes.wav")[1], room_tone(1.0)])
    found, command = run(model, audio, ON, True)
    assert command.silence is None
    assert [k for k, _ in found] == ["yes"]
    assert 0 < command.inferences <= 80  # ~60 windows around the word; every hop would be ~3000


def test_silence_and_near_silence_cost_no_inference(model):
    for name in ("negatives/silence_1000ms.wav", "negatives/near_silence.wav"):
        found, pipeline = run(model, read_clip(name)[1], ON)
        assert found == [] and pipeline.inferences == 0
