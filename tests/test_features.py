import numpy as np
import pytest
from conftest import read_clip

from kws_stream.features import FeatureParams, FeatureWindow, MfccExtractor, mel_filterbank

GOLDEN = [-22.67135, -0.61615, 2.07233, 0.58137, 1.01655, 0.85816, 0.46039, 0.03393, 1.16511, 0.0072]


def test_first_frame_of_yes_matches_the_golden_vector():
    _, audio = read_clip("keywords/yes.wav")
    np.testing.assert_allclose(MfccExtractor().frame(audio[:640]), GOLDEN, atol=1e-4)


def test_one_second_gives_exactly_49_frames():
    assert FeatureParams().window_samples == 16000
    window = FeatureWindow(MfccExtractor())
    frames = list(window.push(np.zeros(16000, dtype=np.int16)))
    assert frames == list(range(1, 50))
    assert window.ready and window.samples_covered == 16000


@pytest.mark.parametrize("block", [1, 160, 320, 333, 1600, 4410])
def test_incremental_windows_equal_from_scratch_computation(block):
    """Every window of a multi-second real clip, streamed in odd block sizes, equals the
    whole-window computation on the same audio: nothing is recomputed or lost."""
    _, audio = read_clip("keywords/yes_no_go_stop.wav")
    extractor = MfccExtractor()
    window = FeatureWindow(extractor)
    checked = 0
    for start in range(0, len(audio), block):
        for _ in window.push(audio[start : start + block]):
            if window.ready:
                end = window.samples_covered
                expected = extractor.window(audio[end - 16000 : end])
                np.testing.assert_allclose(window.window(), expected, rtol=0, atol=1e-9)
                checked += 1
    assert checked == (len(audio) - 16000) // 320 + 1


def test_filterbank_is_htk_triangles_with_peak_one_inside_20_to_4000_hz():
    bank = mel_filterbank(FeatureParams())
    assert bank.shape == (512, 40)
    assert bank.max() <= 1.0 and bank.max() > 0.95
    hz = np.arange(512) * 16000 / 1024
    assert not bank[(hz <= 20) | (hz >= 4000)].any()
    assert (bank.sum(axis=0) > 0).all()  # every filter covers at least one bin
