"""Speed and memory of kws-stream, measured against a bare baseline in the same run.

    python -m benchmarks.speed [--quick] [--json OUT] [--markdown OUT] [--corpus DIR]

These machines are shared and noisy, so every CPU figure is also given as a ratio to
the *bare baseline*: the least work that produces the same decisions. A plain loop
that per 20 ms hop computes only the new MFCC frame (`MfccExtractor.frame`, the exact
front end) and per inference calls the interpreter once (ai-edge-litert directly,
one thread: quantise, set_tensor, invoke, get_tensor, dequantise, softmax), then
the same smoothing/threshold/refractory rule as `KeywordDecider`, inline; when the
defaults turn on command mode, each hop also goes through the real `CommandGate` (its
rule is too long to inline; `bare_plain` is the loop without it). No generators,
ring, threads, queues or sinks. Its decisions equal the real Pipeline's (tested).

Sections (each timed with process CPU time, never wall time, unless it says wall):

- bare: CPU us per second of audio at strides 1, 2, 4, 8 over a stream built from the
  shared keyword clips, negatives and noise (60 s; `--quick`: 12 s, the whole run about
  a minute); measured before
  and after the live phases, median of all repeats;
- pipeline: the real `Pipeline.feed` in-process on the same stream in capture blocks of the
  default size (`[audio] block_ms`, 100 ms), as the daemon feeds it;
- stages: capture callback copy (`CaptureSession.callback` -> `RingBuffer.write`), ring
  read, MFCC (`FeatureWindow.push` per hop), inference (`KeywordModel.probabilities`),
  decision (`KeywordDecider.update`), sinks (`StdoutSink.handle` to /dev/null, and the
  same through the `EventBus`); us per second of audio;
- daemon: the real `kws-stream run` fed in real time through the PulseAudio virtual
  microphone (testsupport/vmic.py); utime+stime of its PID from /proc between two samples
  taken after warm-up, per second of audio, and the ratio to the bare loop with the same
  decisions; also per thread (names from `py-spy dump` when installed), with command mode
  off, at strides 2/4/8, and with 20 and 50 ms capture blocks (the default is 100 ms); a
  diagnostic `bare_paced` runs the bare loop in real time (sleeping until each 20 / 50 /
  100 ms block is due) to separate the cost of waking up every block (cold caches, timer
  wake-ups) from the daemon's own overhead: the daemon is also compared with the bare
  loop paced at its own block size;
- idle: CPU % of one core and peak RSS (VmHWM) of that daemon over silence and speech,
  and what each import adds to a fresh interpreter's RSS;
- latency: keyword commands from the synthetic corpus (`--corpus`, built if missing; 40
  clips over 10 voices, each followed by 1.2 s of noise at the clip's own noise level),
  played through the virtual microphone to the default daemon (command mode) and to one
  with `[command] enabled = false` (plain); from the true end of the word (keywords.csv
  `word_end_s`, timed by when the feeder wrote the sample) to the moment its JSON line is
  read from the daemon's stdout; p50/p95/max, matched, late and missed per mode (a line more
  than 1.5 s after its word is late: no latency sample, but it counts in p95 as beyond the
  bound, so a p95 that reaches the late ones reads "> 1500", never as met);
- file throughput: `kws-stream detect` over one hour of audio (`--quick`: 1 min),
  wall and CPU, as a multiple of real time, for micronet-l and micronet-m;
- stride trade-off: the CPU per stride from bare, pipeline and daemon, the shared clips
  spotted exactly by the real Pipeline, and `benchmarks.accuracy.stride_accuracy` (plain
  decision stage from its cached replay: shared and synthetic clip accuracy, recall,
  false accepts per hour; `--quick`: the shared clips only). Command mode is evaluated
  separately in `benchmarks.command_mode`.

Modules: speed_common (plan, audio, models, CPU timing), speed_bare (the baseline and the
real Pipeline run alike), speed_inproc (bare, pipeline, stages, clips), speed_live (the
daemon: CPU, threads, idle, imports), speed_latency, speed_throughput; this one runs them
in order and writes the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)

from . import procstat
from .speed_common import (
    DEFAULT_BLOCK_MS,
    MODELS,
    PACED_BLOCKS_MS,
    STRIDES,
    TARGETS,
    Plan,
    build_stream,
    runtime_version,
)
from .speed_inproc import InProcess, accuracy_from_harness, clips_spotted
from .speed_latency import DEFAULT_CORPUS, LATE_BOUND_S, show_ms
from .speed_live import run_daemon_phases
from .speed_throughput import file_throughput

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- report


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "cpu_model": procstat.cpu_model(), "cpus": os.cpu_count(), "machine": platform.machine(),
        "kernel": platform.release(), "python": platform.python_version(), "numpy": np.__version__,
        "runtime": runtime_version(), "kws_stream": kws_stream.__version__, "git": git_revision(),
        "loadavg_start": os.getloadavg()[0],
        "threads_env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }


def run(plan: Plan, progress: Callable[[str], None], corpus: Path = DEFAULT_CORPUS) -> dict[str, Any]:
    result: dict[str, Any] = {"meta": machine(), "plan": dataclasses.asdict(plan), "targets": TARGETS}
    stream = build_stream(plan.stream_s, seed=0)
    progress(f"in-process: bare loop and Pipeline at strides {STRIDES} over {plan.stream_s:.0f} s of audio")
    inproc = InProcess(stream)
    inproc.measure_loops(plan.repeats)
    progress("in-process: stages")
    result["stages"] = inproc.stages()
    with tempfile.TemporaryDirectory(prefix="kws-speed-") as tmp:
        progress(f"daemon through the virtual microphone: strides {plan.daemon_strides}, blocks "
                 f"{DEFAULT_BLOCK_MS} (default) {' '.join(map(str, plan.block_variants))} ms; "
                 f"{plan.silence_s:.0f} s silence + {plan.speech_s:.0f} s speech + latency over "
                 f"{plan.latency_keywords} keyword commands, command mode and plain")
        daemon = run_daemon_phases(plan, stream, Path(tmp), corpus)
        progress("in-process: bare loop and Pipeline again (after the live phases)")
        inproc.measure_loops(plan.repeats)
        progress(f"in-process: bare loop paced in real time, {plan.paced_s:.0f} s each in "
                 f"{', '.join(map(str, PACED_BLOCKS_MS))} ms blocks")
        result["bare_paced"] = inproc.measure_paced(plan.paced_s)
        progress(f"file throughput: kws-stream detect over {plan.file_s:.0f} s of audio, {', '.join(MODELS)}")
        result["file_throughput"] = file_throughput(plan, Path(tmp))
    result.update(inproc.loops_report())
    result["stream_s"] = inproc.audio_s
    for cost in daemon["cost"].values():
        if "us_per_s" in cost:
            # the bare loop with the same decisions: command gate included when the daemon runs command mode
            same = result["bare" if cost["command_mode"] else "bare_plain"][str(cost["stride"])]["us_per_s"]
            cost["ratio_to_bare"] = cost["us_per_s"] / same
            cost["ratio_to_bare_plain"] = cost["us_per_s"] / result["bare_plain"][str(cost["stride"])]["us_per_s"]
            paced = result["bare_paced"].get(f"{cost['block_ms']}ms")
            if cost["stride"] == 1 and cost["command_mode"] and paced:
                cost["ratio_to_bare_paced"] = cost["us_per_s"] / paced["us_per_s"]  # paced at the same block size
    result["daemon"] = daemon["cost"]
    result["idle"] = {**daemon["idle"], "mic": daemon["mic"]}
    result["daemon_threads"] = daemon["threads"]
    result["import_memory"] = daemon["import_memory"]
    result["latency"] = daemon["latency"]
    progress("stride trade-off: shared clips through the real Pipeline, and the accuracy harness")
    harness = accuracy_from_harness(STRIDES, None if plan.quick else corpus)
    result["stride_tradeoff"] = [
        {"stride": s, "bare_us_per_s": result["bare"][str(s)]["us_per_s"],
         "pipeline_us_per_s": result["pipeline"][str(s)]["us_per_s"],
         "daemon_us_per_s": result["daemon"].get(str(s), {}).get("us_per_s"),
         "inferences_per_s": result["bare"][str(s)]["inferences"] / inproc.audio_s,
         "shared_clips": clips_spotted(inproc.model, inproc.model_name, s),
         "accuracy": (harness or {}).get(str(s)), "accuracy_error": (harness or {}).get("error")}
        for s in STRIDES]
    result["meta"]["loadavg_end"] = os.getloadavg()[0]
    result["verdict"] = verdict(result)
    result["command_mode_default"] = inproc.command_mode
    return result


def verdict(r: dict[str, Any]) -> dict[str, Any]:
    ratio = r["daemon"].get("1", {}).get("ratio_to_bare")
    lat = r.get("latency") or {}
    p95 = (lat.get("plain") or {}).get("p95_ms")
    p95_cmd = (lat.get("command") or {}).get("p95_ms")
    rss = max(v["vmhwm_mb"] for k, v in r["idle"].items() if k in ("silence", "speech"))
    return {"daemon_ratio": {"value": ratio, "target": TARGETS["daemon_ratio"],
                             "met": ratio is not None and ratio <= TARGETS["daemon_ratio"]},
            "latency_p95_ms": {"value": p95, "target": TARGETS["latency_p95_ms"], "mode": "plain",
                               "met": p95 is not None and p95 <= TARGETS["latency_p95_ms"]},
            "command_latency_p95_ms": {"value": p95_cmd, "target": TARGETS["command_latency_p95_ms"],
                                       "mode": "command",
                                       "met": p95_cmd is not None and p95_cmd <= TARGETS["command_latency_p95_ms"]},
            "rss_mb": {"value": rss, "target": TARGETS["rss_mb"], "met": rss <= TARGETS["rss_mb"]}}


def _f(x: Any, fmt: str = "{:.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def markdown(r: dict[str, Any]) -> str:
    m = r["meta"]
    v = r["verdict"]
    lines = [
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs ({m['machine']}, Linux {m['kernel']}); "
        f"Python {m['python']}, numpy {m['numpy']}, {m['runtime']}; kws-stream {m['kws_stream']} ({m['git']}); "
        f"{m['date']}; load average {m['loadavg_start']:.2f} -> {m['loadavg_end']:.2f}"
        + ("; **--quick (smoke test, not for quoting)**" if r["plan"]["quick"] else ""),
        "",
        f"CPU is process CPU time (utime+stime), in microseconds per second of audio, MicroNet-L; "
        f"ratios are to the bare loop measured in the same run over the same {r['stream_s']:.0f} s stream.",
        "",
        "| what | us CPU / s audio | x bare | note |",
        "|---|---:|---:|---|",
        f"| bare loop, stride 1 | {_f(r['bare']['1']['us_per_s'])} | 1.00 | "
        f"min {_f(r['bare']['1']['min_us_per_s'])}, {r['bare']['1']['runs']} runs"
        f"{', command gate included (default decisions)' if r['command_mode_default'] else ''} |",
        f"| bare loop, plain decisions (no command gate) | {_f(r['bare_plain']['1']['us_per_s'])} | "
        f"{_f(r['bare_plain']['1']['ratio_to_bare'], '{:.2f}')} | |",
        f"| Pipeline.feed in-process, stride 1 | {_f(r['pipeline']['1']['us_per_s'])} | "
        f"{_f(r['pipeline']['1']['ratio_to_bare'], '{:.2f}')} | same decisions as bare: "
        f"{r['pipeline']['1']['same_decisions_as_bare']} |",
    ]
    d1 = r["daemon"].get("1", {})
    lines.append(f"| **kws-stream run (daemon), stride 1, {d1.get('block_ms')} ms blocks (defaults)** | "
                 f"{_f(d1.get('us_per_s'))} | **{_f(d1.get('ratio_to_bare'), '{:.2f}')}** | target <= "
                 f"{TARGETS['daemon_ratio']}: {'met' if v['daemon_ratio']['met'] else 'NOT met'}; "
                 f"{_f(d1.get('seconds'), '{:.0f}')} s live; daemon / bare paced in "
                 f"{d1.get('block_ms')} ms blocks = {_f(d1.get('ratio_to_bare_paced'), '{:.2f}')} |")
    dp = r["daemon"].get("1-plain", {})
    if "us_per_s" in dp:
        lines.append(f"| kws-stream run, command mode off (plain) | {_f(dp['us_per_s'])} | "
                     f"{_f(dp['us_per_s'] / r['bare']['1']['us_per_s'], '{:.2f}')} | x bare plain: "
                     f"{_f(dp['ratio_to_bare'], '{:.2f}')}; {dp['seconds']:.0f} s live |")
    for paced in r["bare_paced"].values():
        lines.append(f"| diagnostic: bare loop paced in real time, {paced['block_ms']} ms blocks | "
                     f"{_f(paced['us_per_s'])} | {_f(paced['us_per_s'] / r['bare']['1']['us_per_s'], '{:.2f}')} | "
                     f"same loop, sleeping until each block is due ({paced['seconds']:.0f} s) |")
    for key, d in r["daemon"].items():
        if key.startswith("1@") and "us_per_s" in d:
            lines.append(f"| kws-stream run, stride 1, {d['block_ms']} ms capture blocks | {_f(d['us_per_s'])} | "
                         f"{_f(d['ratio_to_bare'], '{:.2f}')} | daemon / bare paced in {d['block_ms']} ms blocks = "
                         f"{_f(d.get('ratio_to_bare_paced'), '{:.2f}')}; {d['seconds']:.0f} s live |")
    for key, d in r["daemon"].items():
        if key not in ("1", "1-plain") and not key.startswith("1@") and "us_per_s" in d:
            s_ = str(d["stride"])
            lines.append(f"| kws-stream run, stride {s_}, {d['block_ms']} ms capture blocks | {_f(d['us_per_s'])} | "
                         f"{_f(d['ratio_to_bare'], '{:.2f}')} | bare at stride {s_}: {_f(r['bare'][s_]['us_per_s'])}; "
                         f"{d['seconds']:.0f} s live |")
    lines += ["", "Per stage (stride 1, each stage alone over the stream):", "",
              "| stage | us CPU / s audio | what |", "|---|---:|---|"]
    for key, st in r["stages"].items():
        lines.append(f"| {key} | {_f(st['us_per_s'], '{:.1f}')} | {st.get('what', '')} |")
    if r.get("daemon_threads"):
        lines += ["", "Daemon threads over the speech window (stride 1):", "",
                  "| thread | us CPU / s audio |", "|---|---:|"]
        for t in r["daemon_threads"]:
            if t["cpu_s"] > 0:
                lines.append(f"| {t['python_name'] or t['comm']} ({t['tid']}) | {t['us_per_s']:.0f} |")
    if r.get("import_memory", {}).get("steps"):
        lines += ["", "Resident memory a fresh interpreter gains per import (what the daemon loads):", "",
                  "| step | + MB | RSS MB |", "|---|---:|---:|"]
        for st in r["import_memory"]["steps"]:
            lines.append(f"| {st['step']} | {st['added_mb']:.1f} | {st['rss_mb']:.1f} |")
    lat = r["latency"] or {}
    idle = r["idle"]
    lines += [
        "", f"Live latency: {len(lat.get('words', []))} synthetic keyword commands (the corpus keyword set: "
        f"10 voices, each clip followed by {lat.get('tail_s')} s of noise at its own noise level), played through "
        "the virtual microphone; latency = JSON line read - true end of the word (keywords.csv `word_end_s`); "
        "negative = reported before the word was over.", "",
        "| mode | p50 / p95 / max (ms) | matched / played (late) | extra detections | target |",
        "|---|---:|---:|---:|---|"]
    for mode, key, label in (("plain", "latency_p95_ms", "plain (`[command] enabled = false`)"),
                             ("command", "command_latency_p95_ms", "command mode (default)")):
        m = lat.get(mode) or {}
        lines.append(f"| {label} | {show_ms(m, 'p50_ms')} / {show_ms(m, 'p95_ms')} / {show_ms(m, 'max_ms')} | "
                     f"{m.get('matched')} / {m.get('keywords_played')} ({m.get('late', 0)} later than "
                     f"{LATE_BOUND_S * 1000:.0f} ms) | {len(m.get('extra_detections', []))} | "
                     f"p95 <= {TARGETS[key]:.0f}: {'met' if v[key]['met'] else 'NOT met'} |")
    lines += [
        "", "| live, defaults | value | target |", "|---|---:|---|",
        f"| CPU, silence ({_f(idle['silence']['seconds'])} s) | {idle['silence']['cpu_percent']:.2f} % of a core | |",
        f"| CPU, speech ({_f(idle['speech']['seconds'])} s) | {idle['speech']['cpu_percent']:.2f} % of a core | |",
        f"| peak RSS (VmHWM) after silence / after speech | {idle['silence']['vmhwm_mb']:.1f} / "
        f"{idle['speech']['vmhwm_mb']:.1f} MB | <= {TARGETS['rss_mb']:.0f} MB: "
        f"{'met' if v['rss_mb']['met'] else 'NOT met'} |",
    ]
    ft = r["file_throughput"]
    lines += ["", f"File throughput, `kws-stream detect` over {ft['audio_s'] / 60:.0f} min of audio:", "",
              "| model | x real time (wall) | x real time (CPU) | us CPU / s audio | wall s | startup wall s | "
              "detections |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, f in ft["models"].items():
        lines.append(f"| {name} | {f['x_realtime_wall']:.0f} | {f['x_realtime_cpu']:.0f} | {f['cpu_us_per_s']:.0f} | "
                     f"{f['wall_s']:.1f} | {f['startup_wall_s']:.2f} | {f['detections']} |")
    lines += ["", "Stride trade-off (CPU in us per second of audio; shared clips = the 15 shared clips as recorded "
              "and padded with 0.5 s of room noise, spotted exactly by the real Pipeline with the defaults; the "
              "accuracy columns come from `benchmarks.accuracy` with the plain decision stage at the default "
              "smoothing/threshold/refractory: command mode is evaluated separately in `benchmarks.command_mode`):",
              "", "| stride | inferences / s | bare | Pipeline | daemon | shared clips exact | shared acc (plain) | "
              "synth acc (plain) | synth recall (plain) | FA/h (plain) |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in r["stride_tradeoff"]:
        sc = t["shared_clips"]
        acc = t["accuracy"] or {}
        pct = lambda x: "-" if x is None else f"{100 * x:.1f} %"  # noqa: E731
        lines.append(f"| {t['stride']} | {t['inferences_per_s']:.1f} | {_f(t['bare_us_per_s'])} | "
                     f"{_f(t['pipeline_us_per_s'])} | {_f(t['daemon_us_per_s'])} | {sc['exact']}/{sc['clips']} | "
                     f"{pct(acc.get('shared_accuracy'))} | {pct(acc.get('synthetic_accuracy'))} | "
                     f"{pct(acc.get('synthetic_recall'))} | {_f(acc.get('fa_per_hour'), '{:.1f}')} |")
    err = next((t["accuracy_error"] for t in r["stride_tradeoff"] if t.get("accuracy_error")), None)
    if err:
        lines.append(f"\n(accuracy harness: {err})")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run of every section (about a minute)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write all results as JSON")
    p.add_argument("--markdown", type=Path, metavar="OUT", help="write the tables as markdown")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                   help="synthetic corpus (benchmarks.corpus) for the latency commands and the accuracy columns; "
                        "built if missing (default: %(default)s)")
    args = p.parse_args(argv)
    plan = Plan.make(args.quick)
    t0 = time.monotonic()
    result = run(plan, lambda msg: print(f"[{time.monotonic() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True),
                 args.corpus.resolve())
    result["meta"]["benchmark_wall_s"] = time.monotonic() - t0
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
