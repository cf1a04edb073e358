"""Configuration: frozen dataclasses loaded from TOML, every value validated.

An unknown key or a bad value is one `ConfigError` line naming the key and what is
allowed. CLI flags override the file by replacing fields (`dataclasses.replace`).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .command import CommandParams
from .decision import DecisionParams
from .errors import KwsError
from .pipeline import PipelineParams
from .silence import SilenceParams

KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
LOG_LEVELS = ("debug", "info", "warning", "error")
SYSTEM_CONFIG = Path("/etc/kws-stream/kws-stream.toml")
CONFIG_NAME = "kws-stream.toml"
MAX_CONFIG_BYTES = 1 << 20  # a real config is ~5 kB; bigger is not a config (and parsing it costs RAM)
MAX_NESTING = 16  # tables/arrays/dotted keys; ours go 3 deep. tomllib recurses (RecursionError
#                   near 500 levels) and is quadratic in a dotted name's length (100000 parts: ~60 s)


class ConfigError(KwsError):
    exit_code = 2


@dataclass(frozen=True)
class AudioConfig:
    device: str = ""  # "" = the system default input; else an index or part of a name
    sample_rate: int = 0  # 0 = 16000 if the device can, else its default rate; resampled to 16 kHz
    channels: int = 0  # 0 = 1 if the device can (else 2); more channels are mixed down or chosen
    channel: str = "mix"  # "mix" (average all channels) or a 0-based channel index
    block_ms: int = 100  # capture block: each wakeup costs CPU, each ms of block is latency
    no_audio_timeout: float = 3.0  # seconds without audio before the device counts as lost

    def channel_index(self) -> int | None:
        return None if self.channel == "mix" else int(self.channel)  # validated: ASCII digits


@dataclass(frozen=True)
class ModelConfig:
    name: str = ""  # a manifest name or a path to a .tflite listed in a manifest; "" = default
    dir: str = ""  # where models are installed; "" = $STATE_DIRECTORY/models or the XDG data dir
    source: str = ""  # where to install a missing model from (dir or URL); "" = the manifest URL
    manifest: str = ""  # an extra manifest with your own models
    threads: int = 1  # interpreter threads; 1 keeps a Pi quiet


@dataclass(frozen=True)
class DetectionConfig:
    stride: int = 1
    smoothing: int = 4
    threshold: float = 0.7
    refractory: float = 1.0
    keywords: tuple[str, ...] = ()  # allow-list; empty = all ten
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def pipeline_params(self, command: CommandParams = CommandParams(),
                        silence: SilenceParams = SilenceParams()) -> PipelineParams:
        return PipelineParams(
            stride=self.stride,
            command=command,
            silence=silence,
            decision=DecisionParams(
                smoothing=self.smoothing,
                threshold=self.threshold,
                thresholds=dict(self.thresholds),
                refractory=self.refractory,
                keywords=frozenset(self.keywords) if self.keywords else None,
            ),
        )


@dataclass(frozen=True)
class OutputConfig:
    stdout: bool = True  # write detections to stdout
    format: str = "json"  # "json" lines or "text"


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = False
    host: str = "localhost"
    port: int = 1883
    username: str = ""
    password: str = ""
    password_file: str = ""  # read at start; keeps the secret out of the config file
    tls: bool = False
    ca_file: str = ""  # "" = the system CA store when tls = true
    client_id: str = "kws-stream"
    qos: int = 1
    topic_prefix: str = "kws-stream"  # detections on <prefix>/detection
    site_id: str = "default"  # Hermes siteId
    queue_size: int = 100  # detections kept while the broker is away; overflow counted


@dataclass(frozen=True)
class WyomingConfig:
    uri: str = "tcp://127.0.0.1:10400"  # `kws-stream serve wyoming` listens here
    idle_timeout: int = 60  # s without a complete event from a client: it is disconnected
    max_clients: int = 16  # connections served at once; more are refused (and logged)


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = False
    host: str = "127.0.0.1"  # "0.0.0.0" to let another machine's Prometheus scrape it
    port: int = 9464


@dataclass(frozen=True)
class ServiceConfig:
    log_level: str = "info"
    status_interval: float = 60.0  # seconds between STATUS= updates and stats log lines


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

# What each key accepts, as (check, description). Checks take the raw TOML value.
_RULES: dict[str, tuple[Any, str]] = {
    "audio.device": (lambda v: isinstance(v, (str, int)) and not isinstance(v, bool), "a device index or name"),
    "audio.channel": (lambda v: v == "mix" or (_int(v) and 0 <= v <= 255)
                      or (isinstance(v, str) and re.fullmatch(r"[0-9]{1,3}", v) is not None and int(v) <= 255),
                      '"mix" or a channel index from 0 to 255'),
    "audio.sample_rate": (lambda v: _int(v) and (v == 0 or 8000 <= v <= 192000), "0 (auto) or a rate from 8000 to 192000"),
    "audio.channels": (lambda v: _int(v) and 0 <= v <= 32, "0 (auto) or a channel count from 1 to 32"),
    "audio.block_ms": (lambda v: _int(v) and 5 <= v <= 200, "an integer from 5 to 200"),
    "audio.no_audio_timeout": (lambda v: _num(v) and 0.5 <= v <= 60, "a number of seconds from 0.5 to 60"),
    "model.name": (lambda v: isinstance(v, str), "a model name or path"),
    "model.dir": (lambda v: isinstance(v, str), "a directory path"),
    "model.source": (lambda v: isinstance(v, str), "a directory or URL"),
    "model.manifest": (lambda v: isinstance(v, str), "a manifest file path"),
    "model.threads": (lambda v: _int(v) and 1 <= v <= 8, "an integer from 1 to 8"),
    "detection.stride": (lambda v: _int(v) and 1 <= v <= 25, "an integer from 1 to 25 (hops of 20 ms)"),
    "detection.smoothing": (lambda v: _int(v) and 1 <= v <= 50, "an integer from 1 to 50 (inferences)"),
    "detection.threshold": (lambda v: _num(v) and 0 < v <= 1, "a number in (0, 1]"),
    "detection.refractory": (lambda v: _num(v) and 0 <= v <= 10, "a number of seconds from 0 to 10"),
    "detection.keywords": (lambda v: isinstance(v, list) and all(k in KEYWORDS for k in v),
                           f"a list of keywords from {', '.join(KEYWORDS)}"),
    "detection.thresholds": (lambda v: isinstance(v, dict) and all(k in KEYWORDS and _num(x) and 0 < x <= 1
                                                                 for k, x in v.items()),
                             "a table of keyword = number in (0, 1]"),
    "command.enabled": (lambda v: isinstance(v, bool), "true or false"),
    "command.max_word": (lambda v: _num(v) and 0.2 <= v <= 3.0, "a number of seconds from 0.2 to 3"),
    "command.pre_silence": (lambda v: _num(v) and 0 <= v <= 1.5, "a number of seconds from 0 to 1.5"),
    "command.post_silence": (lambda v: _num(v) and 0.06 <= v <= 1.0, "a number of seconds from 0.06 to 1"),
    "command.speech_margin_db": (lambda v: _num(v) and 3 <= v <= 30, "a number of dB from 3 to 30"),
    "command.word_score_ratio": (lambda v: _num(v) and 0.3 <= v <= 1.5, "a number from 0.3 to 1.5"),
    "command.min_snr_db": (lambda v: _num(v) and 0 <= v <= 40, "a number of dB from 0 to 40"),
    "command.after_silence": (lambda v: _num(v) and 0.06 <= v <= 1.0, "a number of seconds from 0.06 to 1"),
    "silence.enabled": (lambda v: isinstance(v, bool), "true or false"),
    "silence.floor_dbfs": (lambda v: _num(v) and -90 <= v <= -10, "a level in dBFS from -90 to -10"),
    "output.stdout": (lambda v: isinstance(v, bool), "true or false"),
    "output.format": (lambda v: v in ("json", "text"), '"json" or "text"'),
    "mqtt.enabled": (lambda v: isinstance(v, bool), "true or false"),
    "mqtt.host": (lambda v: isinstance(v, str) and v != "", "a host name or address"),
    "mqtt.port": (lambda v: _int(v) and 1 <= v <= 65535, "a port from 1 to 65535"),
    "mqtt.username": (lambda v: isinstance(v, str), "a string"),
    "mqtt.password": (lambda v: isinstance(v, str), "a string"),
    "mqtt.password_file": (lambda v: isinstance(v, str), "a file path"),
    "mqtt.tls": (lambda v: isinstance(v, bool), "true or false"),
    "mqtt.ca_file": (lambda v: isinstance(v, str), "a file path"),
    "mqtt.client_id": (lambda v: isinstance(v, str) and 0 < len(v) <= 64, "1 to 64 characters"),
    "mqtt.qos": (lambda v: _int(v) and v in (0, 1, 2), "0, 1 or 2"),
    "mqtt.topic_prefix": (lambda v: isinstance(v, str) and v != "" and not any(c in v for c in "#+"),
                          "a topic without wildcards"),
    "mqtt.site_id": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "mqtt.queue_size": (lambda v: _int(v) and 1 <= v <= 100000, "an integer from 1 to 100000"),
    "wyoming.uri": (lambda v: isinstance(v, str) and v.startswith(("tcp://", "unix://")),
                    "tcp://HOST:PORT or unix://PATH"),
    "wyoming.idle_timeout": (lambda v: _int(v) and 1 <= v <= 86400, "an integer number of seconds from 1 to 86400"),
    "wyoming.max_clients": (lambda v: _int(v) and 1 <= v <= 256, "an integer from 1 to 256"),
    "metrics.enabled": (lambda v: isinstance(v, bool), "true or false"),
    "metrics.host": (lambda v: isinstance(v, str) and v != "", "an address to listen on"),
    "metrics.port": (lambda v: _int(v) and 0 <= v <= 65535, "a port from 1 to 65535 (0 = any free port)"),
    "service.log_level": (lambda v: v in LOG_LEVELS, " or ".join(f'"{x}"' for x in LOG_LEVELS)),
    "service.status_interval": (lambda v: _num(v) and 1 <= v <= 3600, "a number of seconds from 1 to 3600"),
}


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _coerce(key: str, value: Any) -> Any:
    if key == "detection.keywords":
        return tuple(value)
    if key == "detection.thresholds":
        return {k: float(x) for k, x in value.items()}
    if key in ("audio.device", "audio.channel"):
        return str(value)
    if _int(value) and key in _FLOAT_KEYS:
        return float(value)
    return value


_FLOAT_KEYS = frozenset({"audio.no_audio_timeout", "detection.threshold", "detection.refractory",
                         "service.status_interval", "command.max_word", "command.pre_silence",
                         "command.post_silence", "command.speech_margin_db", "command.word_score_ratio",
                         "command.min_snr_db", "command.after_silence", "silence.floor_dbfs"})


def did_you_mean(name: str, choices: list[str]) -> str:
    """"did you mean 'x'?" for the nearest choice, else the (short) list of choices."""
    near = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"did you mean {near[0]!r}?" if near else f"allowed: {', '.join(choices)}"


def check_value(key: str, value: Any) -> Any:
    """Validate one `section.key` value; returns it in its config type."""
    rule = _RULES.get(key)
    if rule is None:
        section, name = key.split(".", 1)
        names = [k.split(".", 1)[1] for k in _RULES if k.startswith(section + ".")]
        raise ConfigError(f"unknown setting {key!r} in [{section}]; {did_you_mean(name, names)}")
    check, allowed = rule
    if not check(value):
        raise ConfigError(f"bad value for {key}: {value!r}; expected {allowed}")
    if isinstance(value, str) and "\0" in value:
        raise ConfigError(f"bad value for {key}: {value!r}; it contains a NUL character")
    return _coerce(key, value)


def from_mapping(data: Mapping[str, Any], base: Config = Config()) -> Config:
    """Build a Config from parsed TOML; every key is checked."""
    sections: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}]; {did_you_mean(section, list(SECTIONS))}")
        if not isinstance(table, dict):
            raise ConfigError(f"{section} must be a table: write it as [{section}]")
        values = {key: check_value(f"{section}.{key}", value) for key, value in table.items()}
        sections[section] = replace(getattr(base, section), **values)
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
