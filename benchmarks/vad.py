"""Per-hop speech flags from a real voice activity detector (WebRTC's VAD).

The command gate judges bursts by their loudness above an adaptive noise floor. That
cannot tell speech from any other sound at the same level, nor hear a far talker's
sentence going on below its speech margin. WebRTC's VAD (a Gaussian mixture over six
sub-band energies, adapting its noise model as it goes) flags each 20 ms hop as voiced or
not, for ~0.2 ms of CPU per second of audio (``python -m benchmarks.vad_cost``): cheap
enough to run on every hop, unlike pymicro-vad (~11 ms/s) or Silero (~30 ms/s).

It is stateful: feed every hop of the stream, in order, to one `SpeechFlags`.
The package is ``webrtcvad-wheels`` (wheels for x86_64 and aarch64, no compiler needed);
it is imported only when a `SpeechFlags` is made.
"""

from __future__ import annotations

import numpy as np

from kws_stream.features import MICRONET

HOP_SAMPLES = MICRONET.hop_samples  # 20 ms at 16 kHz: one MFCC frame step, a frame size WebRTC's VAD accepts
SAMPLE_RATE = MICRONET.sample_rate
DEFAULT_AGGRESSIVENESS = 2  # 0 (flags most sounds as speech) .. 3 (flags least)


class SpeechFlags:
    """Is this 20 ms hop speech? One WebRTC VAD instance per stream."""

    def __init__(self, aggressiveness: int = DEFAULT_AGGRESSIVENESS) -> None:
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"VAD aggressiveness must be 0, 1, 2 or 3, not {aggressiveness}")
        try:
            import webrtcvad  # type: ignore[import-untyped]
        except ImportError as exc:  # an optional package: say which one
            raise ImportError("the voice activity detector needs webrtcvad: pip install webrtcvad-wheels") from exc
        self._vad = webrtcvad.Vad(aggressiveness)

    def __call__(self, hop: np.ndarray) -> bool:
        """`hop`: the newest 320 int16 samples at 16 kHz."""
        if hop.shape != (HOP_SAMPLES,) or hop.dtype != np.int16:
            raise ValueError(f"a hop is {HOP_SAMPLES} int16 samples, not {hop.shape} {hop.dtype}")
        return bool(self._vad.is_speech(hop.tobytes(), SAMPLE_RATE))

    def flags(self, x: np.ndarray) -> np.ndarray:
        """Flags of every whole hop of `x` in order (hop i = samples [320 i, 320 (i + 1)))."""
        n = len(x) // HOP_SAMPLES
        return np.array([self(x[i * HOP_SAMPLES:(i + 1) * HOP_SAMPLES]) for i in range(n)], dtype=bool)
