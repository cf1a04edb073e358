"""benchmarks/cpu_compare.py runs end to end and prints every row; no timing is asserted.

The wake-word libraries are the real packages of the `bench` extra; where one is not
installed its row must still be printed, as skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks import cpu_compare

REPO = Path(__file__).resolve().parents[1]


def test_harness_prints_every_row_and_ratio(cli_env, tmp_path):
    out = tmp_path / "result.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.cpu_compare", "--rounds", "2", "--speech-s", "4",
                        "--quiet-s", "2", "--json", str(out)],
                       cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for row in cpu_compare.ROWS:
        printed = [line for line in lines if line.split()[:1] == [row]]
        assert printed, f"no row {row!r} in:\n{r.stdout}"
        installed = row not in ("pymicro-wakeword", "pyopen-wakeword") or \
            importlib.util.find_spec(row.replace("-", "_")) is not None
        if installed:  # a number per condition, then its peak RSS from its own subprocess
            cells = printed[0].split()[1:5]
            assert all(float(c) >= 0 for c in cells), printed[0]
            assert " MB" in printed[0], printed[0]
        else:
            assert "skipped: not installed" in printed[0]
    assert any(line.startswith("today / event-driven") for line in lines)
    assert any(line.startswith("event-driven / pymicro") for line in lines)
    result = json.loads(out.read_text())
    assert result["conditions"] == list(cpu_compare.CONDITIONS)
    for row, cells in result["cpu"].items():
        assert all(len(cells[c]["rounds"]) == 2 for c in cpu_compare.CONDITIONS), row
    # the mix's command is reported by today's command mode, and the harness says so
    assert result["mix_commands"] == ["yes"]
    assert result["cpu"]["kws-command-every-hop"]["mix"]["found"] == ["yes"]
    assert "  kws-command-every-hop: yes  (= the commands)" in lines
    assert "event-driven row: today's every-hop path" in r.stderr or "eager_inference=False" in r.stderr


def test_mix_holds_every_command_clip_and_speech():
    audio_dir = cpu_compare.shared_audio()
    mix, commands = cpu_compare.commands_in_conversation(90, audio_dir)
    assert commands >= len(cpu_compare.COMMAND_CLIPS)
    for name in cpu_compare.COMMAND_CLIPS:  # each clip is in the mix, sample for sample
        clip = cpu_compare.read_wav(audio_dir / name)
        hits = np.flatnonzero(mix[: len(mix) - len(clip)] == clip[0])
        assert any(np.array_equal(mix[i : i + len(clip)], clip) for i in hits), name


def test_room_noise_is_about_minus_60_dbfs():
    noise = cpu_compare.room_noise(16000 * 3, cpu_compare.shared_audio(), np.random.default_rng(0))
    dbfs = 20 * np.log10(np.sqrt((noise.astype(np.float64) ** 2).mean()) / 32768)
    assert -61.0 < dbfs < -59.0


def test_capture_only_counts_callbacks_per_block_size(tmp_path):
    """The live harness's PortAudio/PulseAudio-only row really captures: a 100 ms block gives
    about 10 callbacks a second from the real virtual microphone, a 200 ms block about 5."""
    from benchmarks import cpu_live
    from testsupport.vmic import VirtualMic

    with VirtualMic(tmp_path / "vmic", rate=16000, channels=1) as mic:
        rows = {b: cpu_live.capture_only(mic.env, b, 3.0) for b in (100, 200)}
    for block, row in rows.items():
        assert "error" not in row, row
        assert abs(row["callbacks_per_s"] - 1000 / block) < 0.35 * 1000 / block, rows
        assert row["wakeups_per_s"] >= row["callbacks_per_s"] * 0.5, rows


def test_thread_stats_sees_this_process_wake_up():
    import os
    import threading

    from benchmarks import cpu_live

    before = cpu_live.thread_stats(os.getpid())
    ticks = threading.Event()
    for _ in range(20):
        ticks.wait(0.001)  # each timed wait is a voluntary context switch
    after = cpu_live.thread_stats(os.getpid())
    main = os.getpid()
    assert after[main]["switches"] - before[main]["switches"] >= 10
