"""Starve one process of CPU for a while: a CPU cgroup with a quota (what
`systemd-run --scope -p CPUQuota=1%` makes), created, joined and removed here.

Needs root and a writable CPU controller: cgroup v1 (`/sys/fs/cgroup/cpu`) or v2
(`/sys/fs/cgroup` with `cpu` in `cgroup.subtree_control`). `available()` says why not.
"""

from __future__ import annotations

import os
from pathlib import Path

V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def _root() -> tuple[Path, int] | None:
    if (V1 / "cpu.cfs_quota_us").exists() and os.access(V1, os.W_OK):
        return V1, 1
    controllers = V2 / "cgroup.subtree_control"
    if controllers.exists() and "cpu" in controllers.read_text().split() and os.access(V2, os.W_OK):
        return V2, 2
    return None


def available() -> str | None:
    """None when a quota can be set here, else the reason it cannot."""
    return None if _root() is not None else "no writable CPU cgroup controller (needs root and cgroup cpu)"


class CpuQuota:
    """`with CpuQuota(pid, percent):` the process gets `percent` % of one core, then all again."""

    def __init__(self, pid: int, percent: float) -> None:
        root = _root()
        if root is None:
            raise RuntimeError(available())
        self.root, self.version = root
        self.pid, self.percent = pid, percent
        self.group = self.root / f"kws-test-starve-{os.getpid()}-{pid}"
        self._home: Path | None = None

    def __enter__(self) -> CpuQuota:
        self.group.mkdir()
        quota = max(1000, int(PERIOD_US * self.percent / 100))
        if self.version == 1:
            (self.group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (self.group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        self._home = self._current_group()
        (self.group / "cgroup.procs").write_text(str(self.pid))  # every thread of it
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._home is not None:
                (self._home / "cgroup.procs").write_text(str(self.pid))
        except ProcessLookupError:
            pass
        self.group.rmdir()

    def throttled_s(self) -> float:
        """Seconds the quota held the process back so far."""
        stat = dict(line.split() for line in (self.group / "cpu.stat").read_text().splitlines())
        if self.version == 1:
            return int(stat.get("throttled_time", 0)) / 1e9
        return int(stat.get("throttled_usec", 0)) / 1e6

    def _current_group(self) -> Path:
        for line in Path(f"/proc/{self.pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if (self.version == 1 and "cpu" in controllers.split(",")) or (self.version == 2 and controllers == ""):
                return self.root / path.lstrip("/")
        return self.root
