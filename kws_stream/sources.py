"""Audio sources: everything becomes 16 kHz mono int16 blocks here, at the edge.

`StreamConverter` mixes down and resamples as a stream (the resampler keeps filter
state across blocks, so block edges do not click); files and microphones share it.
`WavFileSource` reads a WAV file, pipe or FIFO as a stream: only its header and one
block are ever in memory, whatever the file's length, rate or sample format.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import resample
from .errors import InputError
from .features import SAMPLE_RATE

log = logging.getLogger(__name__)

BLOCK_SECONDS = 0.1
RATE_RANGE = (4000, 384000)  # Hz a WAV header may give: anything else is a corrupt header
MAX_BLOCK_BYTES = 1 << 20  # the largest single read of samples, whatever the rate and channels
STREAMING_SIZE = 0x7FFFF000  # a data size of 0 or at least this is a placeholder: read to EOF


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
    """A WAV file, pipe or FIFO (`-` is stdin) read block by block, as a microphone delivers.

    PCM 8/16/24/32/64-bit and float 32/64-bit, any channel count, RIFF, RIFX, RF64 and
    WAVE_FORMAT_EXTENSIBLE. Writers that cannot seek back to fill in the sizes (arecord,
    `sox ... -`) leave 0 or ~2^31/2^32 there: such data is read to the end of the input.
    Every problem is one InputError line; for a regular file everything the header says
    is checked before the first block.
    """

    def __init__(self, path: Path, channel: int | None = None) -> None:
        self.path = path
        self.max_read_bytes = 0  # the largest single read, for the memory bound's tests
        self._nonfinite = 0
        self._truncated = False  # a pipe ended before the size its header gave
        self._file = _open(path)
        try:
            self.format, self._left = self._header()
            self.rate, self.channels = self.format.rate, self.format.channels
            self._converter = StreamConverter(self.rate, self.channels, channel)
            self._block_bytes = self.format.frame_bytes * max(1, min(
                int(self.rate * BLOCK_SECONDS), MAX_BLOCK_BYTES // self.format.frame_bytes))
            self._next = self._read_block()  # read ahead: the last block flushes the resampler
            if self._next is None:
                self._raise_if_truncated()
                raise InputError(f"{path}: WAV file holds no audio")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._file is not sys.stdin.buffer:
            self._file.close()

    def blocks(self) -> Iterator[np.ndarray]:
        """16 kHz mono int16 blocks covering the whole input."""
        try:
            while (block := self._next) is not None:
                self._next = self._read_block()
                out = self._converter.convert(block, last=self._next is None)
                if len(out):
                    yield out
            self._raise_if_truncated()  # after the audio that did arrive
        finally:
            self.close()

    def _raise_if_truncated(self) -> None:
        if self._truncated:
            raise InputError(f"{self.path}: truncated WAV file (shorter than its header says)")

    def _read(self, n: int) -> bytes:
        self.max_read_bytes = max(self.max_read_bytes, n)
        try:
            return self._file.read(n)
        except OSError as exc:
            raise InputError(f"{self.path}: read error ({exc.strerror or exc})") from None

    def _skip(self, n: int) -> None:
        while n > 0:
            got = len(self._read(min(n, 1 << 16)))
            if got == 0:
                return
            n -= got

    def _header(self) -> tuple[WavFormat, int | None]:
        """Parse up to the data chunk; returns the format and the data bytes (None: to EOF)."""
        riff = self._read(12)
        if len(riff) < 12 or riff[:4] not in (b"RIFF", b"RIFX", b"RF64") or riff[8:12] != b"WAVE":
            if len(riff) == 0:
                raise InputError(f"{self.path}: empty file, not a WAV file")
            if riff[:4] in (b"RIFF", b"RIFX", b"RF64") and len(riff) < 12:
                raise InputError(f"{self.path}: truncated WAV file (the header is incomplete)")
            raise InputError(f"{self.path}: not a readable WAV file (no RIFF/WAVE header); "
                             "convert it with e.g. `sox in.any out.wav`")
        big = riff[:4] == b"RIFX"
        end = ">" if big else "<"
        fmt: WavFormat | None = None
        rf64_size: int | None = None
        while True:
            head = self._read(8)
            if len(head) < 8:
                what = "the header is incomplete" if fmt is None else "no data chunk"
                raise InputError(f"{self.path}: truncated WAV file ({what})")
            chunk, size = head[:4], struct.unpack(end + "I", head[4:])[0]
            if chunk == b"data":
                break
            if chunk == b"fmt ":
                body = self._read(min(size, 64))
                fmt = _parse_fmt(self.path, body, big)
                self._skip(size + (size & 1) - len(body))
            elif chunk == b"ds64" and size >= 16:
                body = self._read(min(size, 64))
                rf64_size = struct.unpack("<Q", body[8:16])[0] if len(body) >= 16 else None
                self._skip(size + (size & 1) - len(body))
            else:
                self._skip(size + (size & 1))
        if fmt is None:
            raise InputError(f"{self.path}: not a readable WAV file (no fmt chunk before the data)")
        if riff[:4] == b"RF64" and size == 0xFFFFFFFF and rf64_size is not None:
            size = rf64_size
        available = self._available()
        if size == 0 or STREAMING_SIZE <= size <= 0xFFFFFFFF and (available is None or size > available):
            return fmt, None
        if available is not None and size > available:
            raise InputError(f"{self.path}: truncated WAV file (shorter than its header says)")
        return fmt, size

    def _available(self) -> int | None:
        """Bytes left in a regular file; None for a pipe, FIFO or terminal."""
        try:
            info = os.fstat(self._file.fileno())
            if stat.S_ISREG(info.st_mode):
                return info.st_size - self._file.tell()
        except (OSError, ValueError):
            pass
        return None

    def _read_block(self) -> np.ndarray | None:
        """The next block as (frames[, channels]) samples, None at the end of the data."""
        want = self._block_bytes if self._left is None else min(self._block_bytes, self._left)
        raw = self._read(want) if want else b""
        if self._left is not None:
            self._left -= len(raw)
            if len(raw) < want:  # only a pipe gets here: a regular file was checked up front
                self._truncated, self._left = True, 0
        raw = raw[: len(raw) - len(raw) % self.format.frame_bytes]
        if not raw:
            return None
        block = self.format.decode(raw)
        if self.format.is_float:
            finite = np.isfinite(block)
            if not finite.all():  # NaN/inf would poison the resampler and the cast to int16
                if self._nonfinite == 0:
                    log.warning("event=wav_nonfinite_samples path=%s action=treated_as_zero", self.path)
                self._nonfinite += int(block.size - finite.sum())
                block = np.where(finite, block, 0.0)
            block = np.clip(block, -1.0, 1.0).astype(np.float32)
        return block


_FORMATS = {0x0001: "PCM", 0x0003: "float"}
_NAMES = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}


@dataclass(frozen=True)
class WavFormat:
    rate: int
    channels: int
    width: int  # bytes per sample in the file (the container: 24-bit in 32 bits reads as 32)
    is_float: bool
    big_endian: bool = False

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.width

    def decode(self, raw: bytes) -> np.ndarray:
        """Whole frames of sample bytes -> (frames, channels), or (frames,) for mono.

        16-bit PCM stays int16 (so a 16 kHz mono file passes through bit-exactly);
        other integers become float32 in [-1, 1), as int16 / 32768 would be.
        """
        e = ">" if self.big_endian else "<"
        w = self.width
        if self.is_float:  # as stored: the reader zeroes NaN/inf, then clips and narrows
            x = np.frombuffer(raw, f"{e}f{w}")
        elif w == 2:
            x = np.frombuffer(raw, f"{e}i2").astype(np.int16)
        elif w == 1:
            x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
        elif w == 3:  # widen to int32 with the 3 bytes as its top bytes
            b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
            wide = np.zeros((len(b), 4), np.uint8)
            wide[:, 1:] = b if not self.big_endian else b[:, ::-1]
            x = (wide.view("<i4").reshape(-1) / 2.0**31).astype(np.float32)
        else:
            x = (np.frombuffer(raw, f"{e}i{w}") / 2.0 ** (8 * w - 1)).astype(np.float32)
        return x if self.channels == 1 else x.reshape(-1, self.channels)


def _parse_fmt(path: Path, body: bytes, big: bool) -> WavFormat:
    if len(body) < 16:
        raise InputError(f"{path}: truncated WAV file (the fmt chunk is incomplete)")
    tag, channels, rate, _, align, bits = struct.unpack((">" if big else "<") + "HHIIHH", body[:16])
    if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
        tag = struct.unpack((">" if big else "<") + "H", body[24:26])[0]
    if tag not in _FORMATS:
        name = _NAMES.get(tag, "unknown")
        raise InputError(f"{path}: unsupported WAV encoding 0x{tag:04x} ({name}); "
                         "convert it with e.g. `sox in.wav -e signed -b 16 out.wav`")
    if channels == 0:
        raise InputError(f"{path}: WAV header gives 0 channels (corrupt header)")
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise InputError(f"{path}: WAV header gives a sample rate of {rate} Hz, outside the "
                         f"{RATE_RANGE[0]}-{RATE_RANGE[1]} Hz kws-stream reads (corrupt header?)")
    width = align // channels if align and align % channels == 0 else (bits + 7) // 8
    is_float = tag == 0x0003
    if (width not in (4, 8)) if is_float else (width not in (1, 2, 3, 4, 8) or bits > 8 * width):
        kind = "float" if is_float else "integer"
        raise InputError(f"{path}: unsupported sample format ({bits}-bit {kind} in {width} bytes); "
                         "convert it with e.g. `sox in.wav -e signed -b 16 out.wav`")
    return WavFormat(rate, channels, width, is_float, big)


def _open(path: Path) -> BinaryIO:
    """The file (or stdin for `-`) opened for reading; failures are one InputError line."""
    if str(path) == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a WAV file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
