"""The shared test and benchmark helpers (testsupport/audio.py, testsupport/net.py) do what
the tests and benchmarks that use them rely on, on the real recordings."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from conftest import read_clip

from kws_stream.features import MICRONET, level_dbfs
from testsupport.audio import NOISE_CLIP, read_wav, room_tone, write_wav
from testsupport.net import free_port

RATE = MICRONET.sample_rate


def test_read_wav_is_the_file_for_16k_mono_and_the_rounded_mean_for_stereo():
    rate, mono = read_clip("keywords/right_left_up.wav")
    assert rate == RATE and np.array_equal(read_wav("keywords/right_left_up.wav"), mono)
    _, stereo = read_clip("negatives/marvin_617de221_0.wav")
    assert stereo.ndim == 2
    mixed = np.round(stereo.astype(np.float64).mean(axis=1)).astype(np.int16)
    assert np.array_equal(read_wav("negatives/marvin_617de221_0.wav"), mixed)


def test_write_wav_round_trips_a_stream_longer_than_a_minute(tmp_path):
    audio = np.concatenate([read_wav("keywords/yes.wav"), room_tone(61.0)])  # over a minute: two writes
    path = tmp_path / "sub" / "out.wav"
    write_wav(path, audio)
    assert np.array_equal(read_wav(path), audio)
    assert [p.name for p in path.parent.iterdir()] == ["out.wav"]  # no temporary file left


@pytest.mark.parametrize("level", [-60.0, -40.0])
def test_room_tone_is_the_recording_at_the_level_asked(level):
    tone = room_tone(3.0, level)
    assert tone.dtype == np.int16 and len(tone) == 3 * RATE
    assert level_dbfs(tone) == pytest.approx(level, abs=0.05)
    noise = read_wav(NOISE_CLIP).astype(np.float64)
    assert np.corrcoef(tone[: len(noise)], noise)[0, 1] > 0.999  # the recording, scaled


def test_room_tone_with_an_offset_carries_on_where_the_last_piece_stopped():
    whole = room_tone(2.0, remove_dc=True)  # two whole periods of the 1 s recording
    first = room_tone(0.7, remove_dc=True)
    rest = room_tone(1.3, offset=len(first), remove_dc=True)
    assert np.array_equal(np.concatenate([first, rest]), whole)
    assert abs(float(whole.mean())) < 0.1 < abs(float(room_tone(2.0).mean()))  # the recording's DC is gone


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        assert s.getsockname()[1] == port
