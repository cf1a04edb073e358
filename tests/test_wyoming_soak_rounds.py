"""Issue 15, soak item 2: 2 of 201 Wyoming rounds (seed 0: rounds 31 and 174, both
`yes_no_go_stop.wav`) got `yes, go, stop` without the "no".

The same audio (benchmarks.soak's wyoming_rounds()/wyoming_round_audio(), in the soak's
100 ms chunks) through the real `kws-stream serve wyoming` gives exactly what a Pipeline
gives offline: the server is faithful. The "no" is lost in the model's scores: in this clip
(1 s clips joined, "no" right after "yes") MicroNet-L splits that word between `no` and `go`
(about 0.5 each for most windows), and at these sample offsets the smoothed `no` peaks at
0.68-0.70, under the 0.7 threshold, in plain mode too, so no candidate exists for command
mode to judge. At 4 of 32 offsets of the 20 ms hop grid it is missed (1 s of room tone plus
0-310 samples). The xfail test keeps the case until decision/command mode (not this
branch's files) finds it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_wyoming import Server, names, run, stream

from benchmarks.soak import CLIPS, Sounds, wyoming_round_audio, wyoming_rounds
from kws_stream.backend import KeywordModel
from kws_stream.models import load_manifest
from kws_stream.pipeline import Pipeline, PipelineParams

MISSED_ROUNDS = (31, 174)  # seed 0, --wyoming-max-pause 20 (the soak's defaults)
CHUNK_BYTES = 3200  # the soak client's 100 ms chunks


@pytest.fixture(scope="module")
def server(cli_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(cli_env, tmp_path_factory.mktemp("wyoming-soak") / "server.log")
    yield srv
    srv.stop_cleanly()


def round_audio(index: int) -> tuple[str, np.ndarray]:
    _, clip, pause = next(itertools.islice(wyoming_rounds(0, 20.0), index, None))
    return clip, wyoming_round_audio(Sounds(), clip, pause)


def served(server: Server, audio: np.ndarray) -> list[str]:
    async def go() -> list[str]:
        async with server.client() as client:
            return names(await stream(client, audio, chunk_bytes=CHUNK_BYTES))

    return run(go())


def offline(model_dir: Path, audio: np.ndarray) -> list[str]:
    spec = load_manifest().get("micronet-l")
    pipeline = Pipeline(KeywordModel(model_dir / spec.file, spec.labels), "micronet-l", "test", PipelineParams())
    found = [d for i in range(0, len(audio), CHUNK_BYTES // 2) for d in pipeline.feed(audio[i:i + CHUNK_BYTES // 2])]
    return [d.keyword for d in found + pipeline.finish()]


@pytest.mark.parametrize("index", MISSED_ROUNDS)
def test_the_server_answers_what_the_pipeline_finds_offline(server: Server, model_dir: Path, index: int) -> None:
    clip, audio = round_audio(index)
    assert clip == "yes_no_go_stop.wav"
    got = served(server, audio)
    assert got == offline(model_dir, audio)
    assert got[0] == "yes" and got[-2:] == ["go", "stop"]


@pytest.mark.xfail(strict=True, reason=(
    "decision/command mode (not this branch's files): the 'no' of yes_no_go_stop.wav scores "
    "0.68-0.70 smoothed at these hop offsets (split with 'go'), under the 0.7 threshold, so no "
    "candidate is made; plain mode misses it too"))
@pytest.mark.parametrize("index", MISSED_ROUNDS)
def test_the_soaks_missed_rounds_get_every_keyword(server: Server, index: int) -> None:
    clip, audio = round_audio(index)
    got = served(server, audio)
    assert got == list(CLIPS[clip])


# The 20-minute soak with seed 4 (benchmarks.soak --seed 4) lost the "no" of these quick rows
# twice over: first the second judge heard a span that depended on the schedule (fixed in the
# judge), then the late_window rule left the smoothing lag off the window that holds the whole
# word, so the window that fires "no" (right before "go") counted as late. Offline, through the
# Pipeline as `detect` and the daemon run it, with the judge where it can load.
QUICK_ROW_ROUNDS = (24, 40, 61, 88)  # seed 4, --wyoming-max-pause 20


@pytest.mark.parametrize("index", QUICK_ROW_ROUNDS)
def test_a_quick_rows_no_is_kept_in_command_mode(model_dir: Path, index: int) -> None:
    from kws_stream.judge import load_judge

    _, clip, pause = next(itertools.islice(wyoming_rounds(4, 20.0), index, None))
    audio = wyoming_round_audio(Sounds(), clip, pause)
    spec = load_manifest().get("micronet-l")
    pipeline = Pipeline(KeywordModel(model_dir / spec.file, spec.labels), "micronet-l", "test", PipelineParams(),
                        judge=load_judge())
    found = [d for i in range(0, len(audio), CHUNK_BYTES // 2) for d in pipeline.feed(audio[i:i + CHUNK_BYTES // 2])]
    assert clip == "yes_no_go_stop.wav"
    assert [d.keyword for d in found + pipeline.finish()] == list(CLIPS[clip])
