"""Live `kws-stream run` through the virtual microphone: % of one core, peak RSS, wake-ups.

    python -m benchmarks.cpu_live [--seconds 60] [--blocks 100,20] [--latency-keywords 20]
        [--rounds 3 --variant base:PYTHONPATH=/old/checkout --variant new]

For each capture block size ([audio] block_ms): a daemon at the defaults hears `--seconds`
of continuous real speech (shared real-dev); measured from /proc over exactly that playback:
CPU as % of one core, VmHWM, and per thread CPU and wake-ups (voluntary + involuntary
context switches per second, /proc/PID/task/*/status). Then `--latency-keywords` synthetic
commands are played (benchmarks.speed_latency) for the p95 latency at that block size.

"floor" (`--floor-s`): the daemon at the defaults hearing digital silence: command mode is
event-driven, so the model never runs. It shows what capture, PulseAudio's client thread and the
worker's wake-ups cost without inference.
"capture only" (`--capture-s`): a bare sounddevice stream with a counting callback at each block
size, in the same PulseAudio session: PortAudio + the PulseAudio client with no kws-stream code.
`--rounds` repeats the speech measurement and reports the round with the median CPU (every
round's CPU beside it): one 60 s run varies by about +-0.1 point of a core on a shared VM.
`--variant`s (repeatable) are daemons with their own environment, run in turn within each
round, so that two source trees or settings are compared under the same load.
Last, resident memory per import in a fresh interpreter (speed_live.import_memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)

from . import procstat
from .cpu_compare import RATE, continuous_speech, shared_audio
from .speed_latency import DEFAULT_CORPUS, drain, latency_stats, latency_words, measure_latency, show_ms
from .speed_live import import_memory, parse_variant, start_daemon, thread_names

WARMUP_S = 3.0


def thread_stats(pid: int) -> dict[int, dict[str, Any]]:
    """Per thread: name, CPU seconds, context switches (voluntary + involuntary)."""
    out: dict[int, dict[str, Any]] = {}
    for tid, (comm, cpu) in procstat.thread_cpu(pid).items():
        switches = 0
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        except OSError:  # the thread ended meanwhile
            continue
        out[tid] = {"comm": comm, "cpu_s": cpu, "switches": switches}
    return out


def thread_rows(pid: int, before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]],
                seconds: float, names: dict[int, str]) -> list[dict[str, Any]]:
    rows = []
    for tid, a in after.items():
        b = before.get(tid, {"cpu_s": 0.0, "switches": 0})
        name = names.get(tid) or ("main" if tid == pid else f"native:{a['comm']}")
        rows.append({"tid": tid, "name": name, "cpu_percent": 100 * (a["cpu_s"] - b["cpu_s"]) / seconds,
                     "wakeups_per_s": (a["switches"] - b["switches"]) / seconds})
    return sorted(rows, key=lambda r: -r["cpu_percent"])


def measure(pid: int, play: Any, seconds: float) -> dict[str, Any]:
    """CPU, wake-ups and memory of the daemon while `play()` runs (it returns when audio is done)."""
    names = thread_names(pid)
    t0 = thread_stats(pid)
    a = procstat.Sample.take(pid)
    play()
    b = procstat.Sample.take(pid)
    t1 = thread_stats(pid)
    spent = procstat.Interval(a, b)
    rows = thread_rows(pid, t0, t1, spent.wall, names)
    mem = procstat.memory(pid)
    return {"seconds": spent.wall, "cpu_percent": spent.cpu_percent, "vmhwm_mb": mem.hwm_mb, "vmrss_mb": mem.rss_mb,
            "wakeups_per_s": sum(r["wakeups_per_s"] for r in rows), "threads": rows}


# A process that only captures (sounddevice, a callback that counts): what PortAudio and the
# PulseAudio client cost at a block size, with no kws-stream code at all.
CAPTURE_ONLY = r"""
import json, os, sys, time
import sounddevice as sd
block, seconds, rate = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
def switches():
    n = 0
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/status") as f:
            n += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
    return n
calls = [0]
def callback(indata, frames, t, status):
    calls[0] += 1
with sd.InputStream(samplerate=rate, channels=1, dtype="int16", blocksize=rate * block // 1000, callback=callback) as s:
    time.sleep(1.0)
    w0, c0, n0, t0 = switches(), time.process_time(), calls[0], time.monotonic()
    time.sleep(seconds)
    w1, c1, n1, t1 = switches(), time.process_time(), calls[0], time.monotonic()
print(json.dumps({"cpu_percent": 100 * (c1 - c0) / (t1 - t0), "wakeups_per_s": (w1 - w0) / (t1 - t0),
                  "callbacks_per_s": (n1 - n0) / (t1 - t0), "stream_latency_ms": 1000 * s.latency}))
"""


def capture_only(env: dict[str, str], block_ms: int, seconds: float) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-c", CAPTURE_ONLY, str(block_ms), str(seconds), str(RATE)], env=env,
                       capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]}
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def speech_round(mic: Any, extra: list[str], env: dict[str, str], speech: Any, words: list[Any]) -> dict[str, Any]:
    """One daemon (with `env`) hears the speech, measured; then the commands, for latency."""
    try:
        daemon = start_daemon(mic, 1, extra=extra, env=env)
    except Exception as exc:
        raise SystemExit(f"cpu_live: the daemon did not start with {extra} {env}: {exc!r}") from None
    try:
        time.sleep(WARMUP_S)
        drain(daemon)

        def play() -> None:
            if mic.play(speech).wait(len(speech) / RATE + 60) is None:
                raise RuntimeError("the virtual microphone did not play the speech")
            time.sleep(0.2)  # the last block through PulseAudio and the worker

        row = measure(daemon.proc.pid, play, len(speech) / RATE)
        row["detections"] = len(drain(daemon))
        if words:
            lat = measure_latency(mic, daemon, words)
            keep = ("keywords_played", "matched", "late", "late_bound_ms", "beyond_bound", "p50_ms", "p95_ms",
                    "max_ms", "samples_ms", "missed")
            row["latency"] = {k: lat[k] for k in keep}
        return row
    finally:
        daemon.stop()


def median_round(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median CPU, with every round's CPU and peak RSS beside it."""
    ordered = sorted(rows, key=lambda r: r["cpu_percent"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["cpu_rounds"] = [r["cpu_percent"] for r in rows]
    row["vmhwm_rounds"] = [r["vmhwm_mb"] for r in rows]
    if len(rows) > 1 and all("latency" in r for r in rows):  # latency over every round's commands
        lats = [r["latency"] for r in rows]
        row["latency"] = {"keywords_played": sum(lat["keywords_played"] for lat in lats),
                          **latency_stats([x for lat in lats for x in lat["samples_ms"]], sum(lat["late"] for lat in lats)),
                          "missed": [m for lat in lats for m in lat["missed"]]}
    return row


def write_conf(workdir: Path, key: str, text: str) -> list[str]:
    if not text:
        return []
    conf = workdir / f"live_{key}.toml"
    conf.write_text(text)
    return ["--config", str(conf)]


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from testsupport.vmic import VirtualMic

    speech = continuous_speech(args.seconds, shared_audio())
    words = latency_words(args.latency_keywords, args.corpus, workdir, quick=not (args.corpus / "keywords.csv").exists()) \
        if args.latency_keywords else []
    out: dict[str, Any] = {"speech_s": len(speech) / RATE, "blocks": {}}
    with VirtualMic(workdir / "vmic", rate=RATE, channels=1) as mic:
        for block_ms in args.blocks:
            extra = write_conf(workdir, f"b{block_ms}", f"[audio]\nblock_ms = {block_ms}\n")
            rounds: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in args.variants}
            for _ in range(args.rounds):
                for label, env in args.variants:  # interleaved: the machine's load hits all alike
                    rounds[label].append(speech_round(mic, extra, env, speech, words))
            for label, _ in args.variants:
                key = str(block_ms) if len(args.variants) == 1 else f"{block_ms} {label}"
                out["blocks"][key] = median_round(rounds[label])
            print(f"block {block_ms} ms done", file=sys.stderr)
        if args.floor_s > 0:
            daemon = start_daemon(mic, 1)
            try:
                time.sleep(WARMUP_S)
                out["floor"] = measure(daemon.proc.pid, lambda: time.sleep(args.floor_s), args.floor_s)
            finally:
                daemon.stop()
        if args.capture_s > 0:
            out["capture_only"] = {str(b): capture_only(mic.env, b, args.capture_s) for b in args.blocks}
        out["import_memory"] = import_memory(mic.env)
    return out


def report(result: dict[str, Any]) -> str:
    lines = [f"live kws-stream run, {result['speech_s']:.0f} s of real speech through the virtual microphone"]
    lines.append(f"{'block':>6} {'CPU %core':>9} {'peak RSS':>9} {'wakeups/s':>10} {'p50 ms':>7} {'p95 ms':>7}  latency")
    for block, r in result["blocks"].items():
        lat = r.get("latency", {})
        p50, p95 = show_ms(lat, "p50_ms"), show_ms(lat, "p95_ms")
        matched = (f"{lat['matched']}/{lat['keywords_played']} commands, {lat['late']} later than "
                   f"{lat['late_bound_ms']:.0f} ms, {len(lat['missed'])} missed") if lat else "not measured"
        rounds = r.get("cpu_rounds", [])
        spread = f"; CPU of each round {', '.join(f'{c:.2f}' for c in rounds)}" if len(rounds) > 1 else ""
        lines.append(f"{block + ' ms':>6} {r['cpu_percent']:>9.2f} {r['vmhwm_mb']:>6.1f} MB {r['wakeups_per_s']:>10.0f}"
                     f" {p50:>7} {p95:>7}  {matched}{spread}")
    groups = [(f"{b} ms, speech", r) for b, r in result["blocks"].items()]
    if "floor" in result:
        f = result["floor"]
        lines.append("floor (defaults: event-driven command mode, digital silence, no inference): "
                     f"{f['cpu_percent']:.2f} % of a core, "
                     f"{f['wakeups_per_s']:.0f} wake-ups/s, peak RSS {f['vmhwm_mb']:.1f} MB")
        groups.append(("floor", f))
    for label, r in groups:
        lines.append(f"threads ({label}): " + "; ".join(
            f"{t['name']} {t['cpu_percent']:.2f}% {t['wakeups_per_s']:.0f}/s" for t in r["threads"]
            if t["cpu_percent"] >= 0.005 or t["wakeups_per_s"] >= 1))
    for block, c in result.get("capture_only", {}).items():
        lines.append(f"capture only (sounddevice + a callback, no kws-stream), {block} ms blocks: " + (
            c["error"] if "error" in c else f"{c['cpu_percent']:.2f} % of a core, {c['wakeups_per_s']:.0f} wake-ups/s, "
            f"{c['callbacks_per_s']:.1f} callbacks/s, PortAudio stream latency {c['stream_latency_ms']:.0f} ms"))
    steps = result.get("import_memory", {}).get("steps", [])
    if steps:
        lines.append("RSS after import: " + "; ".join(f"{s['step']} +{s['added_mb']:.1f} MB" for s in steps)
                     + f" (total {steps[-1]['rss_mb']:.1f} MB)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cpu_live", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--blocks", default="100,20", help="capture block sizes in ms, comma separated")
    ap.add_argument("--latency-keywords", type=int, default=20, help="commands played per block size (0: none)")
    ap.add_argument("--floor-s", type=float, default=30.0, help="seconds of the no-inference floor (0: skip)")
    ap.add_argument("--capture-s", type=float, default=20.0, help="seconds of capture-only per block size (0: skip)")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--rounds", type=int, default=1, help="speech rounds per block size (the median is reported)")
    ap.add_argument("--variant", action="append", default=[],
                    help="LABEL[:VAR=VALUE,...]: a daemon with this environment, interleaved with the others")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    try:
        args.blocks = [int(b) for b in args.blocks.split(",")]
    except ValueError:
        print(f"cpu_live: --blocks must be integers in ms, comma separated, not {args.blocks!r}", file=sys.stderr)
        return 2
    args.variants = [parse_variant(v, "cpu_live") for v in args.variant] or [("defaults", {})]
    # py-spy (optional) names the Python threads; look beside this interpreter too
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="kws-cpu-live-") as tmp:
        result = run(args, Path(tmp))
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
