"""The wheel users install carries the manifest (it lives in models/ in the repo)."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_the_manifest_and_no_model_binaries(tmp_path):
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    wheel = next(tmp_path.glob("kws_stream-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "kws_stream/manifest.toml" in names
    assert not any(n.endswith(".tflite") for n in names)
    manifest = zipfile.ZipFile(wheel).read("kws_stream/manifest.toml").decode()
    assert manifest == (REPO / "models" / "manifest.toml").read_text()
    assert not any(n.startswith(("testsupport/", "benchmarks/", "tests/")) for n in names)


def test_the_version_is_written_once_and_the_installed_metadata_agrees():
    """pyproject's version is dynamic, read from kws_stream/__init__.py."""
    import importlib.metadata
    import tomllib

    from kws_stream import __version__

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("kws-stream") == __version__
