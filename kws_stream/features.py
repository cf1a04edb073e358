"""The MicroNet MFCC front end, exactly as the models were trained (see SPEC.md).

`MfccExtractor` turns one 640-sample frame into 10 coefficients. `FeatureWindow`
is the streaming stage: it is fed int16 audio of any block size, computes exactly
one new frame per 320-sample hop, and keeps the 49 most recent frames as a
contiguous array without ever recomputing older frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class FeatureParams:
    """The front-end recipe; the defaults are the MicroNet training front end."""

    sample_rate: int = SAMPLE_RATE
    frame_length: int = 640
    frame_step: int = 320
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


class FeatureWindow:
    """Streaming MFCC: one new frame per hop, a sliding window of the newest frames.

    Frames live twice in a (2 * num_frames) ring so that the newest `num_frames`
    are always one contiguous slice: no roll, no copy, no recomputation.
    """

    def __init__(self, extractor: MfccExtractor) -> None:
        p = extractor.params
        self.params = p
        self._extractor = extractor
        # Audio not yet consumed by a frame: the frame overlap plus a partial hop.
        self._pending = np.zeros(0, dtype=np.int16)
        self._ring = np.zeros((2 * p.num_frames, p.num_mfcc))
        self._next = 0
        self.frames_total = 0
        """Frames computed since the start of the stream."""

    @property
    def ready(self) -> bool:
        """True once a whole window (49 frames, 1 s) of audio has been seen."""
        return self.frames_total >= self.params.num_frames

    @property
    def samples_covered(self) -> int:
        """Stream position (in samples) of the end of the newest frame."""
        p = self.params
        if self.frames_total == 0:
            return 0
        return (self.frames_total - 1) * p.frame_step + p.frame_length

    def push(self, samples: np.ndarray) -> Iterator[int]:
        """Append int16 audio, computing frames one hop at a time.

        A generator: it yields after each new frame (the running `frames_total`),
        so the caller can look at every window, whatever the block size.
        """
        p = self.params
        audio = np.concatenate((self._pending, np.asarray(samples, dtype=np.int16)))
        start = 0
        while start + p.frame_length <= len(audio):
            self._store(self._extractor.frame(audio[start : start + p.frame_length]))
            start += p.frame_step
            yield self.frames_total
        self._pending = audio[start:]

    def _store(self, frame: np.ndarray) -> None:
        n = self.params.num_frames
        self._ring[self._next] = frame
        self._ring[self._next + n] = frame
        self._next = (self._next + 1) % n
        self.frames_total += 1

    def window(self) -> np.ndarray:
        """The newest `num_frames` frames, oldest first, shape (49, 10). A view: copy to keep."""
        return self._ring[self._next : self._next + self.params.num_frames]
