"""Audio sources: everything becomes 16 kHz mono int16 blocks here, at the edge.

`StreamConverter` mixes down and resamples as a stream (python-soxr keeps filter
state across blocks, so block edges do not click); files and microphones share it.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from . import resample
from .errors import InputError
from .features import SAMPLE_RATE

BLOCK_SECONDS = 0.1


class StreamConverter:
    """Any rate, any channel count, int or float samples -> 16 kHz mono int16.

    `channel` selects one channel (0-based); None mixes all channels down (mean).
    """

    def __init__(self, rate: int, channels: int, channel: int | None = None) -> None:
        if channel is not None and not 0 <= channel < channels:
            raise InputError(f"channel {channel} does not exist: the input has {channels} channel(s)")
        self.rate = rate
        self.channels = channels
        self.channel = channel
        self._resampler = None if rate == SAMPLE_RATE else resample.stream(rate, SAMPLE_RATE)

    @property
    def passthrough(self) -> bool:
        return self._resampler is None and self.channels == 1

    def convert(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Convert one block (frames[, channels]); `last` flushes the resampler."""
        if self.passthrough and block.dtype == np.int16:
            return block.reshape(-1)
        x = _to_float(block)
        if x.ndim == 2:
            x = x[:, self.channel] if self.channel is not None else x.mean(axis=1)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=last)
        return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def _to_float(block: np.ndarray) -> np.ndarray:
    """Samples as float in [-1, 1): int16 / 32768, as the front end expects."""
    if block.dtype == np.int16:
        return block.astype(np.float32) / 32768.0
    if block.dtype == np.int32:
        return (block.astype(np.float64) / 2147483648.0).astype(np.float32)
    if block.dtype == np.uint8:
        return (block.astype(np.float32) - 128.0) / 128.0
    return block.astype(np.float32)


class WavFileSource:
    """A WAV file read block by block, exactly as the microphone would deliver it."""

    def __init__(self, path: Path, channel: int | None = None) -> None:
        self.path = path
        self.rate, self._data = _read_wav(path)
        self.channels = 1 if self._data.ndim == 1 else self._data.shape[1]
        self.frames = self._data.shape[0]
        self._converter = StreamConverter(self.rate, self.channels, channel)

    @property
    def duration(self) -> float:
        return self.frames / self.rate

    def blocks(self, seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
        """16 kHz mono int16 blocks covering the whole file."""
        step = max(1, int(self.rate * seconds))
        for start in range(0, self.frames, step):
            chunk = np.asarray(self._data[start : start + step])
            last = start + step >= self.frames
            out = self._converter.convert(chunk, last=last)
            if len(out):
                yield out


def _read_wav(path: Path) -> tuple[int, np.ndarray]:
    """Open a WAV memory-mapped where possible; every failure is one InputError line."""
    import scipy.io.wavfile  # ~23 MB resident: only `detect` reads files, the daemon never does

    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a WAV file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file, not a WAV file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", scipy.io.wavfile.WavFileWarning)
            try:
                rate, data = scipy.io.wavfile.read(path, mmap=True)
            except ValueError as exc:
                if "mmap length" in str(exc):
                    raise InputError(f"{path}: truncated WAV file (shorter than its header says)") from None
                if "mmap" not in str(exc):  # formats mmap cannot map (e.g. 24-bit) are read whole
                    raise
                rate, data = scipy.io.wavfile.read(path, mmap=False)
    except InputError:
        raise
    except scipy.io.wavfile.WavFileWarning as exc:
        if "prematurely" in str(exc):
            raise InputError(f"{path}: truncated WAV file (shorter than its header says)") from None
        raise InputError(f"{path}: unreadable WAV file ({exc})") from None
    except struct.error:  # the header itself is cut short
        raise InputError(f"{path}: truncated WAV file (the header is incomplete)") from None
    except Exception as exc:  # scipy raises ValueError, OSError...
        raise InputError(f"{path}: not a readable WAV file ({_short(exc)}); "
                         "convert it with e.g. `sox in.any out.wav`") from None
    if data.size == 0:
        raise InputError(f"{path}: WAV file holds no audio")
    if rate <= 0:
        raise InputError(f"{path}: WAV header gives an invalid sample rate {rate}")
    return rate, data


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
