"""benchmarks/rss_breakdown.py: smaps parsed and every mapping put in exactly one row; the live
run prints the table. No memory size is asserted (it depends on the machine's libraries)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks import rss_breakdown as rb

REPO = Path(__file__).resolve().parents[1]
MB64 = 64 << 20


def _smaps(entries: list[tuple[int, int, str, str, int, int]]) -> str:
    """(start, end, perms, name, rss_kb, anon_kb) -> /proc/PID/smaps text."""
    lines = []
    for start, end, perms, name, rss, anon in entries:
        lines.append(f"{start:08x}-{end:08x} {perms} 00000000 00:00 0                          {name}".rstrip())
        lines += [f"Size:           {(end - start) // 1024:8d} kB", f"Rss:            {rss:8d} kB",
                  f"Pss:            {rss:8d} kB", f"Anonymous:      {anon:8d} kB", "VmFlags: rd wr mr mw me ac"]
    return "\n".join(lines) + "\n"


def test_smaps_parsed_and_anonymous_memory_classified():
    arena = 40 * MB64
    text = _smaps([
        (0x1000, 0x5000, "rw-p", "[heap]", 16, 16),
        (0x10000, 0x11000, "---p", "", 0, 0),  # a thread's guard page, then its stack
        (0x11000, 0x91000, "rw-p", "", 20, 20),
        (arena, arena + 0x200000, "rw-p", "", 132, 132),  # a glibc thread arena: 64 MB aligned
        (arena + 0x200000, arena + MB64, "---p", "", 0, 0),
        (arena + MB64 + 0x1000, arena + MB64 + 0x101000, "rw-p", "", 1024, 1024),  # obmalloc, say
        (0x7000000, 0x7001000, "r-xp", "/usr/lib/libfoo.so", 4, 0),
        (0x7ff00000, 0x7ff21000, "rw-p", "[stack]", 80, 80),
    ])
    maps = rb.parse_smaps(text)
    assert [m.name for m in maps][:2] == ["[heap]", ""] and maps[0].rss == 16 and maps[2].anon == 20
    rows = rb.classify_anon(maps, sps=[0x90ff0])
    got = {label: sum(m.rss for m in ms) for label, ms in rows.items()}
    assert got["anon: main heap (brk, main malloc arena)"] == 16
    assert got["anon: thread stacks"] == 20
    assert got["anon: thread malloc arenas (glibc)"] == 132
    assert got["anon: main thread stack"] == 80
    assert sum(v for k, v in got.items() if k.startswith("anon: other mmap")) == 1024
    assert all(not m.name.startswith("/") for ms in rows.values() for m in ms)


def test_this_process_broken_down_completely():
    import numpy  # noqa: F401  (so its row exists)

    b = rb.breakdown(os.getpid())
    assert sum(r["rss_kb"] for r in b["rows"]) == b["smaps_rss_kb"] > 0
    whats = [r["what"] for r in b["rows"]]
    assert len(whats) == len(set(whats))
    assert "numpy (+ OpenBLAS, gfortran)" in whats and "python (interpreter, stdlib C modules)" in whats
    assert rb.table(b).startswith("VmHWM (peak) ")


def test_variant_parsing():
    assert rb.parse_variant("base", "rss_breakdown") == ("base", {})
    assert rb.parse_variant("a:MALLOC_ARENA_MAX=2,PYTHONPATH=/x", "rss_breakdown") == ("a", {"MALLOC_ARENA_MAX": "2", "PYTHONPATH": "/x"})


def test_live_daemon_breakdown_prints_the_table(cli_env, tmp_path):
    out = tmp_path / "rss.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.rss_breakdown", "--seconds", "2", "--json", str(out)],
                       cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "VmHWM (peak)" in r.stdout and "LiteRT" in r.stdout and "anon: main heap" in r.stdout
    run = json.loads(out.read_text())["runs"]["defaults"][0]
    assert run["status_kb"]["VmHWM"] >= run["ready_status_kb"]["VmHWM"] > 0
