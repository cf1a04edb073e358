"""The shared recordings for tests and benchmarks: where they are, read as kws-stream reads
them, room tone (a real background recording at a quiet room's level), and writing a stream.

`read_wav` goes through the package's own reader (`kws_stream.sources.WavFileSource`), so a
benchmark hears exactly what `kws-stream detect` hears. Tests *of* that reader must not use
it: they compare against scipy's (`conftest.read_clip`).
"""

from __future__ import annotations

import math
import os
import wave
from pathlib import Path

import numpy as np

from kws_stream.features import MICRONET
from kws_stream.sources import WavFileSource

SHARED = Path(os.environ.get("KWS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
AUDIO = SHARED / "audio"
NOISE_CLIP = "negatives/noise_1000ms.wav"  # one second of a real room's background
ROOM_TONE_DBFS = -60.0  # a quiet room


def read_wav(path: Path | str) -> np.ndarray:
    """A WAV file as 16 kHz mono int16, whatever its rate, format or channels (stereo is
    averaged); a relative path is under AUDIO (`read_wav("keywords/yes.wav")`)."""
    source = WavFileSource(AUDIO / path)  # an absolute path stays itself
    return np.concatenate(list(source.blocks()))


def room_tone(seconds: float, level_dbfs: float = ROOM_TONE_DBFS, offset: int = 0,
              remove_dc: bool = False) -> np.ndarray:
    """NOISE_CLIP tiled to `seconds`, scaled to `level_dbfs` RMS, int16.

    `offset` starts that many samples into the recording (a stream that carries on where
    the last piece stopped); `remove_dc` subtracts the recording's mean (~1 LSB at -60 dBFS)
    first, as benchmarks/soak.py and benchmarks/cpu_compare.py always have.
    """
    noise = read_wav(NOISE_CLIP).astype(np.float64)
    if remove_dc:
        noise -= noise.mean()
    gain = 10 ** (level_dbfs / 20) * 32768 / math.sqrt(float(np.mean(noise ** 2)))
    index = (np.arange(round(seconds * MICRONET.sample_rate)) + offset) % len(noise)
    return np.clip(np.round(noise[index] * gain), -32768, 32767).astype(np.int16)


def write_wav(path: Path, audio: np.ndarray) -> None:
    """int16 mono `audio` as a 16 kHz WAV, a minute at a time (an hour stays flat in memory);
    written beside `path` and renamed, so a reader never sees half a file."""
    rate = MICRONET.sample_rate
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        for start in range(0, len(audio), 60 * rate):
            w.writeframes(np.asarray(audio[start : start + 60 * rate], dtype="<i2").tobytes())
    os.replace(tmp, path)
