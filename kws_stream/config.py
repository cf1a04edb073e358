"""Configuration: frozen dataclasses loaded from TOML, every value validated.

Each section is a frozen dataclass whose fields declare their own range (see
`params.py`); `[command]`, `[silence]` and the decision stage's fields are the
library's own parameter classes. An unknown key or a bad value is one `ConfigError`
line naming the key and what is allowed. CLI flags override the file through the
same loader (`override`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .command import CommandParams
from .decision import DecisionParams
from .params import (
    FLAG,
    KEYWORD_LIST,
    Checked,
    ConfigError,
    Rule,
    check_keywords,
    choice,
    did_you_mean,
    integer,
    rule_of,
    same_as,
    seconds,
    setting,
    text,
)
from .pipeline import PipelineParams
from .silence import SilenceParams

__all__ = ["ConfigError", "did_you_mean"]  # re-exported: where the rest of the package looks for them

LOG_LEVELS = ("debug", "info", "warning", "error")
SYSTEM_CONFIG = Path("/etc/kws-stream/kws-stream.toml")
CONFIG_NAME = "kws-stream.toml"
MAX_CONFIG_BYTES = 1 << 20  # a real config is ~5 kB; bigger is not a config (and parsing it costs RAM)
MAX_NESTING = 16  # tables/arrays/dotted keys; ours go 3 deep. tomllib recurses (RecursionError
#                   near 500 levels) and is quadratic in a dotted name's length (100000 parts: ~60 s)

ANY_TEXT = text("a string")
PATH = text("a file path")
NOT_EMPTY = text("a non-empty string", bool)
CHANNEL = Rule('"mix" or a channel index from 0 to 255',
               lambda v: v == "mix" or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255)
               or (isinstance(v, str) and re.fullmatch(r"[0-9]{1,3}", v) is not None and int(v) <= 255), str)


@dataclass(frozen=True)
class AudioConfig(Checked):
    section = "audio"
    # "" = the system default input; else an index or part of a name
    device: str = setting("", Rule("a device index or name",
                                   lambda v: isinstance(v, (str, int)) and not isinstance(v, bool), str))
    # 0 = 16000 if the device can, else its default rate; resampled to 16 kHz
    sample_rate: int = setting(0, integer(8000, 192000, "a rate", zero="auto"))
    # 0 = 1 if the device can (else 2); more channels are mixed down or chosen
    channels: int = setting(0, integer(1, 32, "a channel count", zero="auto"))
    channel: str = setting("mix", CHANNEL)  # "mix" (average all channels) or a 0-based channel index
    block_ms: int = setting(100, integer(5, 200))  # capture block: each wakeup costs CPU, each ms of block is latency
    no_audio_timeout: float = setting(3.0, seconds(0.5, 60))  # without audio the device counts as lost

    def channel_index(self) -> int | None:
        return None if self.channel == "mix" else int(self.channel)  # validated: ASCII digits


@dataclass(frozen=True)
class ModelConfig(Checked):
    section = "model"
    # a manifest name or a path to a .tflite listed in a manifest; "" = default
    name: str = setting("", text("a model name or path"))
    # where models are installed; "" = $STATE_DIRECTORY/models or the XDG data dir
    dir: str = setting("", text("a directory path"))
    # where to install a missing model from (dir or URL); "" = the manifest URL
    source: str = setting("", text("a directory or URL"))
    manifest: str = setting("", text("a manifest file path"))  # an extra manifest with your own models
    threads: int = setting(1, integer(1, 8))  # interpreter threads; 1 keeps a Pi quiet


@dataclass(frozen=True)
class DetectionConfig(Checked):
    """[detection]: the pipeline's stride, and the decision stage's `DecisionParams`
    (their defaults and ranges are its own), with the allow-list as the list the file
    gives; the keywords are checked against the model's labels (`check_keywords`)."""

    section = "detection"

    stride: int = setting(1, integer(1, 25, note="hops of 20 ms"))
    smoothing: int = same_as(DecisionParams, "smoothing")
    threshold: float = same_as(DecisionParams, "threshold")
    refractory: float = same_as(DecisionParams, "refractory")
    keywords: tuple[str, ...] = setting((), KEYWORD_LIST)  # allow-list; empty = all the model's keywords
    thresholds: Mapping[str, float] = same_as(DecisionParams, "thresholds")

    def check_keywords(self, keyword_labels: tuple[str, ...], model: str) -> None:
        """A ConfigError when `keywords` or `thresholds` name a keyword the model does not have."""
        check_keywords("detection", self.keywords, self.thresholds, keyword_labels, model)

    def pipeline_params(self, command: CommandParams = CommandParams(),
                        silence: SilenceParams = SilenceParams()) -> PipelineParams:
        shared = {f.name: getattr(self, f.name) for f in fields(DecisionParams) if f.name != "keywords"}
        decision = DecisionParams(**shared, keywords=frozenset(self.keywords) or None)
        return PipelineParams(stride=self.stride, command=command, silence=silence, decision=decision)


@dataclass(frozen=True)
class OutputConfig(Checked):
    section = "output"
    stdout: bool = setting(True, FLAG)  # write detections to stdout
    format: str = setting("json", choice("json", "text"))  # "json" lines or "text"


@dataclass(frozen=True)
class MqttConfig(Checked):
    section = "mqtt"
    enabled: bool = setting(False, FLAG)
    host: str = setting("localhost", text("a host name or address", bool))
    port: int = setting(1883, integer(1, 65535, "a port"))
    username: str = setting("", ANY_TEXT)
    password: str = setting("", ANY_TEXT)
    password_file: str = setting("", PATH)  # read at start; keeps the secret out of the config file
    tls: bool = setting(False, FLAG)
    ca_file: str = setting("", PATH)  # "" = the system CA store when tls = true
    client_id: str = setting("kws-stream", text("1 to 64 characters", lambda s: 0 < len(s) <= 64))
    qos: int = setting(1, integer(0, 2))
    # detections on <prefix>/detection
    topic_prefix: str = setting("kws-stream", text("a topic without wildcards",
                                                   lambda s: s != "" and not any(c in s for c in "#+")))
    site_id: str = setting("default", NOT_EMPTY)  # Hermes siteId
    # detections kept while the broker is away; overflow counted
    queue_size: int = setting(100, integer(1, 100000))


@dataclass(frozen=True)
class WyomingConfig(Checked):
    section = "wyoming"
    # `kws-stream serve wyoming` listens here
    uri: str = setting("tcp://127.0.0.1:10400", text("tcp://HOST:PORT or unix://PATH",
                                                     lambda s: s.startswith(("tcp://", "unix://"))))
    # s without a complete event from a client: it is disconnected
    idle_timeout: int = setting(60, integer(1, 86400, "an integer number of seconds"))
    # connections open at once; a new one closes the one idle longest (logged)
    max_clients: int = setting(16, integer(1, 256))


@dataclass(frozen=True)
class MetricsConfig(Checked):
    section = "metrics"
    enabled: bool = setting(False, FLAG)
    # "0.0.0.0" to let another machine's Prometheus scrape it
    host: str = setting("127.0.0.1", text("an address to listen on", bool))
    port: int = setting(9464, integer(1, 65535, "a port", zero="any free port"))


@dataclass(frozen=True)
class ServiceConfig(Checked):
    section = "service"
    log_level: str = setting("info", choice(*LOG_LEVELS))
    # seconds between STATUS= updates and stats log lines
    status_interval: float = setting(60.0, seconds(1, 3600))


@dataclass(frozen=True)
class Config:
    """The whole configuration; one frozen dataclass per TOML section."""

    audio: AudioConfig = AudioConfig()
    model: ModelConfig = ModelConfig()
    detection: DetectionConfig = DetectionConfig()
    command: CommandParams = CommandParams()  # [command]: the gate's own frozen parameters
    silence: SilenceParams = SilenceParams()  # [silence]: likewise
    output: OutputConfig = OutputConfig()
    mqtt: MqttConfig = MqttConfig()
    wyoming: WyomingConfig = WyomingConfig()
    metrics: MetricsConfig = MetricsConfig()
    service: ServiceConfig = ServiceConfig()

    def pipeline_params(self) -> PipelineParams:
        return self.detection.pipeline_params(self.command, self.silence)


SECTIONS = tuple(f.name for f in fields(Config))
SETTINGS: dict[str, Rule] = {f"{section}.{f.name}": rule_of(f)
                             for section in SECTIONS for f in fields(getattr(Config(), section))}
"""Every `section.key` a config file may set, with what it accepts."""


def from_mapping(data: Mapping[str, Any], base: Config = Config()) -> Config:
    """Build a Config from parsed TOML; every key is checked (by its section's dataclass)."""
    sections: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}]; {did_you_mean(section, list(SECTIONS))}")
        if not isinstance(table, dict):
            raise ConfigError(f"{section} must be a table: write it as [{section}]")
        current = getattr(base, section)
        names = [f.name for f in fields(current)]
        for key in table:
            if key not in names:
                raise ConfigError(f"unknown setting {f'{section}.{key}'!r} in [{section}]; {did_you_mean(key, names)}")
        sections[section] = replace(current, **table)
    return replace(base, **sections)


def find(explicit: Path | None = None) -> Path | None:
    """The config file every command reads: `explicit` (--config), else
    $XDG_CONFIG_HOME/kws-stream/kws-stream.toml (default ~/.config), else
    /etc/kws-stream/kws-stream.toml; None when there is none (the defaults apply)."""
    if explicit is not None:
        return explicit
    return next((c for c in find_candidates() if c.is_file()), None)


def find_candidates() -> tuple[Path, Path]:
    """The default config locations, in the order they are tried."""
    home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(home) / "kws-stream" / CONFIG_NAME, SYSTEM_CONFIG


def load(path: Path) -> Config:
    """Read, parse and validate a config file; any problem is one ConfigError line."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ConfigError(f"config {path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config {path}: larger than {MAX_CONFIG_BYTES // 1024} KiB, not a kws-stream config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    depth = nesting_depth(text)
    if depth > MAX_NESTING:
        raise ConfigError(f"config {path}: nested {depth} levels deep (the limit is {MAX_NESTING}; "
                          "kws-stream's settings are at most 3 levels deep)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML ({exc})") from None
    except RecursionError:  # the depth scan above should make this unreachable
        raise ConfigError(f"config {path}: nested too deeply") from None
    try:
        return from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"config {path}: {exc}") from None


# TOML strings and comments may hold any brackets and dots: blanked out before counting.
_OPENERS = re.compile("\"\"\"|'''|[\"'#]")
_BASIC_BODY = re.compile(r'(?:[^"\\\n]|\\.)*')
_DOTTED = re.compile(r"(?<![\w-])[\w-]+(?:[ \t]*\.[ \t]*[\w-]+)+")
_BRACKETS = re.compile(r"[\[\]{}]")


def _without_strings(text: str) -> str:
    """`text` with every string replaced by `s` and every comment by a space, in one
    linear pass (a regex over the whole file backtracks quadratically on `"\"\"\"...`)."""
    out: list[str] = []
    pos = 0
    while (m := _OPENERS.search(text, pos)) is not None:
        out.append(text[pos:m.start()])
        opener, body = m.group(), m.end()
        if opener == "#":
            out.append(" ")
            line_end = text.find("\n", body)
            pos = len(text) if line_end < 0 else line_end
            continue
        if len(opener) == 3:
            close = text.find(opener, body)
            pos = len(text) if close < 0 else close + 3
        elif opener == '"':
            match = _BASIC_BODY.match(text, body)  # always matches (possibly empty)
            end = match.end() if match else body
            pos = end + 1 if text.startswith('"', end) else end
        else:  # a literal string ends at the next ' on its line
            close = text.find("'", body)
            close = len(text) if close < 0 else close
            line_end = text.find("\n", body, close)
            pos = line_end if line_end >= 0 else min(close + 1, len(text))
        out.append("s")
    out.append(text[pos:])
    return "".join(out)


def nesting_depth(text: str) -> int:
    """An upper bound of a TOML document's nesting, in linear time without parsing it:
    the deepest open brackets/braces, or the parts of the longest dotted name (a float
    such as 0.7 counts as 2)."""
    bare = _without_strings(text)
    depth = deepest = 0
    for m in _BRACKETS.finditer(bare):
        if m.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    dotted = max((m.group().count(".") + 1 for m in _DOTTED.finditer(bare)), default=0)
    return max(deepest, dotted)


def override(config: Config, values: Mapping[str, Any]) -> Config:
    """Apply `section.key` overrides (from CLI flags); None values are ignored."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if value is not None:
            section, name = key.split(".", 1)
            nested.setdefault(section, {})[name] = value
    return from_mapping(nested, config)
