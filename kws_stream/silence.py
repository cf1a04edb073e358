"""The silence gate: skip inference while the room is quiet (off by default).

MFCC frames keep flowing at every hop (they cost ~1 ms per second of audio); only
the model (~16 ms per second with MicroNet-L) is skipped, and only while *every* hop
of the current 1 s window is below the floor. The first loud hop is inside the
very next window the model sees, so the first word after silence is not cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import MICRONET, hop_level_db, level_dbfs
from .params import FLAG, Checked, number, setting

__all__ = ["SilenceGate", "SilenceParams", "level_dbfs"]


@dataclass(frozen=True)
class SilenceParams(Checked):
    section = "silence"
    enabled: bool = setting(False, FLAG)
    # hop RMS level (dBFS) below which a 20 ms hop counts as silent
    floor_dbfs: float = setting(-50.0, number(-90, -10, "a level in dBFS"))


class SilenceGate:
    """Quiet while none of the hops that completed the newest window's `frames` MFCC frames
    was loud (hop k completes frame k: its level is that of the frame's newest half)."""

    def __init__(self, params: SilenceParams, frames: int = MICRONET.frames) -> None:
        self.params = params
        self._frames = frames
        self._quiet_hops = frames  # hops since the last loud one; a new stream starts quiet
        self.skipped = 0  # inferences not run, for benchmarks and metrics

    def push(self, hop: np.ndarray) -> bool:
        """Feed one hop of int16 audio; True while the model should run."""
        return self.push_level(hop_level_db(hop))

    def push_level(self, level_db: float) -> bool:
        """`push` with the hop's level already measured (the command gate needs it too)."""
        self._quiet_hops = 0 if level_db >= self.params.floor_dbfs else self._quiet_hops + 1
        return self.active

    @property
    def active(self) -> bool:
        """A loud hop lies inside the newest window."""
        return self._quiet_hops < self._frames
