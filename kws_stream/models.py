"""Model manifest, install and verification.

The project ships a manifest (URL, SHA-1, size, labels, feature recipe), never the
third-party .tflite files. Installing copies from a local directory or downloads,
verifies size and SHA-1, and renames into place atomically: no partial or
unverified file is ever left under the final name.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .config import Config, ConfigError, did_you_mean
from .errors import KwsError
from .features import FeatureParams
from .paths import state_dir

if TYPE_CHECKING:
    from .backend import KeywordModel

MANIFEST_NAME = "manifest.toml"
USER_MANIFEST = "models.toml"
READ_TIMEOUT = 30.0  # s without a byte from the server (or to connect): the download fails
DOWNLOAD_DEADLINE = 600.0  # s for a whole download (the models are 0.2-0.7 MB)
MIN_RATE = 1024  # bytes/s: a download averaging less than this over RATE_WINDOW fails...
RATE_WINDOW = 60.0  # s: ...so a source dripping a byte every 20 s fails in ~1 min, not 10
CHUNK = 1 << 16


@dataclass(frozen=True)
class DownloadLimits:
    """When a download is given up (the defaults are the module constants; tests shrink them)."""

    read_timeout: float = READ_TIMEOUT
    deadline: float = DOWNLOAD_DEADLINE
    min_rate: float = MIN_RATE
    rate_window: float = RATE_WINDOW


@dataclass(frozen=True)
class ModelSpec:
    """One manifest entry."""

    name: str
    file: str
    labels: tuple[str, ...]
    features: FeatureParams
    sha1: str | None = None
    size: int | None = None
    url: str | None = None
    path: Path | None = None  # a user's own model file, used in place
    description: str = ""


@dataclass(frozen=True)
class Manifest:
    default: str
    models: Mapping[str, ModelSpec]

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise KwsError(f"unknown model {name!r}: choose one of {', '.join(sorted(self.models))} "
                           "or give a path to a .tflite file listed in a manifest") from None

    def by_sha1(self, sha1: str) -> ModelSpec | None:
        return next((m for m in self.models.values() if m.sha1 == sha1), None)


def packaged_manifest() -> Path:
    """The committed `models/manifest.toml` (copied into the wheel as kws_stream/manifest.toml)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / MANIFEST_NAME, here.parent / "models" / MANIFEST_NAME):
        if candidate.is_file():
            return candidate
    raise KwsError("the model manifest is missing from the installation: reinstall kws-stream")


def user_config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kws-stream"


def default_model_dir() -> Path:
    return state_dir("models")


def load_manifest(extra: tuple[Path, ...] = ()) -> Manifest:
    """The packaged manifest, then the user's models.toml, then `extra`; later entries win."""
    default, models = _parse_manifest(packaged_manifest())
    sources = [user_config_dir() / USER_MANIFEST, *extra]
    for path in sources:
        if path in extra and not path.is_file():
            raise KwsError(f"manifest {path}: no such file")
        if path.is_file():
            user_default, user_models = _parse_manifest(path)
            models.update(user_models)
            default = user_default or default
    if default not in models:
        raise KwsError(f"the default model {default!r} is not in any manifest")
    return Manifest(default, models)


def _parse_manifest(path: Path) -> tuple[str, dict[str, ModelSpec]]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise KwsError(f"manifest {path}: cannot be read ({exc})") from None
    models = {name: _parse_entry(path, name, entry) for name, entry in data.get("models", {}).items()}
    return str(data.get("default", "")), models


def _parse_entry(manifest: Path, name: str, entry: Mapping[str, Any]) -> ModelSpec:
    where = f"manifest {manifest}, model {name!r}"
    labels = entry.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise KwsError(f"{where}: `labels` must be a non-empty list of strings in output order")
    known = {f.name for f in fields(FeatureParams)}
    features = entry.get("features", {})
    unknown = set(features) - known
    if unknown:
        raise KwsError(f"{where}: unknown feature parameter(s) {sorted(unknown)}; allowed: {sorted(known)}")
    if FeatureParams(**features) != FeatureParams():
        raise KwsError(f"{where}: kws-stream only implements the MicroNet front end; "
                       "its `features` must match the packaged manifest")
    path = entry.get("path")
    if path is not None:
        path = (manifest.parent / Path(path).expanduser()).resolve()
    url = entry.get("url")
    if path is None and (url is None or entry.get("sha1") is None or entry.get("size") is None):
        raise KwsError(f"{where}: give either `path`, or `url` with `sha1` and `size`")
    file = entry.get("file", path.name if path else f"{name}.tflite")
    if not isinstance(file, str) or file in ("", ".", "..") or Path(file).name != file:
        # install() writes model_dir / file: an absolute path or `..` would write elsewhere
        raise KwsError(f"{where}: `file` must be a plain file name in the model directory, "
                       f"without `/` or `..` (got {file!r})")
    return ModelSpec(
        name=name,
        file=file,
        labels=tuple(labels),
        features=FeatureParams(**features),
        sha1=entry.get("sha1"),
        size=entry.get("size"),
        url=url,
        path=path,
        description=str(entry.get("description", "")),
    )


def sha1_of(path: Path) -> str:
    # Not hashlib: importing it loads OpenSSL's libcrypto, 3.5 MB resident in `kws-stream run`
    # only to check a 0.6 MB model at start. CPython's own _sha1 gives the same digest (random.py
    # takes _sha512 for the same reason); hashlib where an interpreter lacks it.
    try:
        from _sha1 import sha1  # type: ignore[import-not-found, unused-ignore]  # no typeshed stub
    except ImportError:  # pragma: no cover
        from hashlib import sha1
    digest = sha1()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(spec: ModelSpec, path: Path) -> None:
    """Refuse a file whose size or SHA-1 is not the manifest's; the fix names the file's
    directory, so it reinstalls where this process looks (a service's --model-dir too)."""
    import shlex

    fix = (f"reinstall it with `kws-stream models install {spec.name} --model-dir {shlex.quote(str(path.parent))}`"
           if spec.path is None else "replace it with the file the manifest describes")
    if spec.size is not None and path.stat().st_size != spec.size:
        raise KwsError(f"model file {path} is corrupt ({path.stat().st_size} bytes, expected {spec.size}): {fix}")
    if spec.sha1 is not None and sha1_of(path) != spec.sha1:
        raise KwsError(f"model file {path} is corrupt (SHA-1 mismatch): {fix}")


def installed_path(spec: ModelSpec, model_dir: Path) -> Path:
    return spec.path if spec.path is not None else model_dir / spec.file


def install(spec: ModelSpec, model_dir: Path, source: str | None = None, progress: bool = True,
            limits: DownloadLimits = DownloadLimits()) -> Path:
    """Copy (from a directory) or download (from a URL, within `limits`) one model, verified,
    atomically.

    Nothing is left behind on failure, on Ctrl-C or on SIGTERM: the `.partial` file is removed
    (SIGTERM is turned into an exception for the duration, then re-delivered to whatever
    handled it before, so `kill` still ends the process as it would have).
    """
    if spec.path is not None:
        raise KwsError(f"model {spec.name!r} is a local file ({spec.path}); nothing to install")
    origin = source if source is not None else spec.url
    if origin is None:
        raise KwsError(f"model {spec.name!r} has no url: give --from DIR_OR_URL")
    final = model_dir / spec.file
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=model_dir, prefix=f".{spec.file}.", suffix=".partial")
    except OSError as exc:
        raise KwsError(f"cannot write to model directory {model_dir} ({exc.strerror}): "
                       "choose another with --model-dir") from None
    tmp = Path(tmp_name)
    previous = _raise_on_sigterm()
    try:
        # unbuffered: a write error surfaces in write() as one line, never again from close()
        with os.fdopen(fd, "wb", buffering=0) as f:
            out = _Partial(f, spec, model_dir)
            if _is_url(origin):
                _download(_file_url(origin, spec), out, spec, progress, limits)
            else:
                _copy(Path(origin).expanduser() / spec.file if Path(origin).is_dir() else Path(origin), out, spec)
            out.sync()
        verify(spec, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except _Terminated:
        tmp.unlink(missing_ok=True)
        _restore_sigterm(previous)
        os.kill(os.getpid(), signal.SIGTERM)  # the default action ends the process here
        raise KwsError(f"installing model {spec.name} was interrupted by SIGTERM: nothing was installed") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _restore_sigterm(previous)
    return final


class _Terminated(BaseException):
    """SIGTERM during an install (a BaseException, like KeyboardInterrupt: nothing catches it by mistake)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def _raise_on_sigterm() -> Any:
    """Install `_on_sigterm` (main thread only, and not over SIG_IGN); returns what to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous == signal.SIG_IGN:
        return None
    signal.signal(signal.SIGTERM, _on_sigterm)
    return previous


def _restore_sigterm(previous: Any) -> None:
    if previous is not None and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, previous)


class _Partial:
    """The `.partial` file being written: a write error (disk full, read-only) names the
    destination, never the source."""

    def __init__(self, f: IO[bytes], spec: ModelSpec, model_dir: Path) -> None:
        self._f, self._spec, self._dir = f, spec, model_dir

    def write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:  # an unbuffered write may be short
                written = self._f.write(view)
                if not written:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
        except OSError as exc:
            raise self._error(exc) from None

    def sync(self) -> None:
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> KwsError:
        return KwsError(f"cannot write model file {self._spec.file} in {self._dir} ({exc.strerror}): "
                        "free space there or choose another --model-dir")


def _is_url(origin: str) -> bool:
    return origin.startswith(("http://", "https://", "file://"))


def _file_url(origin: str, spec: ModelSpec) -> str:
    """A base URL ending in '/' names a directory holding the file."""
    return origin + spec.file if origin.endswith("/") else origin


def _too_long(spec: ModelSpec) -> str:
    return f"more than the manifest's {spec.size} bytes"


def _copy(path: Path, out: _Partial, spec: ModelSpec) -> None:
    """Copy the source, refusing it (without writing the excess) once it is longer than the manifest says."""
    got = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK if spec.size is None else min(CHUNK, spec.size + 1 - got)):
                got += len(chunk)
                if spec.size is not None and got > spec.size:
                    raise KwsError(f"model source {path} has {_too_long(spec)}")
                out.write(chunk)
    except OSError as exc:
        raise KwsError(f"cannot read model source {path} ({exc.strerror})") from None


def _download(url: str, out: _Partial, spec: ModelSpec, progress: bool, limits: DownloadLimits) -> None:
    """Download into `out`. It fails on `read_timeout` without a byte, on less than `min_rate`
    bytes/s over a `rate_window` (a source that crawls), on `deadline` in all, or on a byte
    beyond the manifest's size. Rate and deadline are checked after every read, so a server
    dripping bytes fails after at most rate_window + read_timeout."""
    import http.client  # with ssl, ~8 MB resident: loaded only to download
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    started = time.monotonic()
    got = 0
    try:
        with urllib.request.urlopen(url, timeout=limits.read_timeout) as response:
            window_start, window_got = time.monotonic(), 0  # the body's rate, over windows of rate_window
            length = response.headers.get("Content-Length")
            if spec.size is not None and length is not None and length.isdigit() and int(length) > spec.size:
                raise _DownloadFailed(_too_long(spec))
            with tqdm(total=spec.size, unit="B", unit_scale=True, desc=spec.file, file=sys.stderr,
                      disable=not progress, leave=False) as bar:
                # read1: return what has arrived (read() would wait for a whole CHUNK), never
                # more than one byte past the manifest's size
                while chunk := response.read1(CHUNK if spec.size is None else min(CHUNK, spec.size + 1 - got)):
                    got += len(chunk)
                    if spec.size is not None and got > spec.size:
                        raise _DownloadFailed(_too_long(spec))
                    out.write(chunk)
                    bar.update(len(chunk))
                    now = time.monotonic()
                    if now - started > limits.deadline:
                        raise _DownloadFailed(f"not finished after {limits.deadline:g} s")
                    if now - window_start >= limits.rate_window:
                        if got - window_got < limits.min_rate * (now - window_start):
                            raise _DownloadFailed(f"only {got - window_got} bytes in {now - window_start:.0f} s, "
                                                  f"under {_rate(limits.min_rate)}")
                        window_start, window_got = now, got
    except _DownloadFailed as exc:
        reason: object = exc
    except (TimeoutError, urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, TimeoutError):
            reason = f"no data for {limits.read_timeout:g} s"
    else:
        return
    raise KwsError(f"download of {url} failed ({reason}): check the network or use --from DIR") from None


def _rate(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1024:g} KiB/s" if bytes_per_s >= 1024 else f"{bytes_per_s:g} B/s"


class _DownloadFailed(Exception):
    """A reason to give up on a download (its message is the reason)."""


def is_model_path(name_or_path: str) -> bool:
    return name_or_path.endswith(".tflite") or os.sep in name_or_path


def spec_for(name_or_path: str, manifest: Manifest) -> ModelSpec:
    """The manifest entry of a model name, or of a .tflite file (by its `path`, else its
    SHA-1), without installing or verifying anything."""
    if not is_model_path(name_or_path):
        return manifest.get(name_or_path or manifest.default)
    path = Path(name_or_path).expanduser().resolve()
    if not path.is_file():
        raise KwsError(f"model file {path}: no such file")
    spec = next((m for m in manifest.models.values() if m.path == path), None) or manifest.by_sha1(sha1_of(path))
    if spec is None:
        raise KwsError(f"model file {path} is in no manifest: add an entry with its `path` and `labels` "
                       f"to {user_config_dir() / USER_MANIFEST} (see models/manifest.toml)")
    return spec


def resolve(name_or_path: str, model_dir: Path, manifest: Manifest, source: str | None = None,
            progress: bool = True) -> tuple[ModelSpec, Path]:
    """The spec and verified file for a model name or a .tflite path.

    A named model that is not installed yet is installed on first use from `source`
    (or its manifest URL). A path must be a file some manifest knows (by SHA-1 or
    `path`), since the labels come from the manifest.
    """
    spec = spec_for(name_or_path, manifest)
    if is_model_path(name_or_path) and spec.path is None:
        return spec, Path(name_or_path).expanduser().resolve()  # a known model at another path: its SHA-1 matched
    path = installed_path(spec, model_dir)
    if not path.is_file():
        if spec.path is not None:
            raise KwsError(f"model {spec.name!r}: file {path} does not exist")
        print(f"kws-stream: installing model {spec.name} into {model_dir}", file=sys.stderr)
        install(spec, model_dir, source, progress)
    verify(spec, path)
    return spec, path


# ---------------------------------------------------------------- from a Config


def model_dir(config: Config) -> Path:
    """Where the configured models are installed: [model] dir, else `default_model_dir()`."""
    return Path(config.model.dir).expanduser() if config.model.dir else default_model_dir()


def manifest_for(config: Config) -> Manifest:
    """The manifest with the user's; a missing or broken manifest is a bad value (exit 2)."""
    try:
        return load_manifest(tuple(Path(m).expanduser() for m in [config.model.manifest] if m))
    except ConfigError:
        raise
    except KwsError as exc:
        raise ConfigError(str(exc)) from None


def check_model_name(name: str, manifest: Manifest) -> None:
    """A model name the manifest does not know, or a path that is not there or in no
    manifest (its labels would be unknown): exit 2."""
    if name.endswith(".tflite") or os.sep in name:
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"model file {name}: no such file")
        if all(m.path != path for m in manifest.models.values()) and manifest.by_sha1(sha1_of(path)) is None:
            raise ConfigError(f"model file {path} is in no manifest: add an entry with its `path` and "
                              f"`labels` to {user_config_dir() / USER_MANIFEST} (see models/manifest.toml)")
    elif name and name not in manifest.models:
        raise ConfigError(f"unknown model {name!r}; {did_you_mean(name, sorted(manifest.models))}")


def open_model(config: Config, progress: bool | None = None) -> tuple[KeywordModel, str]:
    """The configured model, loaded, and its manifest name: checked (a bad name is exit 2),
    installed on first use from [model] source or its URL, verified. `progress` (default:
    stderr is a terminal) shows a download bar."""
    from .backend import KeywordModel

    manifest = manifest_for(config)
    check_model_name(config.model.name, manifest)
    spec, path = resolve(config.model.name, model_dir(config), manifest, config.model.source or None,
                         progress=sys.stderr.isatty() if progress is None else progress)
    return KeywordModel(path, spec.labels, num_threads=config.model.threads), spec.name
