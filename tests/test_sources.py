import numpy as np
import pytest
import scipy.io.wavfile
import soxr

from conftest import AUDIO, read_clip
from kws_stream.errors import InputError
from kws_stream.sources import StreamConverter, WavFileSource


def collect(source: WavFileSource) -> np.ndarray:
    return np.concatenate(list(source.blocks()))


def test_16k_mono_int16_passes_through_bit_exactly():
    _, audio = read_clip("keywords/right_left_up.wav")
    out = collect(WavFileSource(AUDIO / "keywords/right_left_up.wav"))
    assert out.dtype == np.int16 and np.array_equal(out, audio)


def test_stereo_is_mixed_down_or_one_channel_taken():
    _, audio = read_clip("negatives/marvin_617de221_0.wav")
    mixed = collect(WavFileSource(AUDIO / "negatives/marvin_617de221_0.wav"))
    expected = np.round(audio.astype(np.float64).mean(axis=1))
    assert np.abs(mixed - expected).max() <= 1
    right = collect(WavFileSource(AUDIO / "negatives/marvin_617de221_0.wav", channel=1))
    assert np.array_equal(right, audio[:, 1])
    with pytest.raises(InputError, match="channel 2 does not exist"):
        WavFileSource(AUDIO / "negatives/marvin_617de221_0.wav", channel=2)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_rates_are_resampled_as_a_stream(tmp_path, rate):
    _, audio = read_clip("keywords/yes.wav")
    x = soxr.resample(audio.astype(np.float32) / 32768, 16000, rate)
    path = tmp_path / f"yes_{rate}.wav"
    scipy.io.wavfile.write(path, rate, (x * 32767).astype(np.int16))
    out = collect(WavFileSource(path))
    assert abs(len(out) - len(audio)) <= 2
    if rate > 16000:  # no band lost: the round trip is close to the original
        n = min(len(out), len(audio))
        err = np.abs(out[:n].astype(float) - audio[:n]).mean() / np.abs(audio).mean()
        assert err < 0.05


def test_float_and_24_bit_files_are_read(tmp_path):
    _, audio = read_clip("keywords/yes.wav")
    scipy.io.wavfile.write(tmp_path / "f.wav", 16000, audio.astype(np.float32) / 32768)
    assert np.array_equal(collect(WavFileSource(tmp_path / "f.wav")), audio)
    raw = (audio.astype(np.int32) << 16)
    scipy.io.wavfile.write(tmp_path / "i32.wav", 16000, raw)
    assert np.array_equal(collect(WavFileSource(tmp_path / "i32.wav")), audio)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"this is not a wav file at all" * 10, "not a readable WAV file"),
])
def test_bad_files_are_one_input_error(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        WavFileSource(path)


@pytest.mark.parametrize("cut", [30, 10000])
def test_truncated_files_are_refused(tmp_path, cut):
    path = tmp_path / "cut.wav"
    path.write_bytes((AUDIO / "keywords/yes.wav").read_bytes()[:cut])
    with pytest.raises(InputError, match="truncated"):
        WavFileSource(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        WavFileSource(tmp_path / "nope.wav")


def test_converter_state_carries_across_blocks():
    """Block-wise resampling equals one-shot resampling: no clicks at block edges."""
    t = np.arange(48000 * 2) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    conv = StreamConverter(48000, 1)
    blocks = [conv.convert(tone[i : i + 960], last=i + 960 >= len(tone)) for i in range(0, len(tone), 960)]
    streamed = np.concatenate(blocks).astype(float)
    whole = StreamConverter(48000, 1).convert(tone, last=True).astype(float)
    n = min(len(streamed), len(whole))
    assert np.abs(streamed[:n] - whole[:n]).max() <= 2
