"""A preallocated single-producer/single-consumer ring of int16 audio frames.

The audio callback only copies into it; the worker takes everything available.
When the worker falls a whole ring behind, the oldest audio is overwritten and
counted in `overflowed_frames`: never silent, never blocking the callback. Each read
says how many frames were lost just before what it returns, so the reader knows
where the gap is (daemon.py starts a new stream there).
"""

from __future__ import annotations

import threading

import numpy as np


class RingBuffer:
    def __init__(self, capacity_frames: int, channels: int) -> None:
        self.capacity = capacity_frames
        self.channels = channels
        self._buffer = np.zeros((capacity_frames, channels), dtype=np.int16)
        self._written = 0  # frames ever written
        self._read = 0  # frames ever read (or overwritten)
        self.overflowed_frames = 0
        self._unreported = 0
        self.read_end = 0  # frame index just after the last block read (the reader's position)
        self._cond = threading.Condition()

    def write(self, block: np.ndarray) -> None:
        """Copy one (frames, channels) block in; called from the audio callback."""
        n = len(block)
        with self._cond:
            if n > self.capacity:  # only ever the newest `capacity` frames survive
                self._written += n - self.capacity  # counted as overflow just below
                block = block[-self.capacity :]
                n = self.capacity
            start = self._written % self.capacity
            first = min(n, self.capacity - start)
            self._buffer[start : start + first] = block[:first]
            self._buffer[: n - first] = block[first:]
            self._written += n
            behind = self._written - self._read - self.capacity
            if behind > 0:
                self._read += behind
                self.overflowed_frames += behind
                self._unreported += behind
            self._cond.notify()

    def read(self, timeout: float) -> tuple[np.ndarray, int]:
        """All unread frames (possibly none, after `timeout` seconds), oldest first, and
        the number of frames overwritten since the previous read: lost just before them."""
        with self._cond:
            if self._written == self._read:
                self._cond.wait(timeout)
            n = self._written - self._read
            start = self._read % self.capacity
            first = min(n, self.capacity - start)
            out = np.concatenate((self._buffer[start : start + first], self._buffer[: n - first]))
            self._read += n
            self.read_end = self._read
            lost, self._unreported = self._unreported, 0
            return out, lost

    def wake(self) -> None:
        """Wake a waiting reader (at shutdown)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def frames_written(self) -> int:
        return self._written
