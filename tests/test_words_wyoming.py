"""`kws-stream serve wyoming` with an enrolled word: the real server and the `wyoming`
library's client; the word is a wake model of its own and is detected by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import AUDIO
from test_wyoming import Server, names, run, stream
from wyoming.info import Describe, Info

from testsupport.audio import read_wav, room_tone

WORDS = AUDIO / "custom-words"
HELD_OUT = WORDS / "computer_020.wav"  # not a take; the placeholder matcher scores it well


def test_an_enrolled_word_is_a_wake_model_and_is_detected_by_name(run_cli, cli_env, model_dir, tmp_path):
    data = tmp_path / "data"
    (data / "kws-stream").mkdir(parents=True)
    (data / "kws-stream" / "models").symlink_to(model_dir)
    env = {**cli_env, "XDG_DATA_HOME": str(data)}
    takes = [WORDS / f"computer_{i:03d}.wav" for i in range(5)]
    assert run_cli("enroll", "computer", *takes, env=env).returncode == 0
    server = Server(env, tmp_path / "server.log")
    try:
        async def describe() -> Info:
            async with server.client() as client:
                await client.write_event(Describe().event())
                event = await client.read_event()
                assert event is not None and Info.is_type(event.type)
                return Info.from_event(event)

        models = {m.name: m for m in run(describe()).wake[0].models}
        assert models["computer"].version == "enrolled" and models["computer"].installed
        assert models["yes"].version == "micronet-l"

        said = read_wav(HELD_OUT)
        audio = np.concatenate([room_tone(1.0), said, room_tone(1.0, offset=len(said)),
                                read_wav("keywords/yes.wav"), room_tone(1.0)])

        async def detect(wanted: list[str]) -> list[str]:
            async with server.client() as client:
                return names(await stream(client, audio, names=wanted))

        assert run(detect(["computer"])) == ["computer"]
        assert run(detect(["yes"])) == ["yes"]
        assert run(detect([])) == ["computer", "yes"]
    finally:
        server.stop_cleanly()
    assert "keywords=down,go,left,no,off,on,right,stop,up,yes,computer" in Path(server.log).read_text()
