"""`kws-stream serve wyoming` end to end: the real command on 127.0.0.1, the `wyoming`
library's own client, the shared clips."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soxr
from conftest import kws_command, read_clip
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.wake import Detect, Detection, NotDetected

from kws_stream.features import MICRONET
from testsupport.net import free_port

KEYWORDS = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes"]
TIMEOUT = 60.0  # generous: a loaded machine may take many seconds for what takes one idle
RATE = MICRONET.sample_rate  # the model's rate: the clips', and a stream the server need not convert


class Server:
    def __init__(self, env: dict[str, str], log: Path, *args: str, preexec_fn: Callable[[], None] | None = None
                 ) -> None:
        self.port = free_port()
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen([*kws_command(), "serve", "wyoming", "--uri", f"tcp://127.0.0.1:{self.port}",
                                      *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log_file,
                                     env=env, preexec_fn=preexec_fn)
        deadline = time.monotonic() + 30
        while "event=listening" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"the Wyoming server did not start (exit {self.proc.poll()}):\n{self.text()}")
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text()

    def client(self) -> AsyncTcpClient:
        return AsyncTcpClient("127.0.0.1", self.port, connect_timeout=TIMEOUT, read_timeout=TIMEOUT)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log_file.close()

    def stop_cleanly(self) -> None:
        """Stop it (SIGTERM): it exits 0 with no traceback in its log."""
        assert self.stop() == 0, self.text()
        assert "Traceback" not in self.text()


@pytest.fixture(scope="module")
def server(cli_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(cli_env, tmp_path_factory.mktemp("wyoming") / "server.log")
    yield srv
    srv.stop_cleanly()


def pcm(samples: np.ndarray, width: int) -> bytes:
    """int16 samples (frames[, channels]) -> little-endian PCM of the given width."""
    s = samples.astype(np.int32)
    if width == 1:
        return ((s >> 8) + 128).astype(np.uint8).tobytes()
    if width == 2:
        return s.astype("<i2").tobytes()
    if width == 3:
        return (s << 8).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()  # 24-bit = int16 << 8
    return (s << 16).astype("<i4").tobytes()


def clip(name: str, rate: int = RATE, channels: int = 1) -> np.ndarray:
    clip_rate, samples = read_clip(name)
    assert clip_rate == RATE and samples.dtype == np.int16
    if rate != clip_rate:
        x = soxr.resample(samples.astype(np.float32) / 32768.0, clip_rate, rate)
        samples = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    return np.stack([samples] * channels, axis=1) if channels > 1 else samples


async def until_pong(client: AsyncTcpClient) -> list[Event]:
    """Ping and collect everything the server sent before the pong (it answers in order)."""
    await client.write_event(Ping(text="end").event())
    events = []
    while True:
        event = await client.read_event()
        assert event is not None, "the server closed the connection"
        if Pong.is_type(event.type):
            return events
        events.append(event)


async def stream(client: AsyncTcpClient, samples: np.ndarray, rate: int = RATE, width: int = 2,
                 chunk_bytes: int = 3200, names: list[str] | None = None, pause: bool = False) -> list[Event]:
    """detect, audio-start, chunks, audio-stop; returns the events answered."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    if names is not None:
        await client.write_event(Detect(names=names).event())
    await client.write_event(AudioStart(rate=rate, width=width, channels=channels, timestamp=0).event())
    data = pcm(samples, width)
    for i in range(0, len(data), chunk_bytes):
        await client.write_event(AudioChunk(rate=rate, width=width, channels=channels,
                                            audio=data[i : i + chunk_bytes]).event())
        if pause:
            await asyncio.sleep(0.001)  # let the other client's chunks interleave
    await client.write_event(AudioStop().event())
    return await until_pong(client)


def summary(events: list[Event]) -> list[tuple[str, int | None] | str]:
    out: list[tuple[str, int | None] | str] = []
    for event in events:
        if Detection.is_type(event.type):
            d = Detection.from_event(event)
            assert d.name is not None
            out.append((d.name, d.timestamp))
        else:
            assert NotDetected.is_type(event.type), event
            out.append("not-detected")
    return out


def names(events: list[Event]) -> list[str]:
    return [x if isinstance(x, str) else x[0] for x in summary(events)]


def run(coro, timeout: float = 60):  # noqa: ANN001, ANN201
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_describe_answers_info_with_one_wake_model_per_keyword(server: Server) -> None:
    async def go() -> Info:
        async with server.client() as client:
            await client.write_event(Describe().event())
            event = await client.read_event()
            assert event is not None and Info.is_type(event.type)
            return Info.from_event(event)

    info = run(go())
    assert [p.name for p in info.wake] == ["kws-stream"]
    models = info.wake[0].models
    assert [m.name for m in models] == KEYWORDS
    assert all(m.phrase == m.name and m.installed and m.version == "micronet-l" and m.languages == ["en"]
               for m in models)


def test_clip_gives_its_keywords_with_audio_timestamps(server: Server) -> None:
    async def go() -> list[Event]:
        async with server.client() as client:
            return await stream(client, clip("keywords/right_left_up.wav"))

    result = summary(run(go()))
    assert [r[0] for r in result] == ["right", "left", "up"]
    # ms of audio at the end of the window that fired, as `kws-stream detect` reports it (1.0, 1.66, 2.52 s)
    assert [r[1] for r in result] == [1000, 1660, 2520]


@pytest.mark.parametrize(("rate", "width", "channels", "chunk_bytes"), [
    (48000, 2, 2, 19200),  # a 48 kHz stereo USB microphone
    (16000, 4, 1, 6400),
    (8000, 1, 1, 800),  # unsigned 8-bit at 8 kHz (telephone quality)
    (44100, 3, 1, 3333),  # 24-bit, and chunks that split frames
])
def test_any_rate_width_and_channels_are_converted(server: Server, rate: int, width: int, channels: int,
                                                    chunk_bytes: int) -> None:
    samples = clip("keywords/right_left_up.wav", rate, channels)

    async def go() -> list[Event]:
        async with server.client() as client:
            return await stream(client, samples, rate, width, chunk_bytes)

    assert names(run(go())) == ["right", "left", "up"]


def test_silence_gives_not_detected_at_audio_stop(server: Server) -> None:
    async def go() -> list[Event]:
        async with server.client() as client:
            first = await stream(client, clip("negatives/silence_1000ms.wav"))
            # the same connection, a second stream: state starts afresh at audio-start
            second = await stream(client, clip("keywords/yes_1000ms.wav"))
            return first + second

    assert names(run(go())) == ["not-detected", "yes"]


def test_detect_names_restricts_what_is_reported(server: Server) -> None:
    async def go() -> tuple[list[Event], list[Event]]:
        async with server.client() as client:
            only_up = await stream(client, clip("keywords/right_left_up.wav"), names=["up"])
            only_stop = await stream(client, clip("keywords/right_left_up.wav"), names=["stop", "marvin"])
            return only_up, only_stop

    only_up, only_stop = run(go())
    assert names(only_up) == ["up"]
    assert names(only_stop) == ["not-detected"]
    assert "event=unknown_wake_names" in server.text()


def test_two_clients_at_once_each_get_their_own_results(server: Server) -> None:
    async def one(name: str, rate: int, channels: int) -> list[str]:
        async with server.client() as client:
            return names(await stream(client, clip(name, rate, channels), rate, chunk_bytes=1600 * channels,
                                      pause=True))

    async def go() -> list[list[str]]:
        return list(await asyncio.gather(one("keywords/right_left_up.wav", RATE, 1),
                                         one("keywords/yes_no_go_stop.wav", 48000, 2),
                                         one("negatives/silence_1000ms.wav", RATE, 1)))

    assert run(go()) == [["right", "left", "up"], ["yes", "no", "go", "stop"], ["not-detected"]]


def test_bad_input_closes_that_client_only(server: Server) -> None:
    async def go() -> tuple[Event | None, list[str]]:
        async with server.client() as good, server.client() as bad:
            await good.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            await bad.write_event(AudioStart(rate=RATE, width=5, channels=1).event())
            closed = await bad.read_event()
            rest = names(await stream(good, clip("keywords/right_left_up.wav")))
            return closed, rest

    closed, rest = run(go())
    assert closed is None  # the server hung up on the bad client
    assert rest == ["right", "left", "up"]
    lines = [line for line in server.text().splitlines() if "unsupported width 5" in line]
    assert len(lines) == 1 and "event=client_rejected" in lines[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sighup_is_ignored_and_sigterm_or_sigint_stop_cleanly_with_a_client_connected(
        cli_env: dict[str, str], tmp_path: Path, sig: int) -> None:
    srv = Server(cli_env, tmp_path / "server.log")

    async def go() -> Event | None:
        async with srv.client() as client:
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=bytes(3200)).event())
            assert await until_pong(client) == []
            srv.proc.send_signal(signal.SIGHUP)  # no reload: logged, and the server keeps serving
            deadline = time.monotonic() + TIMEOUT
            while "event=reload_ignored" not in srv.text() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert await until_pong(client) == []
            assert srv.stop(sig) == 0
            return await client.read_event()

    try:
        assert run(go()) is None  # the connection was closed by the server
    finally:
        srv.stop()
    text = srv.text()
    assert "event=stop" in text and "Traceback" not in text, text


def test_sighup_while_starting_never_kills_serve_wyoming_and_sigterm_exits_zero(cli_env: dict[str, str],
                                                                                  tmp_path: Path) -> None:
    """Issue 15.3: serve wyoming loaded its model before any handler existed, so a SIGHUP then
    killed it and a SIGTERM was not a clean exit 0. Now SIGHUP is logged and ignored, and a
    SIGTERM during the start ends it with 0."""
    from test_daemon import hangups_while_starting

    for stop_early in (False, True, False):
        log = tmp_path / "wyoming.log"
        with log.open("w") as err:
            proc = subprocess.Popen([*kws_command(), "serve", "wyoming", "--uri", f"tcp://127.0.0.1:{free_port()}"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=cli_env)
            try:
                sent = hangups_while_starting(proc)
                assert proc.poll() is None, (sent, proc.returncode, log.read_text())
                if stop_early:  # still importing or loading the model
                    proc.send_signal(signal.SIGTERM)
                else:
                    deadline = time.monotonic() + 30
                    while "event=listening" not in log.read_text():
                        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                        time.sleep(0.05)
                    proc.send_signal(signal.SIGTERM)
                assert proc.wait(TIMEOUT) == 0, (sent, log.read_text())
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        text = log.read_text()
        assert "Traceback" not in text
        if not stop_early:
            assert "event=reload_ignored" in text


def raw_event(header: dict, body: bytes = b"") -> bytes:
    return json.dumps(header).encode() + b"\n" + body


def closed_by_server(port: int, data: bytes) -> bool:
    """Send raw bytes; True when the server hangs up (EOF) within TIMEOUT."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(data)
        try:
            while chunk := s.recv(4096):
                del chunk  # whatever the server answers before closing
            return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


@pytest.mark.parametrize(("key", "value", "limit"), [
    ("payload_length", 300_000_000, 1 << 20),
    ("data_length", 1_000_000_000, 1 << 16),
])
def test_an_oversized_event_is_refused_before_it_is_read(server: Server, key: str, value: int, limit: int) -> None:
    header = {"type": "audio-chunk", "data": {"rate": RATE, "width": 2, "channels": 1}, key: value}
    assert closed_by_server(server.port, raw_event(header, bytes(1000)))
    lines = [line for line in server.text().splitlines() if f"{key} {value}" in line]
    assert len(lines) == 1 and "event=client_rejected" in lines[0], lines
    assert f"over the limit of {limit} bytes" in lines[0]


def test_a_header_line_too_long_is_refused(server: Server) -> None:
    assert closed_by_server(server.port, b'{"type": "' + b"x" * (1 << 17))
    assert "header line over the limit of 65536 bytes" in server.text()


def test_a_big_chunk_does_not_make_other_clients_wait_for_it(cli_env: dict[str, str], tmp_path: Path) -> None:
    """32 s of audio in one 1 MiB chunk is fed to the shared model in slices: a client that
    starts after it is answered long before it (before: only after the whole chunk).

    Plain mode, so that the chunk costs the model at every hop (~1.5 s of CPU): in command mode
    32 s of silence costs almost nothing, and the race would be decided by the scheduler."""
    server = Server(cli_env, tmp_path / "server.log", "--mode", "plain")
    order: list[str] = []

    async def big() -> None:
        async with server.client() as client:
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=bytes(1 << 20)).event())
            started.set()
            assert await until_pong(client) == []
            order.append("big")

    async def small() -> None:
        await started.wait()
        async with server.client() as client:
            assert names(await stream(client, clip("keywords/yes_1000ms.wav"), chunk_bytes=16000)) == ["yes"]
            order.append("small")

    async def go() -> None:
        await asyncio.gather(big(), small())

    started = asyncio.Event()
    try:
        run(go(), timeout=300)  # 32 s of audio: seconds of CPU, much longer on a loaded machine
    finally:
        server.stop_cleanly()
    assert order == ["small", "big"]


@pytest.fixture
def configured(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], Server]]:
    """Starts a server with this TOML as its config file; each stops cleanly after the test."""
    started: list[Server] = []

    def start(toml: str) -> Server:
        conf = tmp_path / f"k{len(started)}.toml"
        conf.write_text(toml)
        started.append(Server(cli_env, tmp_path / f"server{len(started)}.log", "--config", str(conf)))
        return started[-1]

    yield start
    for srv in started:
        srv.stop_cleanly()


def test_idle_clients_are_disconnected_after_idle_timeout(configured: Callable[[str], Server]) -> None:
    limited = configured("[wyoming]\nidle_timeout = 1\nmax_clients = 3\n")

    async def go() -> Event | None:
        async with limited.client() as client:
            assert await until_pong(client) == []
            return await client.read_event()  # nothing more sent: the server hangs up after 1 s

    assert run(go()) is None
    assert "event=client_idle_timeout" in limited.text()
    assert "idle_s=1" in limited.text()


def test_a_full_server_closes_the_connection_idle_longest_and_serves_the_newcomer(
        configured: Callable[[str], Server]) -> None:
    """Issue 25: with every slot taken, the newcomer (Home Assistant, maybe) was closed at once;
    now the connection that has been idle longest makes room for it."""
    three_slots = configured("[wyoming]\nmax_clients = 3\n")

    async def go() -> tuple[Event | None, list[str], list[list[Event]]]:
        clients = [three_slots.client() for _ in range(3)]
        for client in clients:
            await client.connect()
            assert await until_pong(client) == []  # all three are being served
        assert await until_pong(clients[0]) == []  # the oldest is active again: clients[1] is idle longest
        async with three_slots.client() as newcomer:
            result = names(await stream(newcomer, clip("keywords/yes_1000ms.wav")))
        closed = await clients[1].read_event()
        still = [await until_pong(clients[i]) for i in (0, 2)]
        for client in clients:
            await client.disconnect()
        return closed, result, still

    closed, result, still = run(go())
    assert result == ["yes"]
    assert closed is None  # closed to make room
    assert still == [[], []]
    lines = [line for line in three_slots.text().splitlines() if "event=client_evicted" in line]
    assert len(lines) == 1 and "spoke=True max_clients=3" in lines[0], lines


def server_threads(srv: Server) -> int:
    status = Path(f"/proc/{srv.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_the_thread_count_is_constant_whatever_the_clients(server: Server) -> None:
    """A long-running service's threads must not depend on its history (the 2-hour soak saw
    3 -> 5 with asyncio's default pool, which grows with concurrent streams up to cpus + 4)."""
    yes = clip("keywords/yes_1000ms.wav")

    async def one() -> list[str]:
        async with server.client() as client:
            return names(await stream(client, yes, chunk_bytes=640))

    async def round_of(n: int) -> list[list[str]]:
        return list(await asyncio.gather(*(one() for _ in range(n))))

    before = server_threads(server)
    for _ in range(3):
        assert run(round_of(8), timeout=120) == [["yes"]] * 8
        assert server_threads(server) == before
