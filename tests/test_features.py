import numpy as np
import pytest
from conftest import read_clip

from kws_stream.features import MICRONET, FeatureParams, FeatureWindow, MfccExtractor, hop_level_db, mel_filterbank

GOLDEN = [-22.67135, -0.61615, 2.07233, 0.58137, 1.01655, 0.85816, 0.46039, 0.03393, 1.16511, 0.0072]


def test_first_frame_of_yes_matches_the_golden_vector():
    _, audio = read_clip("keywords/yes.wav")
    np.testing.assert_allclose(MfccExtractor().frame(audio[:640]), GOLDEN, atol=1e-4)


def test_the_stream_geometry_is_the_one_the_models_were_trained_on():
    """The one home of the numbers every stage agrees on (the gate, the silence gate, the
    backend's input check, the benchmarks): written out here once, as SPEC.md gives them."""
    g = FeatureParams().geometry
    assert g == MICRONET
    assert (g.sample_rate, g.hop_samples, g.frame_samples, g.window_samples) == (16000, 320, 640, 16000)
    assert (g.frames, g.window_hops, g.input_shape) == (49, 50, (1, 49, 10, 1))
    assert g.hop_seconds == 0.02 and g.window_seconds == 1.0 and g.hops(0.25) == 12


def test_one_second_gives_exactly_49_frames():
    assert FeatureParams().window_samples == 16000
    window = FeatureWindow(MfccExtractor())
    hops = list(window.push(np.zeros(16000, dtype=np.int16)))
    assert [h.number for h in hops] == list(range(49))
    assert [h.end_sample for h in hops] == [640 + 320 * k for k in range(49)]
    assert window.ready and window.samples_covered == 16000


@pytest.mark.parametrize("block", [1, 333, 4410])
def test_each_hop_carries_the_level_of_its_newest_320_samples(block):
    """The feature stage is the one place that looks at the samples: each hop's level is
    the level of the 320 samples that completed its frame, whatever the block size."""
    _, audio = read_clip("keywords/yes_no_go_stop.wav")
    window = FeatureWindow(MfccExtractor())
    hops = [h for start in range(0, len(audio), block) for h in window.push(audio[start:start + block])]
    assert len(hops) == (len(audio) - 640) // 320 + 1
    for h in hops:
        assert h.level_db == hop_level_db(audio[h.end_sample - 320:h.end_sample])
    assert max(h.level_db for h in hops) > -30 > min(h.level_db for h in hops)


def test_frames_are_computed_only_for_the_windows_asked_for():
    """Command mode asks for a few past windows only: frames no window needs are never
    computed, a frame two windows share is computed once, and a window older than the
    kept history is refused rather than computed from overwritten audio."""
    _, audio = read_clip("keywords/yes_no_go_stop.wav")
    extractor = MfccExtractor()
    window = FeatureWindow(extractor, history_hops=100)
    total = len(list(window.push(np.tile(audio, 2))))
    assert window.frames_computed == 0
    end = total - 10
    start = window.frame_end(end) - 16000
    np.testing.assert_allclose(window.window(end), extractor.window(np.tile(audio, 2)[start:start + 16000]), atol=1e-9)
    window.window(end + 1)
    assert window.frames_computed == 50
    with pytest.raises(IndexError):
        window.window(total - 100)


@pytest.mark.parametrize("block", [1, 160, 320, 333, 1600, 4410])
def test_incremental_windows_equal_from_scratch_computation(block):
    """Every window of a multi-second real clip, streamed in odd block sizes, equals the
    whole-window computation on the same audio: nothing is recomputed or lost."""
    _, audio = read_clip("keywords/yes_no_go_stop.wav")
    extractor = MfccExtractor()
    window = FeatureWindow(extractor)
    checked = 0
    for start in range(0, len(audio), block):
        for hop in window.push(audio[start : start + block]):
            if window.ready and hop.number % 3 != 1:  # skipped windows' frames still come right
                end = window.samples_covered
                expected = extractor.window(audio[end - 16000 : end])
                np.testing.assert_allclose(window.window(), expected, rtol=0, atol=1e-9)
                checked += 1
    assert checked == len([k for k in range(48, (len(audio) - 640) // 320 + 1) if k % 3 != 1])


def test_filterbank_is_htk_triangles_with_peak_one_inside_20_to_4000_hz():
    bank = mel_filterbank(FeatureParams())
    assert bank.shape == (512, 40)
    assert bank.max() <= 1.0 and bank.max() > 0.95
    hz = np.arange(512) * 16000 / 1024
    assert not bank[(hz <= 20) | (hz >= 4000)].any()
    assert (bank.sum(axis=0) > 0).all()  # every filter covers at least one bin
