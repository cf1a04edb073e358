"""`KWS_STREAM_RECORD=PREFIX kws-stream run`: also write the audio the daemon captured, as
it came from the device (its rate and channels), to PREFIX-1.wav, PREFIX-2.wav, ... (one
file per capture session: a replugged device starts the next). `kws-stream detect` on such
a file reports what the daemon reported (times in the first file are the daemon's own),
which is how a detection missed live is reproduced offline. A debugging aid: the files
grow by ~115 MB per hour at 16 kHz mono, and nothing removes them.
"""

from __future__ import annotations

import logging
import os
import wave
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ENV = "KWS_STREAM_RECORD"


class Recorder:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0
        self._file: wave.Wave_write | None = None

    @classmethod
    def from_env(cls) -> Recorder | None:
        prefix = os.environ.get(ENV, "")
        return cls(prefix) if prefix else None

    def start(self, rate: int, channels: int) -> None:
        """A new capture session: a new file."""
        self.close()
        self.count += 1
        path = Path(f"{self.prefix}-{self.count}.wav")
        self._file = wave.open(str(path), "wb")
        self._file.setnchannels(channels)
        self._file.setsampwidth(2)
        self._file.setframerate(rate)
        log.info("event=recording path=%s", path)

    def write(self, block: np.ndarray) -> None:
        if self._file is not None:
            self._file.writeframes(np.ascontiguousarray(block, dtype="<i2").tobytes())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
