import struct
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
import soxr
from conftest import AUDIO, read_clip

from kws_stream.errors import InputError
from kws_stream.features import MICRONET
from kws_stream.sources import BLOCK_SECONDS, StreamConverter, WavFileSource

RATE = MICRONET.sample_rate
BLOCK = int(RATE * BLOCK_SECONDS)  # samples in one block the source yields


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
    x = soxr.resample(audio.astype(np.float32) / 32768, RATE, rate)
    path = tmp_path / f"yes_{rate}.wav"
    scipy.io.wavfile.write(path, rate, (x * 32767).astype(np.int16))
    out = collect(WavFileSource(path))
    assert abs(len(out) - len(audio)) <= 2
    if rate > RATE:  # no band lost: the round trip is close to the original
        n = min(len(out), len(audio))
        err = np.abs(out[:n].astype(float) - audio[:n]).mean() / np.abs(audio).mean()
        assert err < 0.05


def test_float_and_24_bit_files_are_read(tmp_path):
    _, audio = read_clip("keywords/yes.wav")
    scipy.io.wavfile.write(tmp_path / "f.wav", RATE, audio.astype(np.float32) / 32768)
    assert np.array_equal(collect(WavFileSource(tmp_path / "f.wav")), audio)
    raw = (audio.astype(np.int32) << 16)
    scipy.io.wavfile.write(tmp_path / "i32.wav", RATE, raw)
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


def sox(*args: object) -> None:
    subprocess.run(["sox", *map(str, args)], check=True, capture_output=True)


def with_header_fields(src: Path, dst: Path, data_size: int | None = None, rate: int | None = None) -> Path:
    """A copy of a WAV whose data size (and RIFF size) or sample rate is rewritten, as
    streaming writers (arecord, `sox ... -`) or a corrupt header would have it."""
    raw = bytearray(src.read_bytes())
    if data_size is not None:
        at = raw.index(b"data")
        raw[at + 4 : at + 8] = struct.pack("<I", data_size)
        raw[4:8] = struct.pack("<I", data_size)
    if rate is not None:
        at = raw.index(b"fmt ")
        raw[at + 12 : at + 16] = struct.pack("<I", rate)
    dst.write_bytes(bytes(raw))
    return dst


def test_a_long_24_bit_file_is_read_block_by_block(tmp_path):
    """Issue 15.10: memory stays bounded by the block size, not the file size."""
    _, audio = read_clip("keywords/yes.wav")
    long = tmp_path / "long24.wav"
    sox(AUDIO / "keywords/yes.wav", "-b", "24", long, "repeat", 299)  # 5 minutes, 14.4 MB
    source = WavFileSource(long)
    total = 0
    for k, block in enumerate(source.blocks()):
        if k == 1234:  # decoded exactly: 16-bit samples widened to 24 bits
            assert np.array_equal(block, np.tile(audio, 2)[(k * BLOCK) % RATE:][:BLOCK])
        total += len(block)
    assert total == 300 * RATE
    assert source.max_read_bytes <= BLOCK * 3  # one 0.1 s block of 24-bit mono
    assert long.stat().st_size > 2000 * source.max_read_bytes


def test_a_block_is_bounded_whatever_the_channel_count(tmp_path):
    path = tmp_path / "many.wav"
    scipy.io.wavfile.write(path, 384000, np.zeros((384000 // 4, 64), dtype=np.float64))
    source = WavFileSource(path)
    assert sum(len(b) for b in source.blocks()) == 4000
    assert source.max_read_bytes <= 1 << 20


@pytest.mark.parametrize("sox_args", [
    ("-b", "8", "-e", "unsigned-integer"), ("-b", "24"), ("-b", "32", "-e", "signed-integer"),
    ("-b", "32", "-e", "floating-point"), ("-b", "64", "-e", "floating-point"),
], ids=["u8", "s24", "s32", "f32", "f64"])
def test_every_sox_sample_format_decodes_to_the_same_audio(tmp_path, sox_args):
    _, audio = read_clip("keywords/yes.wav")
    path = tmp_path / "x.wav"
    sox("-D", AUDIO / "keywords/yes.wav", *sox_args, path)  # -D: no dither
    out = collect(WavFileSource(path))
    tolerance = 128 if sox_args[1] == "8" else 0  # 8-bit keeps the top 8 bits, rounded
    assert len(out) == len(audio) and np.abs(out.astype(int) - audio).max() <= tolerance


def test_int64_pcm_is_read(tmp_path):
    _, audio = read_clip("keywords/yes.wav")
    path = tmp_path / "i64.wav"
    scipy.io.wavfile.write(path, RATE, audio.astype(np.int64) << 48)
    assert np.array_equal(collect(WavFileSource(path)), audio)


@pytest.mark.parametrize("size", [0, 0x7FFFF000, 0x7FFFFFFF, 0xFFFFFFFF],
                         ids=["zero", "sox-pipe", "arecord", "max"])
def test_streaming_header_sizes_mean_read_to_the_end(tmp_path, size):
    _, audio = read_clip("keywords/right_left_up.wav")
    path = with_header_fields(AUDIO / "keywords/right_left_up.wav", tmp_path / "s.wav", data_size=size)
    assert np.array_equal(collect(WavFileSource(path)), audio)


@pytest.mark.parametrize("rate", [10**9, 1, 0, 400000])
def test_an_absurd_sample_rate_is_refused(tmp_path, rate):
    path = with_header_fields(AUDIO / "keywords/yes.wav", tmp_path / "r.wav", rate=rate)
    with pytest.raises(InputError, match=f"sample rate of {rate} Hz.*4000-384000 Hz"):
        WavFileSource(path)


def test_nan_and_inf_samples_are_silence_logged_once(tmp_path, caplog):
    _, audio = read_clip("keywords/yes.wav")
    x = audio.astype(np.float32) / 32768
    x[100:200], x[300], x[9000] = np.nan, np.inf, -np.inf
    path = tmp_path / "nan.wav"
    scipy.io.wavfile.write(path, RATE, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any numpy RuntimeWarning fails the test
        with caplog.at_level("WARNING", logger="kws_stream"):
            out = collect(WavFileSource(path))
    expected = audio.copy()
    expected[100:200] = expected[300] = expected[9000] = 0
    assert np.array_equal(out, expected)
    assert [r.getMessage() for r in caplog.records] == [f"event=wav_nonfinite_samples path={path} action=treated_as_zero"]


@pytest.mark.parametrize("content, message", [
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x06\x00\x01\x00\x40\x1f\x00\x00\x40\x1f\x00\x00\x01\x00\x08\x00"
     b"data\x00\x00\x00\x00", "unsupported WAV encoding 0x0006"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x00\x00\x80\x3e\x00\x00\x00\x7d\x00\x00\x02\x00\x10\x00"
     b"data\x00\x00\x00\x00", "0 channels"),
    (b"RIFF\x24\x00\x00\x00WAVEdata\x04\x00\x00\x00\x00\x00\x00\x00", "no fmt chunk before the data"),
], ids=["a-law", "no-channels", "no-fmt"])
def test_headers_it_cannot_read_are_one_input_error(tmp_path, content, message):
    path = tmp_path / "h.wav"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        WavFileSource(path)


def test_a_truncated_pipe_yields_every_sample_that_arrived_then_one_error():
    import os
    import threading

    raw = (AUDIO / "keywords/yes_no_go_stop.wav").read_bytes()
    header = raw.index(b"data") + 8
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, raw[:header + 20001]), os.close(w)))
    writer.start()
    try:
        source = WavFileSource(Path(f"/dev/fd/{r}"))
        got = []
        with pytest.raises(InputError, match="truncated WAV file"):
            for block in source.blocks():
                got.append(block)
    finally:
        writer.join(10)
        os.close(r)
    _, audio = read_clip("keywords/yes_no_go_stop.wav")
    assert np.array_equal(np.concatenate(got), audio[:10000])  # the odd last byte is half a sample
