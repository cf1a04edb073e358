"""Process CPU time and memory from /proc (Linux), for the speed benchmark.

`cpu_seconds(pid)` is utime + stime of the whole process (every thread, live or
exited; not its children) from ``/proc/PID/stat``, in clock ticks (10 ms on most
kernels) converted to seconds. `memory(pid)` reads ``VmRSS`` and ``VmHWM`` (peak
RSS) from ``/proc/PID/status``. Both work on the calling process with ``pid=None``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _path(pid: int | None, name: str) -> str:
    return f"/proc/{'self' if pid is None else pid}/{name}"


def cpu_ticks(pid: int | None = None) -> tuple[int, int]:
    """(utime, stime) in clock ticks, summed over all threads of the process."""
    with open(_path(pid, "stat")) as f:
        text = f.read()
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]), int(fields[12])


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of the process, in seconds."""
    utime, stime = cpu_ticks(pid)
    return (utime + stime) / CLOCK_TICKS


def thread_count(pid: int | None = None) -> int:
    return len(os.listdir(_path(pid, "task")))


@dataclass(frozen=True)
class Memory:
    rss_kb: int  # VmRSS: resident now
    hwm_kb: int  # VmHWM: peak resident since the process started

    @property
    def rss_mb(self) -> float:
        return self.rss_kb / 1024

    @property
    def hwm_mb(self) -> float:
        return self.hwm_kb / 1024


def memory(pid: int | None = None) -> Memory:
    values: dict[str, int] = {}
    with open(_path(pid, "status")) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])  # "  12345 kB"
    return Memory(values["VmRSS"], values["VmHWM"])


@dataclass(frozen=True)
class Sample:
    """CPU time and wall clock of one process at one moment."""

    wall: float  # time.monotonic()
    cpu: float  # seconds

    @classmethod
    def take(cls, pid: int | None = None) -> Sample:
        return cls(time.monotonic(), cpu_seconds(pid))


@dataclass(frozen=True)
class Interval:
    start: Sample
    end: Sample

    @property
    def wall(self) -> float:
        return self.end.wall - self.start.wall

    @property
    def cpu(self) -> float:
        return self.end.cpu - self.start.cpu

    @property
    def cpu_percent(self) -> float:
        """CPU use as a percentage of one core."""
        return 100.0 * self.cpu / self.wall if self.wall > 0 else float("nan")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (x86 'model name', Arm 'Model'/'Hardware')."""
    names: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and value.strip() and key not in names:
                    names[key] = value.strip()
    except OSError:
        return "unknown"
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if key in names:
            return names[key]
    if "CPU part" in names:  # aarch64 without a model name: implementer/part codes
        return f"Arm implementer {names.get('CPU implementer', '?')} part {names['CPU part']}"
    return "unknown"


def thread_cpu(pid: int | None = None) -> dict[int, tuple[str, float]]:
    """Per thread of the process: {tid: (name from /proc comm, utime+stime seconds)}."""
    out: dict[int, tuple[str, float]] = {}
    task = _path(pid, "task")
    for tid in os.listdir(task):
        try:
            with open(f"{task}/{tid}/stat") as f:
                text = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return out
