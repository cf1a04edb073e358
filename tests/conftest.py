"""Shared fixtures: the real models (installed from ../shared/models) and real clips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile

from testsupport.audio import AUDIO, SHARED
from testsupport.broker import Broker

SHARED_MODELS = SHARED / "models"
LABELS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "_silence_", "_unknown_")


def read_clip(name: str) -> tuple[int, np.ndarray]:
    """(rate, samples) exactly as the file holds them, by scipy: the independent reader the
    tests of kws_stream.sources compare against (testsupport.audio.read_wav is the package's)."""
    return scipy.io.wavfile.read(AUDIO / name)


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private XDG data/config home with both models installed from ../shared/models."""
    from kws_stream.models import install, load_manifest

    root = tmp_path_factory.mktemp("home")
    manifest = load_manifest()
    for name in ("micronet-l", "micronet-m"):
        install(manifest.get(name), root / "data" / "kws-stream" / "models", str(SHARED_MODELS), progress=False)
    (root / "config").mkdir()
    return root


@pytest.fixture(scope="session", autouse=True)
def private_xdg_dirs(home: Path) -> Iterator[None]:
    """Keep the host's ~/.config and ~/.local out of every test, in-process too."""
    saved = {k: os.environ.get(k) for k in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "STATE_DIRECTORY")}
    os.environ.update(XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"))
    os.environ.pop("STATE_DIRECTORY", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def model_dir(home: Path) -> Path:
    return home / "data" / "kws-stream" / "models"


@pytest.fixture(scope="session")
def cli_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"), PYTHONUNBUFFERED="1")
    env.pop("STATE_DIRECTORY", None)
    return env


@pytest.fixture
def env(tmp_path: Path, cli_env: dict[str, str], model_dir: Path) -> dict[str, str]:
    """The CLI's environment with a data home of this test's own (the words it enrols),
    holding the installed models."""
    data = tmp_path / "data"
    (data / "kws-stream").mkdir(parents=True)
    (data / "kws-stream" / "models").symlink_to(model_dir)
    return {**cli_env, "XDG_DATA_HOME": str(data)}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto of this test's own, started."""
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def kws_executable() -> Path:
    """The `kws-stream` script of the interpreter running the tests (never whatever PATH
    finds: another install elsewhere would be tested instead of this checkout)."""
    exe = Path(sys.executable).parent / "kws-stream"
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: install the project into this interpreter (./setup.sh --dev)")
    return exe


def kws_command() -> list[str]:
    return [str(kws_executable())]


@pytest.fixture(scope="session")
def run_cli(cli_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `kws-stream` command; returns the completed process."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*kws_command(), *map(str, args)], capture_output=True, text=True,
                              env=env or cli_env, timeout=timeout)

    return run


def detections(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]
