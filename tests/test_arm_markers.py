"""pyproject.toml's environment markers: what pip installs on each Raspberry Pi OS.

The installs themselves are proven under emulation by scripts/check-arm.sh (by hand, not CI);
this keeps the markers from drifting: a wrong one breaks the 32-bit install silently.
"""

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements(machine: str, python: str = "3.11") -> dict[str, str]:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    env = {"platform_machine": machine, "sys_platform": "linux", "python_version": python}
    chosen: dict[str, list[str]] = {}
    for req in map(Requirement, deps):
        if req.marker is None or req.marker.evaluate(env):
            chosen.setdefault(req.name, []).append(str(req.specifier))
    return {name: ",".join(sorted(s for s in specs if s)) for name, specs in chosen.items()}


@pytest.mark.parametrize("machine", ["armv7l", "armv8l"])  # armv8l: 32-bit userland under `linux32`
def test_32_bit_arm_gets_tflite_runtime_numpy_1_and_no_soxr(machine):
    deps = requirements(machine)
    assert "tflite-runtime" in deps and "ai-edge-litert" not in deps and "soxr" not in deps
    assert "<2" in deps["numpy"].split(",")
    assert deps["scipy"] == ">=1.10"  # Debian 12's python3-scipy is 1.10.1


def test_arm64_gets_the_litert_releases_verified_under_emulation():
    deps = requirements("aarch64")  # Debian 12: Python 3.11
    assert "<2.1" in deps["ai-edge-litert"].split(",")  # 2.1.6 wrong logits, 2.2.0/2.3.0 segfault
    assert requirements("aarch64", "3.13")["ai-edge-litert"] == ">=1.2"  # 2.0.x has no cp313 wheel
    assert "soxr" in deps and "tflite-runtime" not in deps and "<2" not in deps["numpy"].split(",")


def test_x86_64_keeps_every_litert_release():
    deps = requirements("x86_64")
    assert deps["ai-edge-litert"] == ">=1.2" and "soxr" in deps and "tflite-runtime" not in deps
