"""File throughput: `kws-stream detect` over an hour of audio, as a multiple of real time."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)
from kws_stream.models import default_model_dir
from testsupport.audio import read_wav, write_wav

from .speed_common import MODELS, Plan, build_stream, kws_command


def run_detect(wav: Path, model: str) -> dict[str, Any]:
    """`kws-stream detect` on one file: wall time, CPU time (rusage of the child) and lines."""
    args = [*kws_command(), "detect", "--model", model, "--model-dir", str(default_model_dir()), str(wav)]
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"kws-stream detect failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024,
            "detections": len(stdout.splitlines())}


def file_throughput(plan: Plan, workdir: Path) -> dict[str, Any]:
    wav = workdir / "long.wav"
    write_wav(wav, build_stream(plan.file_s, seed=1))
    short = workdir / "one_second.wav"
    write_wav(short, read_wav("keywords/yes.wav"))
    out: dict[str, Any] = {"audio_s": plan.file_s, "models": {}}
    for model in MODELS:
        startup = run_detect(short, model)
        r = run_detect(wav, model)
        r.update(x_realtime_wall=plan.file_s / r["wall_s"], x_realtime_cpu=plan.file_s / r["cpu_s"],
                 cpu_us_per_s=1e6 * r["cpu_s"] / plan.file_s,
                 startup_wall_s=startup["wall_s"], startup_cpu_s=startup["cpu_s"])
        out["models"][model] = r
    wav.unlink()
    return out
