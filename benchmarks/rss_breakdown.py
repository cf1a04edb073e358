"""Where the live daemon's resident memory goes, from /proc/PID/smaps (issue 12: peak RSS <= 60 MB).

    python -m benchmarks.rss_breakdown [--seconds 60]             # start a daemon, play speech, break it down
    python -m benchmarks.rss_breakdown --pid PID                  # a running daemon (the systemd one, say)
    python -m benchmarks.rss_breakdown --rounds 3 \\
        --variant base --variant arena2:MALLOC_ARENA_MAX=2        # A/B: peak RSS per variant, interleaved

A daemon at the defaults (`kws-stream run`, this interpreter) hears `--seconds` of real speech
through the virtual microphone (testsupport.vmic, as benchmarks.cpu_live); then VmHWM (peak
RSS) is read and every mapping in /proc/PID/smaps is put in one row:

* file-backed pages, by the import that loaded them: a shared library is charged to the
  first "owner" (a Python extension, libportaudio, an ALSA plugin module...) whose
  dependency closure (`ldd`) contains it. "of which anon" is the library's own private
  pages (relocations, .data, .bss), the rest is its text and read-only data from the page
  cache (clean: shareable, and the kernel can drop them under pressure);
* anonymous memory: the main heap (brk), glibc's per-thread malloc arenas (an aligned 64 MB
  reservation each on 64-bit), thread stacks (found from each thread's stack pointer in
  /proc/PID/task/TID/syscall), and every other anonymous mapping (Python's obmalloc arenas,
  numpy buffers, the TFLite tensor arena, PortAudio / PulseAudio buffers).

A variant is `LABEL[:VAR=VALUE[,VAR=VALUE...]]`: environment given to that daemon only
(`PYTHONPATH=/some/checkout` runs another source tree). Rounds run the variants in turn.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)

from .speed_live import parse_variant

WARMUP_S = 3.0
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
# glibc: a non-main malloc arena is a heap of HEAP_MAX_SIZE (2 * DEFAULT_MMAP_THRESHOLD_MAX),
# aligned to its size: 64 MB on 64-bit, 1 MB on 32-bit (armhf).
ARENA_BYTES = 64 << 20 if struct.calcsize("P") == 8 else 1 << 20


@dataclass
class Mapping:
    start: int
    end: int
    perms: str
    name: str  # "" for anonymous
    kb: dict[str, int] = field(default_factory=dict)

    @property
    def rss(self) -> int:
        return self.kb.get("Rss", 0)

    @property
    def anon(self) -> int:
        return self.kb.get("Anonymous", 0)


_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")


def parse_smaps(text: str) -> list[Mapping]:
    maps: list[Mapping] = []
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            maps.append(Mapping(int(m[1], 16), int(m[2], 16), m[3], m[4].strip()))
            continue
        key, _, rest = line.partition(":")
        parts = rest.split()
        if maps and len(parts) == 2 and parts[1] == "kB":
            maps[-1].kb[key] = int(parts[0])
    return maps


def stack_pointers(pid: int) -> dict[int, int]:
    """Stack pointer of each thread blocked in a system call (/proc/PID/task/TID/syscall:
    "nr args... sp pc"; needs ptrace access, i.e. the same user)."""
    sps = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) >= 3 and fields[0] not in ("running", "-1"):
            sps[int(tid)] = int(fields[-2], 16)
    return sps


# ------------------------------------------------------------------- who loaded which file

def needed(path: str, memo: dict[str, set[str]]) -> set[str]:
    """The shared libraries `path` loads (its ldd closure), as real paths."""
    if path not in memo:
        out: set[str] = set()
        ldd = shutil.which("ldd")
        if ldd:
            try:
                text = subprocess.run([ldd, path], capture_output=True, text=True, timeout=30).stdout
            except (OSError, subprocess.SubprocessError):
                text = ""
            for line in text.splitlines():
                m = re.search(r"=> (/\S+)", line) or re.match(r"\s*(/\S+)", line)
                if m:
                    out.add(os.path.realpath(m[1]))
        memo[path] = out
    return memo[path]


def owner_of(path: str) -> tuple[int, str] | None:
    """(order, label) of a file that is itself a root of the breakdown, else None."""
    base = os.path.basename(path)
    if path.endswith(".tflite"):
        return 90, "the model file (mmap)"
    if "/lib-dynload/_hashlib" in path:
        return 5, "hashlib -> OpenSSL (_hashlib, libcrypto)"
    if "/lib-dynload/" in path or re.match(r"(libpython|python)\d", base):
        return 0, "python (interpreter, stdlib C modules)"
    if "/numpy" in path:  # numpy/ and numpy.libs/ (OpenBLAS, gfortran)
        return 10, "numpy (+ OpenBLAS, gfortran)"
    if "/soxr" in path:
        return 20, "soxr"
    if "_cffi_backend" in path:
        return 25, "cffi (sounddevice's FFI)"
    if base.startswith("libportaudio"):
        return 30, "PortAudio (+ libjack, libasound)"
    if "/alsa-lib/libasound_module_" in path:
        plugin = base.removeprefix("libasound_module_").split(".so")[0]
        return 40, f"ALSA plugin {plugin}"
    if base.startswith(("libpulse.so", "libpulse-simple")):
        return 38, "libpulse (+ pulsecommon: the ALSA pulse plugin's client)"
    if "ai_edge_litert" in path or "tflite_runtime" in path:
        return 60, "LiteRT (ai-edge-litert)"
    return None


def group_files(maps: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    """File-backed mappings by owner; a library several owners need goes to the first in order."""
    files: dict[str, list[Mapping]] = defaultdict(list)
    for m in maps:
        if m.name.startswith("/"):
            files[os.path.realpath(m.name)].append(m)
    roots = sorted(((o, p) for p in files if (o := owner_of(p)) is not None), key=lambda x: (x[0][0], x[1]))
    memo: dict[str, set[str]] = {}
    owner: dict[str, str] = {}
    for (_, label), path in roots:
        for f in [path, *sorted(needed(path, memo))]:
            if f in files and f not in owner:
                owner[f] = label
    groups: dict[str, list[Mapping]] = defaultdict(list)
    for f, ms in files.items():
        label = owner.get(f, "other files (locale, gconv...)")
        if label.startswith("python") and os.path.basename(f).startswith(("libc.so", "libm.so", "ld-linux")):
            label = "libc, libm, ld.so"
        groups[label].extend(ms)
    return groups


def classify_anon(maps: Sequence[Mapping], sps: Iterable[int]) -> dict[str, list[Mapping]]:
    out: dict[str, list[Mapping]] = defaultdict(list)
    sps = list(sps)
    for i, m in enumerate(maps):
        if m.name.startswith("/"):
            continue
        if m.name == "[heap]":
            out["anon: main heap (brk, main malloc arena)"].append(m)
        elif m.name == "[stack]":
            out["anon: main thread stack"].append(m)
        elif m.name:  # [vdso], [vvar], [anon:...]
            out[f"anon: {m.name}"].append(m)
        elif any(m.start <= sp < m.end for sp in sps):
            out["anon: thread stacks"].append(m)
        elif m.start % ARENA_BYTES == 0 and m.end - m.start <= ARENA_BYTES and (
                m.end - m.start == ARENA_BYTES or (i + 1 < len(maps) and maps[i + 1].start == m.end
                                                   and not maps[i + 1].name and maps[i + 1].perms.startswith("---")
                                                   and maps[i + 1].end - m.start == ARENA_BYTES)):
            out["anon: thread malloc arenas (glibc)"].append(m)
        else:
            out["anon: other mmap (obmalloc arenas, numpy, TFLite arena, audio buffers)"].append(m)
    return out


def breakdown(pid: int) -> dict[str, Any]:
    with open(f"/proc/{pid}/smaps") as f:
        maps = parse_smaps(f.read())
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
                status[key] = int(rest.split()[0])
    rows = []
    for label, ms in {**group_files(maps), **classify_anon(maps, stack_pointers(pid).values())}.items():
        rss = sum(m.rss for m in ms)
        libs = defaultdict(int)
        for m in ms:
            if m.name.startswith("/"):
                libs[os.path.basename(m.name)] += m.rss
        top = sorted(libs.items(), key=lambda kv: -kv[1])[:4]
        rows.append({"what": label, "rss_kb": rss, "anon_kb": sum(m.anon for m in ms), "mappings": len(ms),
                     "pss_kb": sum(m.kb.get("Pss", 0) for m in ms),
                     "top": [{"file": n, "rss_kb": kb} for n, kb in top if kb]})
    rows.sort(key=lambda r: -r["rss_kb"])
    return {"status_kb": status, "rows": rows, "smaps_rss_kb": sum(m.rss for m in maps)}


def table(b: dict[str, Any]) -> str:
    s = b["status_kb"]
    lines = [f"VmHWM (peak) {s['VmHWM'] / 1024:.1f} MB; now VmRSS {s['VmRSS'] / 1024:.1f} MB = "
             f"anon {s['RssAnon'] / 1024:.1f} + file {s['RssFile'] / 1024:.1f} + shmem {s['RssShmem'] / 1024:.1f};"
             f" {s['Threads']} threads",
             f"{'RSS MB':>7} {'anon MB':>7} {'PSS MB':>7}  what (largest files)"]
    for r in b["rows"]:
        if r["rss_kb"] < 100:
            continue
        top = ", ".join(f"{t['file']} {t['rss_kb'] / 1024:.1f}" for t in r["top"])
        lines.append(f"{r['rss_kb'] / 1024:>7.1f} {r['anon_kb'] / 1024:>7.1f} {r['pss_kb'] / 1024:>7.1f}  {r['what']}"
                     + (f" ({top})" if top else ""))
    small = [r for r in b["rows"] if r["rss_kb"] < 100]
    if small:
        lines.append(f"{sum(r['rss_kb'] for r in small) / 1024:>7.1f} {'':>7} {'':>7}  {len(small)} rows under 0.1 MB")
    return "\n".join(lines)


# ------------------------------------------------------------------- the live daemon

def one_daemon(mic: Any, speech: Any, env: dict[str, str]) -> dict[str, Any]:
    from .cpu_compare import RATE
    from .speed_latency import drain
    from .speed_live import start_daemon

    daemon = start_daemon(mic, 1, env=env)
    try:
        pid = daemon.proc.pid
        time.sleep(WARMUP_S)
        ready = breakdown(pid)["status_kb"]
        drain(daemon)
        if mic.play(speech).wait(len(speech) / RATE + 60) is None:
            raise RuntimeError("the virtual microphone did not play the speech")
        time.sleep(0.3)  # the last block through PulseAudio and the worker
        result = breakdown(pid)
        result["ready_status_kb"] = ready
        result["detections"] = len(drain(daemon))
    finally:
        daemon.stop()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rss_breakdown", description=__doc__.splitlines()[0])
    ap.add_argument("--pid", type=int, help="break down this running process instead of starting a daemon")
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of real speech played to the daemon")
    ap.add_argument("--variant", action="append", default=[],
                    help="LABEL[:VAR=VALUE,...]: environment for one daemon (repeat to compare)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds over all variants, interleaved")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.pid:
        result: dict[str, Any] = breakdown(args.pid)
        print(table(result))
    else:
        from testsupport.vmic import VirtualMic

        from .cpu_compare import RATE, continuous_speech, shared_audio

        variants = [parse_variant(v, "rss_breakdown") for v in args.variant] or [("defaults", {})]
        speech = continuous_speech(args.seconds, shared_audio())
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in variants}
        with tempfile.TemporaryDirectory(prefix="kws-rss-") as tmp, \
                VirtualMic(Path(tmp) / "vmic", rate=RATE, channels=1) as mic:
            for r in range(args.rounds):
                for label, env in variants:
                    runs[label].append(one_daemon(mic, speech, env))
                    s = runs[label][-1]["status_kb"]
                    print(f"round {r + 1} {label}: VmHWM {s['VmHWM'] / 1024:.1f} MB", file=sys.stderr)
        for label, env in variants:
            print(f"== {label} {env or ''}: {len(speech) / RATE:.0f} s of speech, last round:")
            print(table(runs[label][-1]))
        if len(variants) > 1 or args.rounds > 1:
            print(f"peak RSS (VmHWM) after {len(speech) / RATE:.0f} s of speech, median of {args.rounds} interleaved rounds:")
            base = statistics.median(x["status_kb"]["VmHWM"] for x in runs[variants[0][0]]) / 1024
            for label, _ in variants:
                hwm = [x["status_kb"]["VmHWM"] / 1024 for x in runs[label]]
                ready = [x["ready_status_kb"]["VmHWM"] / 1024 for x in runs[label]]
                med = statistics.median(hwm)
                print(f"  {label:<24} {med:6.1f} MB ({med - base:+5.1f})  rounds {', '.join(f'{h:.1f}' for h in hwm)};"
                      f" at ready {statistics.median(ready):.1f}; detections "
                      f"{', '.join(str(x['detections']) for x in runs[label])}")
        result = {"seconds": len(speech) / RATE, "variants": dict(variants), "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
