import functools
import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest

from conftest import LABELS, SHARED_MODELS
from kws_stream.errors import KwsError
from kws_stream.models import install, load_manifest, resolve, sha1_of


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
    ('[models.x]\npath = "x.tflite"\nlabels = ["a"]\nfeatures = { frame_step = 160 }\n', "only implements the MicroNet front end"),
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
