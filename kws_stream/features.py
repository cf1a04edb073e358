"""The MicroNet MFCC front end, exactly as the models were trained (see SPEC.md).

`MfccExtractor` turns one 640-sample frame into 10 coefficients. `FeatureWindow`
is the streaming stage: it is fed int16 audio of any block size, yields each 320-sample
hop with its level, and computes the MFCC frames a window needs, each exactly once.
The level helpers live here too: each sample is looked at by this stage only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

SAMPLE_RATE = 16000  # Hz: what the models were trained on; every source is resampled to it
HOP_SAMPLES = 320  # one MFCC frame step (20 ms)

FULL_SCALE_POWER = 32768.0 ** 2
FULL_SCALE_DB = 20.0 * math.log10(32768.0)  # int16 full scale -> 0 dBFS
SILENCE_DBFS = -100.0  # level given to digital silence (avoids log(0))


@dataclass(frozen=True)
class FeatureParams:
    """The front-end recipe; the defaults are the MicroNet training front end."""

    sample_rate: int = SAMPLE_RATE
    frame_length: int = 640
    frame_step: int = HOP_SAMPLES
    fft_length: int = 1024
    num_mel_bins: int = 40
    lower_hz: float = 20.0
    upper_hz: float = 4000.0
    num_mfcc: int = 10
    num_frames: int = 49

    @property
    def window_samples(self) -> int:
        """Audio covered by one model input (16000 samples for MicroNet)."""
        return self.frame_length + (self.num_frames - 1) * self.frame_step

    def frame_end(self, index: int) -> int:
        """Stream position of the end of frame (hop) `index`, counted from 0."""
        return index * self.frame_step + self.frame_length

    @property
    def geometry(self) -> StreamGeometry:
        return StreamGeometry(self.sample_rate, self.frame_step, self.frame_length,
                              self.num_frames, self.num_mfcc)


@dataclass(frozen=True)
class StreamGeometry:
    """The shape of the stream every stage agrees on, derived from `FeatureParams`.

    A model window covers `window_samples` of audio: `frames` MFCC frames of
    `frame_samples`, one every `hop_samples`. Counted in hops of the stream, that window
    spans `window_hops` (one more than `frames`: the first frame needs two hops of audio).
    """

    sample_rate: int
    hop_samples: int
    frame_samples: int
    frames: int
    coefficients: int

    @property
    def window_samples(self) -> int:
        return self.frame_samples + (self.frames - 1) * self.hop_samples

    @property
    def window_hops(self) -> int:
        """Hops of audio one window spans (50 for MicroNet: 16000 / 320)."""
        return round(self.window_samples / self.hop_samples)

    @property
    def hop_seconds(self) -> float:
        return self.hop_samples / self.sample_rate

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The model's input tensor: (batch, frames, coefficients, channel)."""
        return (1, self.frames, self.coefficients, 1)

    def seconds(self, samples: int) -> float:
        return samples / self.sample_rate

    def hops(self, seconds: float) -> int:
        """A duration in whole hops (rounded)."""
        return int(round(seconds / self.hop_seconds))


MICRONET = FeatureParams().geometry  # the geometry of the shipped models


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_filterbank(params: FeatureParams) -> np.ndarray:
    """HTK-mel triangles over FFT bins 0..fft/2-1, peak 1, built in the mel domain.

    A bin gets weight only when strictly inside a triangle's edges; its weight is its
    linear position (in mel) between the neighbouring centres. Shape (bins, mels).
    """
    num_bins = params.fft_length // 2
    bin_hz = np.arange(num_bins) * params.sample_rate / params.fft_length
    bin_mel = _hz_to_mel(bin_hz)
    edges = np.linspace(_hz_to_mel(params.lower_hz), _hz_to_mel(params.upper_hz),
                        params.num_mel_bins + 2)
    weights = np.zeros((num_bins, params.num_mel_bins))
    for m in range(params.num_mel_bins):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        rising = (bin_mel > left) & (bin_mel <= centre)
        falling = (bin_mel > centre) & (bin_mel < right)
        weights[rising, m] = (bin_mel[rising] - left) / (centre - left)
        weights[falling, m] = (right - bin_mel[falling]) / (right - centre)
    return weights


def dct_matrix(num_inputs: int, num_outputs: int) -> np.ndarray:
    """DCT-II with every coefficient (c0 included) scaled by sqrt(2/N), as a (N, K) matrix.

    Not the orthonormal DCT: c0 gets the same sqrt(2/N) as the others.
    """
    n = np.arange(num_inputs)[:, np.newaxis]
    k = np.arange(num_outputs)[np.newaxis, :]
    return np.sqrt(2.0 / num_inputs) * np.cos(np.pi * k * (2 * n + 1) / (2 * num_inputs))


class MfccExtractor:
    """One 640-sample int16 frame in, 10 MFCC coefficients out (float64)."""

    LOG_FLOOR = 1e-12

    def __init__(self, params: FeatureParams = FeatureParams()) -> None:
        self.params = params
        n = np.arange(params.frame_length)
        self._window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / params.frame_length)
        self._filterbank = mel_filterbank(params)
        self._num_bins = params.fft_length // 2
        self._dct = dct_matrix(params.num_mel_bins, params.num_mfcc)

    def frame(self, samples: np.ndarray) -> np.ndarray:
        """MFCC of exactly one frame of int16 samples."""
        return self.frames(samples[np.newaxis, :])[0]

    def frames(self, frames: np.ndarray) -> np.ndarray:
        """MFCC of a (n, frame_length) int16 array of frames, shape (n, num_mfcc)."""
        x = frames.astype(np.float64) * (self._window / 32768.0)
        spectrum = np.fft.rfft(x, n=self.params.fft_length, axis=-1)[:, : self._num_bins]
        mel = np.abs(spectrum) @ self._filterbank
        return np.log(mel + self.LOG_FLOOR) @ self._dct

    def window(self, samples: np.ndarray) -> np.ndarray:
        """From-scratch features of one whole window (reference for the streaming path)."""
        p = self.params
        starts = np.arange(p.num_frames) * p.frame_step
        idx = starts[:, np.newaxis] + np.arange(p.frame_length)
        return self.frames(np.asarray(samples)[idx])


class Hop(NamedTuple):
    """One 20 ms hop of the stream, as the feature stage saw it."""

    number: int  # 0-based: hop k is the end of frame k (frames are numbered from 0)
    end_sample: int  # stream position of the end of frame k
    level_db: float  # level of the hop's newest `frame_step` samples (see `hop_level_db`)


class FeatureWindow:
    """The streaming front end: int16 audio of any block size in, one `Hop` out per 320 samples.

    Each hop's level is measured as it arrives: it is the cheap evidence command mode
    decides on. Its MFCC frame is computed only when a window asks for it: every hop in
    plain mode, only around candidate bursts in command mode. The audio of the last
    `history_hops` hops is kept (twice, in a mirrored ring, so that any frame is one
    contiguous slice) and so is every frame computed, so no frame is ever computed twice
    and no window recomputes older frames.
    """

    HISTORY_HOPS = 300  # 6 s: command mode's 4 s of history + a 1 s window + smoothing warm-up

    def __init__(self, extractor: MfccExtractor, history_hops: int = HISTORY_HOPS) -> None:
        p = extractor.params
        if history_hops < p.num_frames:
            raise ValueError(f"history_hops must hold a window ({p.num_frames} hops), not {history_hops}")
        self.params = p
        self._extractor = extractor
        self._capacity = (history_hops - 1) * p.frame_step + p.frame_length  # samples kept
        self._audio = np.zeros(2 * self._capacity, dtype=np.int16)
        self._written = 0  # samples pushed so far
        self._history = history_hops
        self._frames = np.zeros((history_hops, p.num_mfcc))
        self._frame_ids = np.full(history_hops, -1, dtype=np.int64)  # which frame each slot holds
        self.frames_total = 0
        """Frames (hops) completed since the start of the stream."""
        self.frames_computed = 0
        """MFCC frames actually computed (benchmarks: what command mode saves)."""

    @property
    def ready(self) -> bool:
        """True once a whole window (49 frames, 1 s) of audio has been seen."""
        return self.frames_total >= self.params.num_frames

    @property
    def samples_pushed(self) -> int:
        return self._written

    @property
    def samples_covered(self) -> int:
        """Stream position (in samples) of the end of the newest frame."""
        return self.frame_end(self.frames_total - 1) if self.frames_total else 0

    def frame_end(self, index: int) -> int:
        return self.params.frame_end(index)

    def oldest_window(self) -> int:
        """The oldest hop whose window can still be computed (its audio or frames are kept)."""
        return max(self.params.num_frames - 1, self.frames_total - self._history + self.params.num_frames - 1)

    def push(self, samples: np.ndarray) -> Iterator[Hop]:
        """Append int16 audio; a generator that yields after each completed hop, so the
        caller can look at every hop (and window), whatever the block size."""
        samples = np.asarray(samples, dtype=np.int16).reshape(-1)
        step, length = self.params.frame_step, self.params.frame_length
        pos, size = 0, len(samples)
        while pos < size:
            need = self.frames_total * step + length - self._written  # to the end of the next frame
            take = min(need, size - pos)
            self._write(samples[pos:pos + take])
            pos += take
            if take == need:
                index = self.frames_total
                self.frames_total += 1
                end = self._written
                yield Hop(index, end, hop_level_db(self._slice(end - step, end)))

    def _write(self, x: np.ndarray) -> None:
        capacity, n, audio = self._capacity, len(x), self._audio
        i = self._written % capacity
        audio[i:i + n] = x  # i < capacity and n <= frame_length: fits in 2 * capacity
        if i + n <= capacity:  # mirrored after the first half
            audio[i + capacity:i + capacity + n] = x
        else:  # the part in the first half is mirrored after it, the part past it before it
            first = capacity - i
            audio[i + capacity:] = x[:first]
            audio[:n - first] = x[first:]
        self._written += n

    def audio(self, end: int, n: int) -> np.ndarray:
        """Up to `n` samples ending at stream position `end` (fewer near the stream's start
        or past the audio kept), a copy."""
        start = max(end - n, 0, self._written - self._capacity)
        return self._slice(start, end).copy() if end > start else np.zeros(0, dtype=np.int16)

    def _slice(self, start: int, end: int) -> np.ndarray:
        i = start % self._capacity
        return self._audio[i:i + end - start]

    def frame(self, index: int) -> np.ndarray:
        """The MFCC of frame `index` (computed now if it was not)."""
        slot = index % self._history
        if self._frame_ids[slot] != index:
            start = index * self.params.frame_step
            if start < self._written - self._capacity or index >= self.frames_total:
                raise IndexError(f"frame {index} is not available (frames 0-{self.frames_total - 1} seen)")
            self._frames[slot] = self._extractor.frame(self._slice(start, start + self.params.frame_length))
            self._frame_ids[slot] = index
            self.frames_computed += 1
        return self._frames[slot]

    def window(self, end: int | None = None) -> np.ndarray:
        """The `num_frames` frames ending with frame `end` (default: the newest), oldest
        first, shape (49, 10); computes the frames not computed yet."""
        end = self.frames_total - 1 if end is None else end
        first = end - self.params.num_frames + 1
        if first < 0:
            raise IndexError(f"no whole window ends at frame {end}")
        frames = np.arange(first, end + 1)
        slots = frames % self._history
        for index in frames[self._frame_ids[slots] != frames]:  # usually just the newest (plain mode)
            self.frame(int(index))
        return self._frames[slots]


def hop_level_db(hop: np.ndarray) -> float:
    """Level of one hop of int16 samples in dBFS (digital silence -> SILENCE_DBFS)."""
    x = hop.astype(np.float32)
    power = float(np.dot(x, x)) / max(1, len(x))
    if power <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 10.0 * math.log10(power) - FULL_SCALE_DB)


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level of int16 audio in dBFS (for logs and benchmarks)."""
    x = samples.astype(np.float64)
    power = float(np.mean(x * x)) if len(x) else 0.0
    return 10.0 * math.log10(max(power, 1e-12) / FULL_SCALE_POWER)
