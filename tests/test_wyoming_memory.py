"""Issue 15, soak item 3: the Wyoming server's RSS grew 54.6 -> 66.0 MB over the 30-minute
soak and levelled off (the daemon stayed flat).

Not glibc arenas (MALLOC_ARENA_MAX=1 or 2 changed nothing: 66.1 and 65.8 MB after 60
connections) but dead Pipelines: each audio-start makes one, a Pipeline is a reference
cycle (its CommandGate's `on_reject` is a bound method of it), so it waits for a full
collection of the cyclic GC; tracemalloc counted up to 37 of them alive, their MFCC tables
on top (features.py:54, 80 KiB each). The server now collects once each stream ends.

The handler runs in-process here on a real TCP listener with the real model and the real
wyoming client, with automatic GC off, so what frees a stream is the server's own doing.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from test_wyoming import stream
from wyoming.client import AsyncTcpClient
from wyoming.server import AsyncServer

from benchmarks.soak import Sounds
from kws_stream.backend import KeywordModel
from kws_stream.features import MICRONET
from kws_stream.models import load_manifest
from kws_stream.pipeline import Pipeline, PipelineParams
from kws_stream.wyoming_server import WakeHandler, WakeService
from testsupport.net import free_port

STREAMS = 6


@pytest.fixture(scope="module")
def model(model_dir: Path) -> KeywordModel:
    spec = load_manifest().get("micronet-l")
    return KeywordModel(model_dir / spec.file, spec.labels)


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def live_pipelines() -> int:
    return sum(isinstance(o, Pipeline) for o in gc.get_objects())


def test_each_finished_stream_is_freed_at_once(model: KeywordModel, no_automatic_gc: None) -> None:
    sounds = Sounds()
    audio = np.concatenate([sounds.room(1.0), sounds.clips["yes.wav"], sounds.room(0.5)])

    async def go() -> list[int]:
        port = free_port()
        server = AsyncServer.from_uri(f"tcp://127.0.0.1:{port}")
        await server.start(partial(WakeHandler, service=WakeService(model, "micronet-l", PipelineParams())))
        alive = []
        try:
            for k in range(STREAMS):
                client = AsyncTcpClient("127.0.0.1", port)
                await client.connect()
                if k % 2:  # a stream that ends with audio-stop
                    await stream(client, audio)
                    await client.disconnect()
                else:  # a client that leaves mid-stream
                    await stream(client, audio)
                    await client.write_event(stream_start_event())
                    await client.disconnect()
                    await wait_for(lambda: live_pipelines() <= 1)
                alive.append(live_pipelines())
        finally:
            await server.stop()
        return alive

    alive = asyncio.run(asyncio.wait_for(go(), 120))
    assert max(alive) <= 1, alive  # before: 1, 2, 3... one more dead Pipeline per stream


def stream_start_event():  # noqa: ANN201
    from wyoming.audio import AudioStart

    return AudioStart(rate=MICRONET.sample_rate, width=2, channels=1).event()


async def wait_for(condition, timeout: float = 30.0) -> None:  # noqa: ANN001
    """The server notices a client gone on its own task: wait until `condition` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


def test_a_pipeline_is_freed_without_the_cyclic_gc(model: KeywordModel, no_automatic_gc: None) -> None:
    pipeline = Pipeline(model, "micronet-l", "test", PipelineParams())
    pipeline.feed(np.zeros(MICRONET.sample_rate, dtype=np.int16))
    ref = weakref.ref(pipeline)
    del pipeline
    assert ref() is None
