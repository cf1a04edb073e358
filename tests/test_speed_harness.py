"""The speed benchmark (benchmarks/speed.py) stays honest; no test asserts a timing.

- the bare baseline makes exactly the decisions the real Pipeline makes (so it is a fair
  "least work for the same result"), with and without command mode, at several strides;
- the /proc readers measure what they claim (CPU time of a busy child, VmHWM);
- `python -m benchmarks.speed --quick` runs end to end and writes every JSON key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import procstat, speed_bare, speed_common, speed_inproc, speed_latency
from kws_stream.features import MICRONET
from testsupport.audio import read_wav

REPO = Path(__file__).resolve().parents[1]

RATE_S = MICRONET.sample_rate


@pytest.fixture(scope="module")
def inproc() -> speed_inproc.InProcess:
    """The models come from the session's private XDG home (conftest)."""
    return speed_inproc.InProcess(np.zeros(RATE_S * 2, dtype=np.int16))


def _joined(*names: str, gap_s: float = 0.5) -> np.ndarray:
    gap = np.zeros(int(gap_s * RATE_S), dtype=np.int16)
    parts = [gap]
    for name in names:
        parts += [read_wav(name), gap]
    return np.concatenate(parts)


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("command", [True, False], ids=["default", "plain"])
def test_bare_loop_makes_the_pipelines_decisions(inproc, stride, command):
    audio = _joined("keywords/right_left_up.wav", "keywords/yes.wav", "negatives/i_tell_you.wav",
                    "keywords/yes_no_go_stop.wav")
    params = speed_common.default_params(stride)
    if not command:
        params = speed_bare.plain(params)
    bare, inferences = speed_bare.bare_run(audio, inproc.bare_model, inproc.extractor, params)
    found, pipeline_inferences = speed_bare.pipeline_run(audio, inproc.model, inproc.model_name, params)
    assert [(k, e) for k, _, e in bare] == [(d.keyword, round(d.end * RATE_S)) for d in found]
    assert [round(s, 5) for _, s, _ in bare] == [round(d.score, 5) for d in found]
    # the bare loop runs the model at every `stride` hops, as the pipeline does in plain mode
    # and (for this comparison) with eager_inference in command mode
    every_hop = dataclasses.replace(params, eager_inference=True)
    assert inferences == speed_bare.pipeline_run(audio, inproc.model, inproc.model_name, every_hop)[1]
    assert pipeline_inferences <= inferences
    if stride == 1:
        assert [k for k, _, _ in bare][:3] == ["right", "left", "up"]  # the harness sees real keywords


def test_paced_bare_loop_is_the_same_loop_in_real_time(inproc):
    audio = read_wav("keywords/yes.wav")
    params = speed_common.default_params(1)
    t0 = time.monotonic()
    paced, _ = speed_bare.bare_run(audio, inproc.bare_model, inproc.extractor, params, paced_block=speed_common.BLOCK)
    assert time.monotonic() - t0 >= len(audio) / RATE_S - 0.15  # it really waits for the audio
    assert paced == speed_bare.bare_run(audio, inproc.bare_model, inproc.extractor, params)[0]
    assert [k for k, _, _ in paced] == ["yes"]


def test_cpu_reader_measures_a_busy_child_and_not_an_idle_one():
    # the busy child says when it has spent 0.6 s of CPU (on a loaded machine that may
    # take several seconds of wall time), then idles; nothing here depends on the clock
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                             "while time.process_time() - t < 0.6: pass\nprint(time.process_time(), flush=True)\n"
                             "time.sleep(300)"], stdout=subprocess.PIPE, text=True)
    idle = subprocess.Popen([sys.executable, "-c", "print(flush=True); import time; time.sleep(300)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        own = float(busy.stdout.readline())  # the child's own account of its CPU time
        idle.stdout.readline()
        assert own - 0.05 <= procstat.cpu_seconds(busy.pid) <= own + 0.3
        assert procstat.cpu_seconds(idle.pid) < 0.3  # interpreter startup only
        threads = procstat.thread_cpu(busy.pid)
        assert sum(cpu for _, cpu in threads.values()) == pytest.approx(procstat.cpu_seconds(busy.pid), abs=0.05)
    finally:
        for p in (busy, idle):
            p.kill()
            p.wait()


def test_cpu_reader_agrees_with_process_time_and_memory_reader_sees_a_peak():
    start_cpu, start_pt = procstat.cpu_seconds(), time.process_time()
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
    assert procstat.cpu_seconds() - start_cpu == pytest.approx(time.process_time() - start_pt, abs=0.03)
    before = procstat.memory()
    block = np.ones(40 * 1024 * 1024, dtype=np.uint8)  # 40 MB, touched
    peak = procstat.memory()
    del block
    assert peak.hwm_mb >= before.rss_mb + 35 and peak.hwm_kb >= peak.rss_kb
    after = procstat.memory()  # the peak outlives the memory (the kernel's counters are approximate)
    assert after.hwm_mb >= peak.rss_mb - 1 and after.rss_mb <= after.hwm_mb - 30
    assert procstat.cpu_model() and procstat.cpu_model() != "unknown"


def test_stream_builder_is_deterministic():
    a, b = speed_common.build_stream(5, seed=3), speed_common.build_stream(5, seed=3)
    assert a.dtype == np.int16 and len(a) == 5 * RATE_S and np.array_equal(a, b)
    assert not np.array_equal(a, speed_common.build_stream(5, seed=4))


QUICK_KEYS = {
    "meta": ["date", "cpu_model", "cpus", "python", "numpy", "runtime", "git", "loadavg_start", "loadavg_end"],
    "bare": ["1", "2", "4", "8"],
    "bare_plain": ["1", "2", "4", "8"],
    "pipeline": ["1", "2", "4", "8"],
    "bare_paced": ["20ms", "50ms", "100ms"],
    "stages": ["capture_copy", "mfcc", "inference", "decision", "sinks", "sum_of_stages"],
    "daemon": ["1", "1-plain"],
    "idle": ["silence", "speech"],
    "latency": ["command", "plain", "words", "tail_s"],
    "file_throughput": ["audio_s", "models"],
    "verdict": ["daemon_ratio", "latency_p95_ms", "command_latency_p95_ms", "rss_mb"],
    "import_memory": ["steps"],
}


@pytest.mark.slow
def test_quick_benchmark_runs_end_to_end_and_writes_every_key(tmp_path):
    out, md = tmp_path / "speed.json", tmp_path / "speed.md"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--quick", "--json", str(out), "--markdown", str(md)],
                       cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=900)  # a hang guard, not a speed check
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    for section, keys in QUICK_KEYS.items():
        assert set(keys) <= set(result[section]), (section, sorted(result[section]))
    for stride in ("1", "2", "4", "8"):
        assert result["bare"][stride]["us_per_s"] > 0
        assert result["pipeline"][stride]["same_decisions_as_bare"] is True
    daemon = result["daemon"]["1"]
    assert daemon["us_per_s"] > 0 and daemon["ratio_to_bare"] > 0 and daemon["exit_code"] == 0
    assert result["idle"]["speech"]["vmhwm_mb"] > 10
    for mode in ("command", "plain"):  # keyword commands went through the real microphone path
        lat = result["latency"][mode]
        assert {"p50_ms", "p95_ms", "max_ms", "keywords_played", "matched", "late", "missed", "samples_ms"} <= set(lat)
        assert lat["keywords_played"] == 4 and lat["matched"] >= 1
        assert lat["matched"] + lat["late"] + len(lat["missed"]) == 4  # every word played is accounted for
    assert daemon["block_ms"] == 100 and daemon["command_mode"] is True
    assert result["daemon"]["1-plain"]["command_mode"] is False
    assert set(result["file_throughput"]["models"]) == {"micronet-l", "micronet-m"}
    assert all(m["x_realtime_wall"] > 0 for m in result["file_throughput"]["models"].values())
    assert [t["stride"] for t in result["stride_tradeoff"]] == [1, 2, 4, 8]
    assert all("accuracy" in t and t["shared_clips"]["clips"] == 30 for t in result["stride_tradeoff"])
    assert result["stride_tradeoff"][0]["accuracy"]["shared_accuracy"] > 0  # from benchmarks.accuracy
    assert result["meta"]["cpu_model"] in md.read_text()
    assert "| bare loop, stride 1 |" in r.stdout  # the table is printed too


def test_late_detections_count_in_p95_as_beyond_the_bound_not_dropped():
    """19 words on time and 1 later than 1.5 s: p95 reaches the late one, so it is no number
    (and the verdict cannot read as met); with the late one dropped it would be 190 ms."""
    on_time = [float(ms) for ms in range(10, 200, 10)]
    assert len(on_time) == 19
    stats = speed_latency.latency_stats(on_time, late=1)
    assert stats["matched"] == 19 and stats["late"] == 1
    assert stats["p95_ms"] is None and "p95_ms" in stats["beyond_bound"] and "max_ms" in stats["beyond_bound"]
    assert speed_latency.show_ms(stats, "p95_ms") == "> 1500"
    assert stats["p50_ms"] == pytest.approx(float(np.percentile(on_time + [1e9], 50)))
    assert speed_latency.latency_stats(on_time, late=0)["p95_ms"] == pytest.approx(float(np.percentile(on_time, 95)))
    many = speed_latency.latency_stats(on_time * 3, late=1)  # 1 late in 58: p95 is a real sample again
    assert many["p95_ms"] == pytest.approx(float(np.percentile(on_time * 3 + [1e9], 95))) and many["beyond_bound"] == ["max_ms"]
