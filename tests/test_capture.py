"""capture.py through the real PortAudio/ALSA/PulseAudio stack (each case in a fresh
interpreter: PortAudio enumerates devices once, at import)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from testsupport.vmic import VirtualMic

# Prints the ALSA plugin modules (and libavcodec) mapped into this process after `how`.
PROBE = r"""
import json, sys
def plugins():
    names = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "libasound_module_pcm_" in path or "libavcodec" in path:
                names.add(path.rsplit("/", 1)[-1])
    return sorted(names)
how = sys.argv[1]
if how == "bare":
    import sounddevice
    print(json.dumps({"after": plugins()}))
else:
    from kws_stream import capture
    listed = [d["name"] for d in capture.list_input_devices()]
    after_listing = plugins()
    session = capture.open_capture("", 16000, 1, None, 100, reinitialise=how == "reopen")
    block, _ = session.ring.read(5.0)
    print(json.dumps({"listed": listed, "after": after_listing, "streaming": plugins(), "frames": len(block)}))
    session.close()
"""


def probe(how: str, env: dict[str, str]) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, how], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def mic(tmp_path_factory: pytest.TempPathFactory):
    with VirtualMic(tmp_path_factory.mktemp("vmic"), rate=16000, channels=1) as m:
        yield m


@pytest.mark.parametrize("how", ["open", "reopen"])
def test_only_the_plugin_of_the_open_stream_stays_loaded(mic: VirtualMic, how: str) -> None:
    bare = probe("bare", mic.env)["after"]
    if not any("libasound_module_pcm_a52" in name for name in bare):
        pytest.skip("this machine's ALSA configuration defines no a52 PCM (libasound2-plugins not installed)")
    # the premise: listing devices loads every plugin module, a52's libavcodec included
    assert any("libavcodec" in name for name in bare), bare
    result = probe(how, mic.env)
    assert result["listed"], "no input device listed"
    assert result["after"] == [], result  # released once the devices are listed
    assert result["frames"] > 0  # the stream still opens and delivers audio afterwards
    assert result["streaming"] == ["libasound_module_pcm_pulse.so"], result



@pytest.mark.parametrize("command", ["devices", "run"])
def test_a_missing_portaudio_is_one_line_naming_the_package(tmp_path: Path, cli_env: dict[str, str],
                                                            model_dir: Path, run_cli, command: str) -> None:
    # Uninstalling the system's libportaudio2 is not possible here: a stand-in `sounddevice`
    # raises what the real one raises when it cannot find the library.
    (tmp_path / "sounddevice.py").write_text('raise OSError("PortAudio library not found")\n')
    env = {**cli_env, "PYTHONPATH": str(tmp_path)}
    args = ["run", "--model-dir", str(model_dir)] if command == "run" else [command]
    r = run_cli(*args, env=env, timeout=60)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [
        "kws-stream: cannot load PortAudio (PortAudio library not found): install it "
        "(`sudo apt install libportaudio2`; ./setup.sh does)"]
