"""The real daemon fed through the virtual microphone: CPU, threads, idle, memory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)
from kws_stream.models import default_model_dir

from . import procstat
from .speed_common import DEFAULT_BLOCK_MS, RATE, Plan, kws_command, model_path
from .speed_latency import DEFAULT_CORPUS, LATENCY_TAIL_S, drain, latency_words, measure_latency


def _test_helpers() -> tuple[Any, Any]:
    """The virtual microphone and daemon runner the end-to-end tests use."""
    from testsupport.daemon_process import DaemonProcess
    from testsupport.vmic import VirtualMic

    return VirtualMic, DaemonProcess


def parse_variant(text: str, prog: str) -> tuple[str, dict[str, str]]:
    """`LABEL[:VAR=VALUE,...]`: a label and the environment `start_daemon` gives one daemon
    (`PYTHONPATH=DIR` runs another source tree)."""
    label, _, rest = text.partition(":")
    env = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"{prog}: variant {text!r}: {item!r} is not VAR=VALUE")
        env[key] = value
    return label, env


def start_daemon(mic: Any, stride: int, model: str = "micronet-l", extra: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> Any:
    """`kws-stream run` recording from `mic`; `env`: more environment for it (a variant to measure)."""
    _, DaemonProcess = _test_helpers()
    # PYTHONSAFEPATH: `python -m` puts the working directory first on sys.path, which would
    # shadow a `PYTHONPATH=` variant with the checkout the benchmark runs from
    env = {**mic.env, "PYTHONUNBUFFERED": "1", "PYTHONSAFEPATH": "1", **(env or {})}
    args = [*kws_command(), "run", "--model", model, "--model-dir", str(default_model_dir()),
            "--stride", str(stride), *extra]
    daemon = DaemonProcess(args, env)
    try:
        daemon.wait_log("event=ready", timeout=60)
    except BaseException:
        daemon.stop()
        raise
    return daemon


# What `kws-stream run` imports, in order. Not scipy: only the armv7 resampler imports it
# (kws_stream/resample.py), and charging its 22 MB here made the chain 11 MB bigger than the daemon.
# Not soxr either: it loads with the first resampler, which a 16 kHz microphone never needs.
IMPORT_STEPS = (
    ("numpy", "import numpy"),
    ("sounddevice (PortAudio)", "import sounddevice"),
    ("ai_edge_litert", "from ai_edge_litert.interpreter import Interpreter"),
    ("kws_stream cli+daemon", "import kws_stream.cli, kws_stream.daemon"),
    ("micronet-l loaded", "from kws_stream.backend import KeywordModel; m = KeywordModel(PATH, LABELS)"),
)


def import_memory(env: dict[str, str]) -> dict[str, Any]:
    """Resident memory a fresh interpreter gains per import, in the order the daemon needs them
    (a shared library is charged to the first import that loads it)."""
    path, labels = model_path("micronet-l")
    code = "\n".join([
        "import json, kws_stream",
        "def rss():",
        "    for line in open('/proc/self/status'):",
        "        if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024",
        f"PATH, LABELS = {str(path)!r}, {tuple(labels)!r}",
        "steps = [('python + kws_stream/__init__', rss())]",
        *[f"{c}\nsteps.append(({n!r}, rss()))" for n, c in IMPORT_STEPS],
        "import sys",
        "assert 'scipy' not in sys.modules, 'scipy got imported: IMPORT_STEPS no longer match the daemon'",
        "assert 'soxr' not in sys.modules, 'soxr got imported: IMPORT_STEPS no longer match the daemon'",
        "print(json.dumps(steps))",
    ])
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[-500:]}
    steps = json.loads(r.stdout.strip().splitlines()[-1])
    out, last = [], 0.0
    for name, rss in steps:
        out.append({"step": name, "added_mb": rss - last, "rss_mb": rss})
        last = rss
    return {"steps": out}


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by OS thread id, from `py-spy dump` when py-spy is installed."""
    exe = shutil.which("py-spy")
    if exe is None:
        return {}
    try:
        text = subprocess.run([exe, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    names = {}
    for line in text.splitlines():
        parts = line.split(None, 3)  # Thread 1961 (active): "worker"
        if len(parts) >= 3 and parts[0] == "Thread" and parts[1].isdigit():
            names[int(parts[1])] = parts[3].strip('"') if len(parts) == 4 else "(python, unnamed)"
    return names


def thread_breakdown(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                     seconds: float, names: dict[int, str]) -> list[dict[str, Any]]:
    rows = []
    for tid, (comm, cpu) in after.items():
        used = cpu - before.get(tid, (comm, 0.0))[1]
        rows.append({"tid": tid, "comm": comm, "python_name": names.get(tid),
                     "cpu_s": used, "us_per_s": 1e6 * used / seconds})
    return sorted(rows, key=lambda r: -r["cpu_s"])


def run_daemon_phases(plan: Plan, stream: np.ndarray, workdir: Path, corpus: Path = DEFAULT_CORPUS) -> dict[str, Any]:
    """Daemons through the virtual microphone, one after another.

    "1" (the defaults: stride 1, command mode, DEFAULT_BLOCK_MS blocks): idle over silence,
    cost over speech, live latency of keyword commands; "1-plain" (`[command] enabled = false`):
    cost over speech and the same latency; then the other strides and capture block sizes:
    cost over speech.
    """
    VirtualMic, _ = _test_helpers()
    out: dict[str, Any] = {"cost": {}, "idle": {}, "latency": {}, "threads": None}
    speech = np.resize(stream, int(plan.speech_s * RATE))
    words = latency_words(plan.latency_keywords, corpus, workdir, plan.quick)
    with VirtualMic(workdir / "vmic", rate=RATE, channels=1) as mic:
        # (key, stride, block_ms or 0 for the default, command mode on)
        runs = [("1", 1, 0, True), ("1-plain", 1, 0, False)]
        runs += [(str(s), s, 0, True) for s in plan.daemon_strides if s != 1]
        runs += [(f"1@{ms}ms", 1, ms, True) for ms in plan.block_variants if ms != DEFAULT_BLOCK_MS]
        for key, stride, block_ms, command in runs:
            conf_text = (f"[audio]\nblock_ms = {block_ms}\n" if block_ms else "") + \
                        ("" if command else "[command]\nenabled = false\n")
            extra: list[str] = []
            if conf_text:
                conf = workdir / f"daemon_{key}.toml"
                conf.write_text(conf_text)
                extra = ["--config", str(conf)]
            daemon = start_daemon(mic, stride, extra=extra)
            pid = daemon.proc.pid
            try:
                time.sleep(plan.warmup_s)
                if key == "1":
                    a = procstat.Sample.take(pid)
                    time.sleep(plan.silence_s)
                    b = procstat.Sample.take(pid)
                    mem = procstat.memory(pid)
                    silence = procstat.Interval(a, b)
                    out["idle"]["silence"] = {"seconds": silence.wall, "cpu_s": silence.cpu,
                                              "cpu_percent": silence.cpu_percent, "vmhwm_mb": mem.hwm_mb,
                                              "vmrss_mb": mem.rss_mb}
                seconds = plan.speech_s if key == "1" else plan.other_stride_s
                audio = speech[: int(seconds * RATE)]
                drain(daemon)
                threads_before = procstat.thread_cpu(pid)
                a = procstat.Sample.take(pid)
                done = mic.play(audio).wait(seconds + 30)
                if done is None:
                    raise RuntimeError("the virtual microphone did not play the speech stream")
                time.sleep(0.1)  # the last block through PulseAudio and the worker
                b = procstat.Sample.take(pid)
                threads_after = procstat.thread_cpu(pid)
                mem = procstat.memory(pid)
                spoken = procstat.Interval(a, b)
                detections = len(drain(daemon))
                out["cost"][key] = {"block_ms": block_ms or DEFAULT_BLOCK_MS, "stride": stride,
                                    "command_mode": command, "seconds": spoken.wall, "audio_s": len(audio) / RATE,
                                    "cpu_s": spoken.cpu, "us_per_s": 1e6 * spoken.cpu / spoken.wall,
                                    "cpu_percent": spoken.cpu_percent, "detections": detections}
                if key == "1":
                    out["idle"]["speech"] = {"seconds": spoken.wall, "cpu_s": spoken.cpu,
                                             "cpu_percent": spoken.cpu_percent, "vmhwm_mb": mem.hwm_mb,
                                             "vmrss_mb": mem.rss_mb}
                    out["threads"] = thread_breakdown(threads_before, threads_after, spoken.wall, thread_names(pid))
                if key in ("1", "1-plain"):
                    mode = "command" if command else "plain"
                    out["latency"][mode] = measure_latency(mic, daemon, words)
                    out["latency"][mode]["vmhwm_mb_after"] = procstat.memory(pid).hwm_mb
            finally:
                code = daemon.stop()
            overflow_lines = [line for line in daemon.stderr.splitlines() if "event=ring_overflow" in line
                              or "event=input_overflow" in line]
            out["cost"].setdefault(key, {})["exit_code"] = code
            out["cost"][key]["overflow_log_lines"] = len(overflow_lines)
        out["import_memory"] = import_memory(mic.env)
        out["mic"] = {"feeder_resyncs": mic.stats["resyncs"], "feeder_max_late_ms": 1000 * mic.max_late_s}
    out["latency"]["tail_s"] = LATENCY_TAIL_S
    out["latency"]["words"] = [f"{w.keyword}:{w.path.parent.name}/{w.path.name}" for w in words]
    return out
