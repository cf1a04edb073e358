"""capture.py through the real PortAudio/ALSA/PulseAudio stack (each case in a fresh
interpreter: PortAudio enumerates devices once, at import)."""
import json
import subprocess
import sys

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
    block = session.ring.read(5.0)
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

