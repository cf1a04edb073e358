"""Tests of the VirtualMic helper itself, through the real PulseAudio stack."""
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from testsupport.vmic import VirtualMic

YES_WAV = Path("/work/shared/audio/keywords/yes.wav")

# Runs in a subprocess so that PortAudio enumerates devices after PulseAudio
# started.  Records with a 20 ms callback; prints READY once audio flows; on a
# line from stdin records `tail` more seconds of frames, then writes the raw
# int16 recording to `out` and a JSON summary to stdout.
RECORDER = r"""
import json, select, sys, threading
import numpy as np
import sounddevice as sd
rate, ch, out, tail, limit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
blocks, state = [], {"frames": 0, "stop_at": None, "status": []}
first, done = threading.Event(), threading.Event()
def cb(indata, frames, t, status):
    blocks.append(indata.copy())
    state["frames"] += frames
    if status:
        state["status"].append(str(status))
    first.set()
    if state["stop_at"] is not None and state["frames"] >= state["stop_at"]:
        done.set()
with sd.InputStream(samplerate=rate, channels=ch, dtype="int16",
                    blocksize=rate // 50, callback=cb):
    if not first.wait(limit):
        print(json.dumps({"error": "no audio"}), flush=True); sys.exit(3)
    print("READY", flush=True)
    r, _, _ = select.select([sys.stdin], [], [], limit)
    if r:
        sys.stdin.readline()
    state["stop_at"] = state["frames"] + int(tail * rate)
    ok = done.wait(limit)
rec = np.concatenate(blocks) if blocks else np.zeros((0, ch), np.int16)
rec.tofile(out)
print(json.dumps({"ok": ok, "frames": len(rec), "status": state["status"],
                  "device": sd.query_devices(kind="input")["name"]}), flush=True)
"""


def _yes() -> np.ndarray:
    rate, data = wavfile.read(YES_WAV)
    assert rate == 16000 and data.dtype == np.int16
    return data


def _readline(proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if r:
            return proc.stdout.readline()
        if proc.poll() is not None:
            break
    return None


def record_while_playing(mic, tmp_path, signal, tail=0.5, timeout=20.0):
    """Start a sounddevice recorder subprocess, play `signal` once audio flows,
    and return (recording as (n, channels) int16, summary dict, handle)."""
    out = tmp_path / f"rec-{time.monotonic_ns()}.raw"
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORDER, str(mic.rate), str(mic.channels),
         str(out), str(tail), str(timeout)],
        env=mic.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        line = _readline(proc, timeout)
        if line != "READY\n":
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"recorder not ready: {line!r}\n{err[-3000:]}")
        handle = mic.play(signal)
        assert handle.wait(timeout) is not None, "clip was not written"
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["ok"], summary
    rec = np.fromfile(out, dtype=np.int16).reshape(-1, mic.channels)
    return rec, summary, handle


def find_exact(rec: np.ndarray, sig: np.ndarray) -> int:
    """Offset at which `sig` occurs bit-exactly in `rec` (frames), else -1."""
    a = int(np.argmax(np.abs(sig[:, 0].astype(np.int32))))
    for c in np.flatnonzero(rec[:, 0] == sig[a, 0]) - a:
        if 0 <= c <= len(rec) - len(sig) and np.array_equal(rec[c:c + len(sig)], sig):
            return int(c)
    return -1


def assert_contains_only(rec, sig):
    off = find_exact(rec, sig)
    assert off >= 0, (f"played signal not found bit-exactly in {len(rec)} frames "
                      f"({np.count_nonzero(rec)} nonzero samples)")
    rest = np.concatenate([rec[:off], rec[off + len(sig):]])
    assert not rest.any(), "recording has nonzero audio outside the played clip"
    return off


def test_mono_16k_bit_exact(tmp_path):
    sig = _yes()[:8000].reshape(-1, 1)
    with VirtualMic(tmp_path, rate=16000, channels=1) as mic:
        rec, summary, h = record_while_playing(mic, tmp_path, sig)
        assert summary["device"]  # PortAudio found a default input
        assert_contains_only(rec, sig)
        assert h.started_at <= h.written_at
        # played 0.5 s in real time (not bursted), with slack for a loaded box
        assert 0.4 < h.written_at - h.started_at < 2.0
        # 500 ms of clip = 25 blocks of 20 ms, nothing dropped
        assert mic.pending_frames() == 0
    assert mic.proc.poll() is not None


def test_stereo_48k_bit_exact(tmp_path):
    y = _yes()
    left = np.repeat(y[:8000], 3)           # 0.5 s at 48 kHz
    right = left[::-1].copy()               # distinct channel: checks interleaving
    sig = np.stack([left, right], axis=1)
    with VirtualMic(tmp_path, rate=48000, channels=2) as mic:
        rec, _, _ = record_while_playing(mic, tmp_path, sig)
        assert rec.shape[1] == 2
        assert_contains_only(rec, sig)


def test_silence_dropped_while_nobody_records(tmp_path):
    with VirtualMic(tmp_path) as mic:
        # no client: the pipe is not drained; the feeder caps it near 100 ms
        deadline = time.monotonic() + 10
        while mic.stats["dropped_blocks"] < 10:
            assert time.monotonic() < deadline, dict(mic.stats)
            time.sleep(0.05)
        limit = mic._max_queued_bytes + mic.block_frames * mic.frame_bytes
        assert mic.stats["last_queued_bytes"] <= limit


def test_unplug_replug(tmp_path):
    sig = _yes()[:8000].reshape(-1, 1)
    with VirtualMic(tmp_path) as mic:
        rec, _, _ = record_while_playing(mic, tmp_path, sig)
        assert_contains_only(rec, sig)

        mic.unplug()
        assert not os.path.exists(mic.fifo_path)
        seen = mic.stats["unplugged_ticks"]
        deadline = time.monotonic() + 10
        while mic.stats["unplugged_ticks"] < seen + 5:  # clock keeps running
            assert time.monotonic() < deadline
            time.sleep(0.02)
        mic.check()

        # a clip played while unplugged waits instead of being dropped, and
        # is held back after replug until a client reads the pipe
        early = np.ascontiguousarray(sig[::-1][:1600])
        waiting = mic.play(early)
        assert not waiting.done()

        opens = mic.stats["opens"]
        mic.replug()
        assert mic.stats["opens"] == opens + 1
        assert "vmic" in mic.pactl("get-default-source")
        assert not waiting.done()

        rec, _, _ = record_while_playing(mic, tmp_path, sig)
        assert waiting.done()
        # both clips arrive, in order, bit-exactly, nothing else
        first, off = find_exact(rec, early), find_exact(rec, sig)
        assert 0 <= first and first + len(early) <= off, (first, off)
        rest = np.concatenate([rec[:first], rec[first + len(early):off],
                               rec[off + len(sig):]])
        assert not rest.any()
        mic.check()
