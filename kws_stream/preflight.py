"""What `run` would refuse at start, checked without starting anything.

`config check` runs these, so a config it accepts runs; `run` and `serve` run them (and
`detect` the model checks) before loading the model, so a bad name, keyword or secret is
one line and exit 2, not a failure halfway through starting (or after installing a model).
"""

from __future__ import annotations

from collections.abc import Collection

from .config import Config, ConfigError
from .decision import NON_KEYWORDS
from .models import check_model_name, manifest_for, spec_for


def check_model(config: Config, enrolled: Collection[str] = ()) -> None:
    """The model name and manifest, and the keywords of [detection] against that model's
    labels (its manifest entry's, which are the labels it is loaded with) and the `enrolled`
    words: a user's own model has its own. One ConfigError line (exit 2)."""
    manifest = manifest_for(config)
    check_model_name(config.model.name, manifest)
    spec = spec_for(config.model.name, manifest)
    config.detection.check_keywords(tuple(k for k in spec.labels if k not in NON_KEYWORDS) + tuple(enrolled),
                                    spec.name)


def check_runnable(config: Config, mqtt: bool = True, enrolled: Collection[str] = ()) -> None:
    """What `run`/`serve` would refuse at start, found without starting: the model name,
    the manifest, the keywords (of the model or `enrolled`), the Wyoming URI and (`mqtt`)
    the MQTT secrets and CA file. One ConfigError line (exit 2)."""
    check_model(config, enrolled)
    from urllib.parse import urlparse

    uri = urlparse(config.wyoming.uri)
    try:
        port = uri.port
    except ValueError:
        port = None
    if uri.scheme == "tcp" and (not uri.hostname or port is None):
        raise ConfigError(f"bad value for wyoming.uri: {config.wyoming.uri!r}; expected tcp://HOST:PORT")
    if uri.scheme == "unix" and not uri.path:
        raise ConfigError(f"bad value for wyoming.uri: {config.wyoming.uri!r}; expected unix://PATH")
    m = config.mqtt
    if not (mqtt and m.enabled):
        return
    from .mqtt import MqttError, checked_password

    try:
        checked_password(m)
    except MqttError as exc:
        raise ConfigError(str(exc)) from None
