"""The unit file: its settings read as INI, and checked offline with the real systemd-analyze
(no systemd as PID 1 here; without systemd-analyze only those two tests skip)."""

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import kws_executable

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "kws-stream.service"
INSTALLED_EXEC = "/opt/kws-stream/venv/bin/kws-stream"

# only the tests that run systemd-analyze need it; the unit's own settings are checked anyway
needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze missing: apt-get install systemd")


def unit_with_real_executable(tmp_path: Path) -> Path:
    """verify checks that ExecStart exists: point it at the kws-stream installed here."""
    exe = str(kws_executable())
    path = tmp_path / "kws-stream.service"
    path.write_text(UNIT.read_text().replace(INSTALLED_EXEC, exe))
    return path


@needs_systemd_analyze
def test_verify_prints_nothing(tmp_path):
    result = subprocess.run(["systemd-analyze", "verify", str(unit_with_real_executable(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@needs_systemd_analyze
def test_security_exposure_is_at_most_3(tmp_path):
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=30", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout).group(1))
    assert score <= 3.0


def test_unit_keeps_what_the_daemon_and_alsa_need():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    service = parser["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a bad config is not retried forever
    assert "WatchdogSec" in service and service["ExecStart"].startswith(f"/usr/bin/env --block-signal=HUP {INSTALLED_EXEC} run")
    assert service["DevicePolicy"] == "closed" and service["DeviceAllow"] == "char-alsa rw"
    assert "audio" in service["SupplementaryGroups"].split()
    assert "PrivateDevices" not in service  # would hide /dev/snd
    assert service["StateDirectory"] == "kws-stream"  # models and enrolled words live in $STATE_DIRECTORY
