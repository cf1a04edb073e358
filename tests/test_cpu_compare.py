"""benchmarks/cpu_compare.py runs end to end and prints every row; no timing is asserted.

The peers (pymicro-wakeword, pyopen-wakeword) are the real packages of the `bench` extra
(`pip install -e '.[bench]'`). Where one is not installed, its test is skipped and says so:
that run measured kws-stream only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import cpu_compare, cpu_live
from kws_stream.features import MICRONET, level_dbfs
from testsupport.audio import read_wav

REPO = Path(__file__).resolve().parents[1]
PEERS = ("pymicro-wakeword", "pyopen-wakeword")
KWS_ROWS = tuple(row for row in cpu_compare.ROWS if row not in PEERS)


@pytest.fixture(scope="module")
def harness(cli_env, tmp_path_factory) -> dict[str, Any]:
    """One short run of the whole harness: its stdout lines, stderr and JSON."""
    out = tmp_path_factory.mktemp("cpu_compare") / "result.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.cpu_compare", "--rounds", "2", "--speech-s", "4",
                        "--quiet-s", "2", "--json", str(out)],
                       cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return {"lines": r.stdout.splitlines(), "stdout": r.stdout, "stderr": r.stderr, "json": json.loads(out.read_text())}


def printed_row(harness: dict[str, Any], row: str) -> str:
    printed = [line for line in harness["lines"] if line.split()[:1] == [row]]
    assert printed, f"no row {row!r} in:\n{harness['stdout']}"
    return printed[0]


def assert_measured(harness: dict[str, Any], row: str) -> None:
    """A number per condition (CPU over speech is never zero), then its peak RSS from its own subprocess."""
    line = printed_row(harness, row)
    cells = dict(zip(cpu_compare.CONDITIONS, (float(c) for c in line.split()[1:5])))
    assert all(v >= 0 for v in cells.values()) and (row == "baseline" or cells["speech"] > 0), line
    assert " MB" in line, line
    assert all(len(harness["json"]["cpu"][row][c]["rounds"]) == 2 for c in cpu_compare.CONDITIONS), row


@pytest.mark.parametrize("row", KWS_ROWS)
def test_every_kws_stream_row_is_measured(harness, row):
    assert_measured(harness, row)


@pytest.mark.parametrize("row", PEERS)
def test_every_peer_row_is_measured(harness, row):
    if importlib.util.find_spec(row.replace("-", "_")) is None:
        pytest.skip(f"{row} is not installed (pip install -e '.[bench]'): this run measured kws-stream only")
    assert_measured(harness, row)


def test_a_row_that_cannot_load_is_printed_with_its_reason(harness):
    """The table of this very run, with one row as `load` reports a missing package."""
    result = dict(harness["json"], skipped={"pyopen-wakeword": "not installed (pyopen_wakeword): pip install ..."})
    result["cpu"] = {k: v for k, v in result["cpu"].items() if k != "pyopen-wakeword"}
    lines = cpu_compare.table(result).splitlines()
    assert "pyopen-wakeword           skipped: not installed (pyopen_wakeword): pip install ..." in lines


def test_ratios_and_the_mix_commands_are_reported(harness):
    lines, result = harness["lines"], harness["json"]
    assert any(line.startswith("every-hop / event-driven") for line in lines)
    assert any(line.startswith("event-driven / pymicro") for line in lines)
    assert result["conditions"] == list(cpu_compare.CONDITIONS)
    # the mix's command is reported by both command-mode rows, and the harness says so
    assert result["mix_commands"] == ["yes"]
    for row in ("kws-command-every-hop", "kws-command-event-driven"):
        assert result["cpu"][row]["mix"]["found"] == ["yes"]
        assert f"  {row}: yes  (= the commands)" in lines


def test_mix_holds_every_command_clip_and_speech():
    audio_dir = cpu_compare.shared_audio()
    mix, commands = cpu_compare.commands_in_conversation(90, audio_dir)
    assert commands >= len(cpu_compare.COMMAND_CLIPS)
    for name in cpu_compare.COMMAND_CLIPS:  # each clip is in the mix, sample for sample
        clip = read_wav(audio_dir / name)
        hits = np.flatnonzero(mix[: len(mix) - len(clip)] == clip[0])
        assert any(np.array_equal(mix[i : i + len(clip)], clip) for i in hits), name


def test_room_noise_is_about_minus_60_dbfs():
    noise = cpu_compare.room_noise(3 * MICRONET.sample_rate, np.random.default_rng(0))
    assert -61.0 < level_dbfs(noise) < -59.0


def test_capture_only_counts_callbacks_per_block_size(tmp_path):
    """The live harness's PortAudio/PulseAudio-only row really captures: a 100 ms block gives
    about 10 callbacks a second from the real virtual microphone, a 200 ms block about 5."""
    from testsupport.vmic import VirtualMic

    with VirtualMic(tmp_path / "vmic", rate=MICRONET.sample_rate, channels=1) as mic:
        rows = {b: cpu_live.capture_only(mic.env, b, 3.0) for b in (100, 200)}
    for block, row in rows.items():
        assert "error" not in row, row
        assert abs(row["callbacks_per_s"] - 1000 / block) < 0.35 * 1000 / block, rows
        assert row["wakeups_per_s"] >= row["callbacks_per_s"] * 0.5, rows


def test_thread_stats_sees_this_process_wake_up():
    before = cpu_live.thread_stats(os.getpid())
    ticks = threading.Event()
    for _ in range(20):
        ticks.wait(0.001)  # each timed wait is a voluntary context switch
    after = cpu_live.thread_stats(os.getpid())
    main = os.getpid()
    assert after[main]["switches"] - before[main]["switches"] >= 10
