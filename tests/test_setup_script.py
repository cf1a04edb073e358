"""setup.sh: --help does nothing, a bad option is refused, apt waits for the dpkg lock.

apt-get, dpkg-query and sudo are stubs on PATH here (mocks, because a test must neither
install packages nor hold the machine's real apt locks while other work runs); each stub
records its arguments. The real behaviour was checked by hand on apt 2.6 as root: with
/var/lib/dpkg/lock-frontend held, `apt-get -o DPkg::Lock::Timeout=N install` waits; with
/var/lib/apt/lists/lock held, `apt-get update` fails at once whatever the option says, so
setup.sh retries it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def stubbed(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of setup.sh in an empty directory, and an env whose PATH starts with stubs."""
    shutil.copy(REPO / "setup.sh", tmp_path / "setup.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    stubs = {
        # every package is missing
        "dpkg-query": 'echo "dpkg-query $*" >> "$LOG"; exit 1',
        # `update` finds the lists lock held the first time, then works
        "apt-get": ('echo "apt-get $*" >> "$LOG"\n'
                    'case " $* " in *" update "*)\n'
                    '  if [ ! -e "$LOG.updated" ]; then touch "$LOG.updated"\n'
                    '    echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1 (apt-get)" >&2; exit 100\n'
                    '  fi ;;\nesac\nexit 0'),
        "sudo": 'echo "sudo $*" >> "$LOG"; exec "$@"',
        "python-stub": 'echo "python $*" >> "$LOG"; exit 3',  # PYTHON: stops the script after apt
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", LOG=str(log), PYTHON=str(bin_dir / "python-stub"))
    return tmp_path, env


def calls(tmp: Path) -> list[str]:
    log = tmp / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_help_prints_usage_and_does_nothing(stubbed):
    tmp, env = stubbed
    result = subprocess.run(["bash", tmp / "setup.sh", "--help"], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("usage: ./setup.sh")
    assert "--dev" in result.stdout and result.stderr == ""
    assert calls(tmp) == [] and sorted(p.name for p in tmp.iterdir()) == ["bin", "setup.sh"]


def test_an_unknown_option_is_usage_and_exit_2(stubbed):
    tmp, env = stubbed
    result = subprocess.run(["bash", tmp / "setup.sh", "--deve"], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("setup.sh: unknown option: --deve\nusage: ./setup.sh")
    assert calls(tmp) == []


def test_apt_waits_for_the_lock(stubbed):
    tmp, env = stubbed
    result = subprocess.run(["bash", tmp / "setup.sh"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 3, result.stderr  # the python stub: everything before it ran
    apt = [c.split(" ", 1)[1] for c in calls(tmp) if c.startswith("apt-get ")]
    assert [a.split()[2] for a in apt] == ["update", "update", "install"]  # the held lock: update retried
    assert all(a.startswith("-o DPkg::Lock::Timeout=300 ") for a in apt)
    assert "another apt/dpkg holds the lock: waiting up to 300 s" in result.stderr
