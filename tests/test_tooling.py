"""ruff and mypy, as a maintainer runs them: `.venv/bin/ruff check .` and `.venv/bin/mypy`
(config in pyproject.toml; `.ci/run` runs both over everything). Until the whole tree is
clean, this test holds the files already cleaned to it, so they stay clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

CLEAN = [
    "kws_stream/__init__.py", "kws_stream/cli.py", "kws_stream/detect.py", "kws_stream/explain.py",
    "kws_stream/models.py", "kws_stream/preflight.py", "kws_stream/backend.py",
    "benchmarks/speed.py", "benchmarks/speed_bare.py", "benchmarks/speed_common.py", "benchmarks/speed_inproc.py",
    "benchmarks/speed_latency.py", "benchmarks/speed_live.py", "benchmarks/speed_throughput.py",
    "benchmarks/soak.py", "benchmarks/silence_gate.py", "benchmarks/procstat.py", "testsupport",
    "tests/conftest.py", "tests/test_detect.py", "tests/test_tooling.py", "tests/test_packaging.py",
    "tests/test_speed_harness.py", "tests/test_soak_smoke.py", "tests/test_vmic.py", "tests/test_cli.py",
    "tests/test_cli_detect.py", "tests/test_models.py", "tests/test_backend.py",
    "benchmarks/rss_breakdown.py", "tests/test_rss_breakdown.py",
]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing_in_the_cleaned_files():
    result = run(str(BIN / "ruff"), "check", "--output-format", "concise", *CLEAN)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_the_cleaned_modules():
    modules = [f for f in CLEAN if f.startswith("kws_stream/")]
    # silent: errors in the modules these import are the lead's to clean, not this test's
    result = run(str(BIN / "mypy"), "--follow-imports=silent", *modules)
    assert result.returncode == 0, result.stdout + result.stderr
