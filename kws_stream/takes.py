"""Takes of a word to enrol: read from WAV files or recorded at the microphone, and each
checked as the spotter will hear the word.

Besides the matcher's own check (`enrol.check_take`: silence, clipping, two words), a take
must hold exactly one command-shaped burst as the command gate finds them from the levels
(`CommandGate.bursts`, the `[command]` rules), because that is the only place a running
spotter ever judges an enrolled word: a take whose word is longer than `max_word`, or has
no pause before it, enrols a word that would never be reported.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from .command import CommandParams
from .features import FeatureWindow, MfccExtractor, level_dbfs
from .wordbursts import BurstCutter, cut_bursts

if TYPE_CHECKING:
    from .capture import CaptureSession

CONTEXT_S = 0.5  # audio kept before and after the burst of a recorded take
WAIT_S = 20.0  # a recorded take without a word for this long: the microphone is not hearing it
MAX_REFUSED = 5  # refused recorded takes before giving up
METER_DB = (-70.0, 0.0)  # the level meter's range


def read_take(path: str | Path, channel: int | None = None) -> np.ndarray:
    """A WAV file as 16 kHz mono int16, read as `detect` reads it (any rate, channels, format);
    an InputError (one line) when it cannot be."""
    from .sources import WavFileSource

    return np.concatenate(list(WavFileSource(Path(path), channel).blocks()))


def refusal(audio: np.ndarray, command: CommandParams = CommandParams()) -> str | None:
    """Why a take cannot be enrolled (the matcher's reason, else the burst check), or None."""
    from .enrol import check_take

    reason = check_take(audio)
    if reason is not None:
        return reason
    count = len(cut_bursts(audio, command))
    if count == 0:
        return (f"the spotter hears no word alone in it: say the word by itself, with a pause before and after, "
                f"at most {command.max_word:g} s long ([command] max_word)")
    if count > 1:
        return f"the spotter hears {count} separate words in it: say the word once"
    return None


class Recorder:
    """Takes from a live capture session: each the first command-shaped burst after the
    prompt, cut as a running spotter cuts it but with CONTEXT_S of audio around it (the
    checks judge the room's level from it). A level meter goes to `out` on a terminal."""

    def __init__(self, session: CaptureSession, command: CommandParams, out: TextIO = sys.stderr) -> None:
        self._session = session
        self._features = FeatureWindow(MfccExtractor())
        self._cutter = BurstCutter(command, self._features.params, margin_s=CONTEXT_S)
        self._out = out
        self._meter = out.isatty()

    def take(self, number: int) -> np.ndarray:
        """Audio of the next word said after now; an EnrolError after WAIT_S without one."""
        f = self._features
        prompted = f.samples_pushed  # a burst that ended before the prompt is not this take
        deadline = time.monotonic() + WAIT_S
        loudest = -math.inf
        while time.monotonic() < deadline:
            audio = self._read()
            if len(audio):
                loudest = max(loudest, level_dbfs(audio))
                self._show(audio)
            for hop in f.push(audio):
                for cut in self._cutter.hop(hop.level_db, hop.end_sample):
                    if cut.word_end > prompted:
                        self._clear_meter()
                        take = f.audio(cut.start, cut.end)
                        assert take is not None  # the history holds seconds more than a take
                        return take
        self._clear_meter()
        heard = f"loudest {loudest:.0f} dBFS" if math.isfinite(loudest) else "no audio arrived"
        from .enrol import EnrolError

        raise EnrolError(f"take {number}: no word heard in {WAIT_S:g} s ({heard}): check the microphone "
                         f"(`kws-stream devices`, --device)")

    def _read(self) -> np.ndarray:
        block, _ = self._session.ring.read(0.1)
        return self._session.converter.convert(block) if len(block) else np.zeros(0, np.int16)

    def _show(self, audio: np.ndarray) -> None:
        if not self._meter:
            return
        lo, hi = METER_DB
        level = level_dbfs(audio)
        filled = int(round(30 * min(1.0, max(0.0, (level - lo) / (hi - lo)))))
        self._out.write(f"\r  level [{'#' * filled}{' ' * (30 - filled)}] {level:6.1f} dBFS ")
        self._out.flush()

    def _clear_meter(self) -> None:
        if self._meter:
            self._out.write("\r" + " " * 60 + "\r")
            self._out.flush()


def record_takes(name: str, count: int, open_session: Callable[[], CaptureSession], command: CommandParams,
                 out: TextIO = sys.stderr) -> list[np.ndarray]:
    """`count` takes of `name` said at the microphone; a refused take is said again (up to
    MAX_REFUSED times in all)."""
    from .enrol import EnrolError

    session = open_session()
    try:
        recorder = Recorder(session, command, out)
        takes: list[np.ndarray] = []
        refused = 0
        while len(takes) < count:
            number = len(takes) + 1
            print(f"take {number} of {count}: say \"{name}\" now, then pause", file=out, flush=True)
            take = recorder.take(number)
            reason = refusal(take, command)
            if reason is None:
                takes.append(take)
                print(f"take {number}: ok (peak {_peak_dbfs(take):.0f} dBFS)", file=out, flush=True)
                continue
            refused += 1
            if refused > MAX_REFUSED:
                raise EnrolError(f"take {number}: {reason} ({refused} takes refused: giving up)")
            print(f"take {number}: refused, {reason}; say it again", file=out, flush=True)
        return takes
    finally:
        session.close()


def _peak_dbfs(audio: np.ndarray) -> float:
    peak = int(np.max(np.abs(audio.astype(np.int32)))) if len(audio) else 0
    return 20 * math.log10(max(peak, 1) / 32768)
