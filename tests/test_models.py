import functools
import http.server
import os
import re
import resource
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LABELS, SHARED_MODELS, kws_command

from kws_stream.errors import KwsError
from kws_stream.models import DownloadLimits, install, load_manifest, resolve, sha1_of


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving a directory: good models and a corrupted copy."""
    root = tmp_path / "www"
    (root / "good").mkdir(parents=True)
    (root / "bad").mkdir()
    for f in SHARED_MODELS.glob("*.tflite"):
        (root / "good" / f.name).write_bytes(f.read_bytes())
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
        (root / "bad" / f.name).write_bytes(bytes(data))
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    thread.join(5)
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_packaged_manifest_pins_both_models_with_the_true_label_order():
    manifest = load_manifest()
    assert manifest.default == "micronet-l"
    for name, file in (("micronet-l", "kws_micronet_l.tflite"), ("micronet-m", "kws_micronet_m.tflite")):
        spec = manifest.get(name)
        assert spec.labels == LABELS
        assert spec.sha1 == sha1_of(SHARED_MODELS / file)
        assert spec.size == (SHARED_MODELS / file).stat().st_size
        assert spec.url.startswith("https://") and spec.url.endswith(file)


def test_install_from_a_directory(tmp_path):
    spec = load_manifest().get("micronet-m")
    path = install(spec, tmp_path / "models", str(SHARED_MODELS), progress=False)
    assert path == tmp_path / "models" / "kws_micronet_m.tflite"
    assert sha1_of(path) == spec.sha1
    assert [p.name for p in (tmp_path / "models").iterdir()] == [path.name]


def test_install_downloads_from_a_real_http_server(tmp_path, http_root):
    url, _ = http_root
    spec = load_manifest().get("micronet-l")
    path = install(spec, tmp_path / "m", f"{url}/good/", progress=False)
    assert sha1_of(path) == spec.sha1
    path2 = install(load_manifest().get("micronet-m"), tmp_path / "m", f"{url}/good/kws_micronet_m.tflite")
    assert path2.name == "kws_micronet_m.tflite"


def test_a_corrupted_download_is_refused_and_leaves_nothing(tmp_path, http_root):
    url, _ = http_root
    spec = load_manifest().get("micronet-l")
    with pytest.raises(KwsError, match="SHA-1 mismatch"):
        install(spec, tmp_path / "m", f"{url}/bad/", progress=False)
    assert list((tmp_path / "m").iterdir()) == []


def test_a_failed_reinstall_keeps_the_good_installed_file(tmp_path, http_root):
    url, _ = http_root
    spec = load_manifest().get("micronet-l")
    good = install(spec, tmp_path / "m", f"{url}/good/", progress=False)
    with pytest.raises(KwsError):
        install(spec, tmp_path / "m", f"{url}/bad/", progress=False)
    assert sha1_of(good) == spec.sha1
    assert [p.name for p in (tmp_path / "m").iterdir()] == [good.name]


def test_unreachable_url_is_one_clear_error(tmp_path, http_root):
    url, _ = http_root
    with pytest.raises(KwsError, match="download of .* failed"):
        install(load_manifest().get("micronet-l"), tmp_path / "m", f"{url}/missing/", progress=False)


def test_missing_model_is_installed_on_first_use(tmp_path, http_root):
    url, _ = http_root
    spec, path = resolve("micronet-m", tmp_path / "m", load_manifest(), f"{url}/good/", progress=False)
    assert spec.name == "micronet-m" and sha1_of(path) == spec.sha1


def test_corrupt_installed_model_is_refused_with_the_fix(tmp_path):
    manifest = load_manifest()
    path = install(manifest.get("micronet-l"), tmp_path, str(SHARED_MODELS), progress=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(KwsError, match=r"corrupt .*kws-stream models install micronet-l"):
        resolve("micronet-l", tmp_path, manifest)


def test_a_known_model_at_a_user_path_is_found_by_sha1(tmp_path):
    copy = tmp_path / "mine.tflite"
    copy.write_bytes((SHARED_MODELS / "kws_micronet_m.tflite").read_bytes())
    spec, path = resolve(str(copy), tmp_path / "unused", load_manifest())
    assert spec.name == "micronet-m" and path == copy


def test_user_manifest_adds_an_own_model_by_path(tmp_path):
    own = tmp_path / "own.tflite"
    own.write_bytes((SHARED_MODELS / "kws_micronet_l.tflite").read_bytes())
    labels = ", ".join(f'"{x}"' for x in LABELS)
    extra = tmp_path / "mine.toml"
    extra.write_text(f'[models.mine]\npath = "own.tflite"\nlabels = [{labels}]\n')
    manifest = load_manifest((extra,))
    spec, path = resolve("mine", tmp_path / "unused", manifest)
    assert path == own and spec.labels == LABELS
    spec, path = resolve(str(own), tmp_path / "unused", manifest)
    assert spec.name == "mine"


def test_unknown_model_file_needs_a_manifest_entry(tmp_path):
    stranger = tmp_path / "stranger.tflite"
    stranger.write_bytes(b"\0" * 100)
    with pytest.raises(KwsError, match="is in no manifest"):
        resolve(str(stranger), tmp_path, load_manifest())


@pytest.mark.parametrize("body, message", [
    ('[models.x]\nurl = "http://h/x.tflite"\nlabels = ["a"]\n', "give either `path`, or `url` with `sha1` and `size`"),
    ('[models.x]\npath = "x.tflite"\nlabels = []\n', "`labels` must be a non-empty list"),
    ('[models.x]\npath = "x.tflite"\nlabels = ["a"]\nfeatures = { frame_step = 160 }\n',
     "only implements the MicroNet front end"),
    ('[models.x\n', "cannot be read"),
])
def test_bad_manifest_entries_are_named(tmp_path, body, message):
    extra = tmp_path / "bad.toml"
    extra.write_text(body)
    with pytest.raises(KwsError, match=message):
        load_manifest((extra,))


@pytest.mark.parametrize("file", ["/tmp/evil.tflite", "../evil.tflite", "sub/../../evil.tflite", "..", ""])
def test_a_manifest_file_outside_the_model_directory_is_refused(tmp_path, file):
    extra = tmp_path / "bad.toml"
    extra.write_text(f'[models.x]\nfile = "{file}"\nurl = "http://h/x"\nsha1 = "00"\nsize = 1\nlabels = ["a"]\n')
    with pytest.raises(KwsError, match=r"model 'x': `file` must be a plain file name in the model directory"):
        load_manifest((extra,))


def test_a_model_name_that_would_escape_the_model_directory_is_refused(tmp_path):
    extra = tmp_path / "bad.toml"
    extra.write_text('[models."../../evil"]\nurl = "http://h/x"\nsha1 = "00"\nsize = 1\nlabels = ["a"]\n')
    with pytest.raises(KwsError, match=r"`file` must be a plain file name in the model directory"):
        load_manifest((extra,))


class Adversary(http.server.BaseHTTPRequestHandler):
    """A real HTTP server on 127.0.0.1 that misbehaves by path: /drip/ sends one byte every
    `drip` s (for at most 60 s), /silent/ sends the headers and then nothing, /endless/ sends zeros without a length
    (capped at 64 MB so that a broken client still ends), /longer/ announces size + 1."""

    drip = 0.2
    stop: threading.Event
    sent_some: threading.Event

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        kind = self.path.strip("/").split("/")[0]
        size = (SHARED_MODELS / Path(self.path).name).stat().st_size
        self.send_response(200)
        if kind != "endless":
            self.send_header("Content-Length", str(size + (kind == "longer")))
        self.end_headers()
        try:
            if kind == "drip":
                for _ in range(int(60 / self.drip)):
                    if self.stop.wait(self.drip):
                        break
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    self.sent_some.set()
            elif kind == "silent":
                self.stop.wait()
            elif kind in ("endless", "longer"):
                for _ in range(1024):
                    self.wfile.write(bytes(1 << 16))
        except OSError:
            pass  # the client gave up: what we want


@pytest.fixture
def adversary() -> Iterator[tuple[str, type[Adversary]]]:
    handler = type("Handler", (Adversary,), {"stop": threading.Event(), "sent_some": threading.Event()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    handler.stop.set()
    server.shutdown()
    thread.join(5)
    server.server_close()


def test_a_server_that_stops_sending_times_out(tmp_path, adversary):
    url, _ = adversary
    with pytest.raises(KwsError, match=r"download of .*/silent/kws_micronet_m.tflite failed \(no data for 1 s\)"):
        install(load_manifest().get("micronet-m"), tmp_path / "m", f"{url}/silent/", progress=False,
                limits=DownloadLimits(read_timeout=1.0))  # the default is 30 s
    assert list((tmp_path / "m").iterdir()) == []


def test_a_server_dripping_bytes_hits_the_download_deadline(tmp_path, adversary):
    url, _ = adversary
    with pytest.raises(KwsError, match=r"download of .*/drip/kws_micronet_m.tflite failed "
                                       r"\(not finished after 1.5 s\)"):
        install(load_manifest().get("micronet-m"), tmp_path / "m", f"{url}/drip/", progress=False,
                limits=DownloadLimits(deadline=1.5, min_rate=0))  # the default is 600 s
    assert list((tmp_path / "m").iterdir()) == []


def test_a_download_that_crawls_under_the_rate_floor_fails_long_before_the_deadline(tmp_path, adversary):
    """Issue 25: a source sending a byte every 20 s held `models install` for the whole
    10 minutes. The floor (1 KiB/s over 60 s by default) is scaled down here to 1 KiB/s over
    1 s against a server sending 5 bytes/s; the deadline (10 s) is what it hit before."""
    url, _ = adversary
    with pytest.raises(KwsError) as failed:
        install(load_manifest().get("micronet-m"), tmp_path / "m", f"{url}/drip/", progress=False,
                limits=DownloadLimits(deadline=10.0, min_rate=1024, rate_window=1.0))
    message = str(failed.value)
    assert "\n" not in message
    assert re.fullmatch(rf"download of {url}/drip/kws_micronet_m.tflite failed \(only \d+ bytes in \d+ s, "
                        r"under 1 KiB/s\): check the network or use --from DIR", message), message
    assert list((tmp_path / "m").iterdir()) == []


def test_the_default_rate_floor_is_one_kib_per_second_over_a_minute_within_ten_minutes():
    assert DownloadLimits() == DownloadLimits(read_timeout=30.0, deadline=600.0, min_rate=1024, rate_window=60.0)


def test_a_fast_download_passes_a_tight_rate_floor(tmp_path, http_root):
    url, _ = http_root
    spec = load_manifest().get("micronet-l")
    path = install(spec, tmp_path / "m", f"{url}/good/", progress=False,
                   limits=DownloadLimits(min_rate=1024, rate_window=0.5))
    assert sha1_of(path) == spec.sha1


@pytest.mark.parametrize("kind", ["endless", "longer"])
def test_a_body_longer_than_the_manifest_size_is_refused_without_filling_the_disk(tmp_path, adversary, kind):
    url, _ = adversary
    spec = load_manifest().get("micronet-m")
    with pytest.raises(KwsError, match=rf"download of .*/{kind}/kws_micronet_m.tflite failed "
                                       rf"\(more than the manifest's {spec.size} bytes\)"):
        install(spec, tmp_path / "m", f"{url}/{kind}/", progress=False)
    assert list((tmp_path / "m").iterdir()) == []


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)])
def test_a_signal_mid_download_leaves_no_partial_file(tmp_path, adversary, cli_env, sig, status):
    url, handler = adversary
    target = tmp_path / "m"
    # a shell's background job ignores SIGINT and its children inherit that: restore what a
    # terminal gives the command (Python then turns SIGINT into KeyboardInterrupt)
    proc = subprocess.Popen([*kws_command(), "models", "install", "micronet-m", "--from", f"{url}/drip/",
                             "--model-dir", str(target)], env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert handler.sent_some.wait(30), "the download never started"
        assert [p.suffix for p in target.iterdir()] == [".partial"]  # mid-download
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert list(target.iterdir()) == []


def _file_size_limit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # a real "disk full" (EFBIG) for this process


@pytest.mark.parametrize("source", ["url", "dir"])
def test_a_write_error_names_the_destination_not_the_source(tmp_path, http_root, cli_env, source):
    url, _ = http_root
    origin = f"{url}/good/" if source == "url" else str(SHARED_MODELS)
    target = tmp_path / "m"
    result = subprocess.run([*kws_command(), "models", "install", "micronet-m", "--from", origin,
                             "--model-dir", str(target)], env=cli_env, capture_output=True, text=True,
                            timeout=60, preexec_fn=_file_size_limit)
    assert result.returncode == 1
    assert result.stderr == (f"kws-stream: cannot write model file kws_micronet_m.tflite in {target} "
                             "(File too large): free space there or choose another --model-dir\n")
    assert list(target.iterdir()) == []


def test_a_source_file_longer_than_the_manifest_size_is_refused(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "kws_micronet_m.tflite").write_bytes((SHARED_MODELS / "kws_micronet_m.tflite").read_bytes() + b"x")
    spec = load_manifest().get("micronet-m")
    with pytest.raises(KwsError, match=rf"model source .*kws_micronet_m.tflite has more than the manifest's "
                                       rf"{spec.size} bytes"):
        install(spec, tmp_path / "m", str(source), progress=False)
    assert list((tmp_path / "m").iterdir()) == []


def test_sigterm_mid_download_reaches_the_callers_handler_and_installs_nothing(tmp_path, adversary):
    """A daemon's own SIGTERM handler (installed before a first-use download) still gets the
    signal after the .partial file is removed, and is in place again afterwards."""
    url, handler = adversary
    received: list[int] = []

    def daemon_handler(signum: int, frame: object) -> None:
        received.append(signum)

    def terminate_when_downloading() -> None:
        if handler.sent_some.wait(30):
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, daemon_handler)
    killer = threading.Thread(target=terminate_when_downloading)
    killer.start()
    try:
        with pytest.raises(KwsError, match="installing model micronet-m was interrupted by SIGTERM: "
                                           "nothing was installed"):
            install(load_manifest().get("micronet-m"), tmp_path / "m", f"{url}/drip/", progress=False)
        assert signal.getsignal(signal.SIGTERM) is daemon_handler
    finally:
        killer.join(30)
        signal.signal(signal.SIGTERM, previous)
    assert received == [signal.SIGTERM]
    assert list((tmp_path / "m").iterdir()) == []
