"""Enrolled words live, through the real audio stack (PulseAudio pipe source -> PortAudio):
`run` picks words up on SIGHUP and forgets removed ones, reporting them on stdout and to a
real mosquitto broker, and `enroll --record` takes the word from the microphone."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import AUDIO, detections, kws_command

from kws_stream.wordstore import SUFFIX
from testsupport.audio import read_wav, room_tone
from testsupport.broker import Subscriber
from testsupport.daemon_process import DaemonProcess
from testsupport.vmic import VirtualMic

WORDS = AUDIO / "custom-words"
TAKES = [WORDS / f"computer_{i:03d}.wav" for i in range(5)]
HELD_OUT = WORDS / "computer_020.wav"


@pytest.fixture
def mic(tmp_path: Path) -> Iterator[VirtualMic]:
    with VirtualMic(tmp_path / "vmic", rate=16000, channels=1) as m:
        yield m


def at_mic(mic: VirtualMic, env: dict[str, str]) -> dict[str, str]:
    """The microphone's environment with this test's data and config homes."""
    return {**mic.env, **{k: env[k] for k in ("XDG_DATA_HOME", "XDG_CONFIG_HOME")}}


def spoken(path: Path, gain: float = 1.0) -> np.ndarray:
    """A recording as said in a quiet room: room tone before and after it."""
    audio = np.clip(read_wav(path).astype(np.float64) * gain, -32768, 32767).astype(np.int16)
    return np.concatenate([room_tone(1.0), audio, room_tone(1.0, offset=len(audio))])


def play(mic: VirtualMic, audio: np.ndarray) -> None:
    assert mic.play(audio).wait(len(audio) / 16000 + 10) is not None, "the virtual microphone did not play"


def test_run_picks_up_an_enrolled_word_on_sighup_and_forgets_a_removed_one(mic, env, run_cli, broker, tmp_path):
    config = tmp_path / "mqtt.toml"
    config.write_text(f'[mqtt]\nenabled = true\nport = {broker.port}\ntopic_prefix = "words-test"\n')
    subscriber = Subscriber(broker.port, ("words-test/#", "hermes/hotword/+/detected"))
    daemon = DaemonProcess([*kws_command(), "run", "--config", str(config)], at_mic(mic, env))
    try:
        assert "words=none" in daemon.wait_log("event=start", timeout=30)
        daemon.wait_log("event=ready", timeout=30)
        assert run_cli("enroll", "computer", *TAKES, env=env).returncode == 0
        words = Path(env["XDG_DATA_HOME"]) / "kws-stream" / "words"
        (words / f"jarvis{SUFFIX}").write_bytes(b"not a word")  # unreadable: named, and the rest load
        mark = daemon.log_mark()
        daemon.signal(signal.SIGHUP)
        assert "words=computer " in daemon.wait_log("event=reloaded", start=mark)
        assert "word=jarvis" in daemon.wait_log("event=word_unreadable", start=mark)

        play(mic, spoken(HELD_OUT))
        [(_, found)] = daemon.detections(1, timeout=10)
        assert found["keyword"] == "computer" and found["source"].startswith("mic:") and found["time"].endswith("Z")
        published = dict(subscriber.wait_for(2))
        assert published["words-test/detection"]["keyword"] == "computer"
        assert published["hermes/hotword/computer/detected"]["modelId"] == "computer"

        assert run_cli("words", "remove", "computer", env=env).returncode == 0
        mark = daemon.log_mark()
        daemon.signal(signal.SIGHUP)
        assert "words=none " in daemon.wait_log("event=reloaded", start=mark)
        play(mic, spoken(HELD_OUT))
        assert not [line for line in daemon.no_detection_within(2.0) if '"computer"' in line]
    finally:
        assert daemon.stop() == 0, daemon.stderr
        subscriber.close()
    assert "Traceback" not in daemon.stderr


def test_enroll_record_takes_the_word_from_the_microphone_and_refuses_a_clipped_take(mic, env, run_cli):
    proc = DaemonProcess([*kws_command(), "enroll", "computer", "--record", "--takes", "3"], at_mic(mic, env))
    try:
        proc.wait_log(r"take 1 of 3: say \"computer\"", timeout=30)
        mic.play(spoken(TAKES[0], gain=30.0))  # far too loud: clipped (not waited for: enroll stops
        #                                          listening once it has the word and the pause after it)
        assert "clipped" in proc.wait_log("take 1: refused", timeout=20)
        for k, take in enumerate([TAKES[1], TAKES[3], TAKES[4]], 1):  # computer_002 is all but clipped
            mark = proc.log_mark()
            mic.play(spoken(take))
            proc.wait_log(f"take {k}: ok", timeout=20, start=mark)
        assert proc.proc.wait(30) == 0, proc.stderr
        assert "enrolled computer from 3 takes" in proc.stdout.get(timeout=5)[1]
    finally:
        proc.stop()
    assert "Traceback" not in proc.stderr
    found = run_cli("detect", HELD_OUT, env=env)
    assert [d["keyword"] for d in detections(found.stdout)] == ["computer"], found.stderr
