"""Streaming resampling: python-soxr where it installs, else a polyphase FIR.

Both keep state across blocks (block edges do not click), compensate their own delay
(output sample k is input time k / rate_out) and emit round(n * rate_out / rate_in)
samples in total once `last=True` flushes them. soxr has no wheel for 32-bit ARM
(armv7l) and Debian 12 has no python3-soxr, so there the pure numpy/scipy
`PolyphaseResampler` runs instead; it is tested against soxr's output on x86.
"""

from __future__ import annotations

from math import gcd
from typing import Any, Protocol

import numpy as np

# The fallback's filter: flat to 91.3 % of the lower Nyquist, 120 dB down from 100 %, as
# soxr "HQ". Its output is then 65-108 dB SNR from soxr HQ's on the shared clips at 8-48 kHz
# (soxr's own VHQ and MQ are ~64 dB from HQ); at 100 dB it was ~64 dB and moved a detection
# near the threshold by one 20 ms hop.
PASSBAND = 0.913
ATTENUATION_DB = 120.0


class StreamResampler(Protocol):
    def resample_chunk(self, x: np.ndarray, last: bool = False) -> np.ndarray: ...


def soxr_module() -> Any:
    """python-soxr, or None where it does not install (32-bit ARM: no wheel). Imported on the
    first resampler, not with this module: a 16 kHz microphone never needs one, and soxr is
    0.5 MB resident in `kws-stream run` (issue 12)."""
    try:
        import soxr
    except ImportError:
        return None
    return soxr


def stream(rate_in: int, rate_out: int) -> StreamResampler:
    """A mono float32 stream resampler: soxr "HQ" if installed, else the polyphase FIR."""
    soxr = soxr_module()
    if soxr is not None:
        return soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="HQ")
    return PolyphaseResampler(rate_in, rate_out)


class PolyphaseResampler:
    """Rational-ratio resampling (up by L, Kaiser-windowed sinc, down by M) as a stream.

    Output k needs the inputs within `half` samples of position k * M / L; those not yet
    received wait in `_buf` for the next block (or are zeros when `last` flushes).
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
        g = gcd(rate_in, rate_out)
        self.up, self.down = rate_out // g, rate_in // g
        self._bank, self.half = _design(self.up, self.down)
        self._buf = np.zeros(self.half, dtype=np.float32)  # inputs from index _start on
        self._start = -self.half  # the stream starts with `half` zeros of history
        self._received = 0  # input samples so far
        self._emitted = 0  # output samples so far

    def resample_chunk(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample the next block (1-D float); `last` flushes the tail."""
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        self._buf = np.concatenate((self._buf, x))
        self._received += len(x)
        if last:
            end = (self._received * self.up + self.down // 2) // self.down  # round(n * L / M)
            self._buf = np.concatenate((self._buf, np.zeros(self.half + 1, dtype=np.float32)))
        else:  # output k is ready once input floor(k * M / L) + half has arrived
            end = ((self._received - self.half) * self.up - 1) // self.down + 1
        k = np.arange(self._emitted, max(end, self._emitted), dtype=np.int64)
        out = self._compute(k)
        self._emitted += len(k)
        self._trim()
        return out

    def _compute(self, k: np.ndarray) -> np.ndarray:
        if len(k) == 0:
            return np.zeros(0, dtype=np.float32)
        pos = k * self.down
        base, phase = pos // self.up, pos % self.up
        taps = 2 * self.half + 1
        windows = np.lib.stride_tricks.sliding_window_view(self._buf, taps)
        rows = windows[base - self.half - self._start]
        return np.einsum("ij,ij->i", rows, self._bank[phase]).astype(np.float32)

    def _trim(self) -> None:
        """Keep only the history the next output needs."""
        first = (self._emitted * self.down) // self.up - self.half
        drop = min(max(first - self._start, 0), len(self._buf))
        self._buf = self._buf[drop:]
        self._start += drop


def _design(up: int, down: int) -> tuple[np.ndarray, int]:
    """The polyphase bank: row p holds the taps for phase p, ordered oldest input first."""
    from scipy.signal import firwin, kaiser_beta

    nyquist = 0.5 * min(1.0, up / down)  # of the lower rate, in cycles per input sample
    width = (1.0 - PASSBAND) * nyquist
    # Kaiser's estimate of the length for this attenuation and transition width, per phase
    per_side = int(np.ceil((ATTENUATION_DB - 7.95) / (2.285 * 2 * np.pi * width) / 2)) + 1
    numtaps = 2 * per_side * up + 1
    h = firwin(numtaps, (PASSBAND + 1.0) / 2 * nyquist / up, window=("kaiser", kaiser_beta(ATTENUATION_DB)),
               fs=1.0) * up
    # h[p + i * up] weighs input base + per_side - i for output phase p
    padded = np.zeros((2 * per_side + 1) * up)
    padded[:numtaps] = h
    bank = padded.reshape(2 * per_side + 1, up).T[:, ::-1]
    return np.ascontiguousarray(bank, dtype=np.float32), per_side
