from dataclasses import fields
from pathlib import Path

import pytest

from kws_stream import config as cfg
from kws_stream.command import CommandParams
from kws_stream.decision import DecisionParams
from kws_stream.params import rule_of
from kws_stream.silence import SilenceParams

REPO = Path(__file__).resolve().parents[1]

# One bad value for every key; each must be rejected with a message naming the key.
BAD_VALUES = {
    "audio.device": [1.5, True],
    "audio.sample_rate": [-1, 4000, "48000"],
    "audio.channels": [-1, 33, 1.0],
    "audio.channel": ["left", -1],
    "audio.block_ms": [0, 1000, "20"],
    "audio.no_audio_timeout": [0, 100, "3"],
    "model.name": [3],
    "model.dir": [False],
    "model.source": [["a"]],
    "model.manifest": [1],
    "model.threads": [0, 9, 1.5],
    "detection.stride": [0, 26, 2.0],
    "detection.smoothing": [0, 51],
    "detection.threshold": [0, 1.5, "0.7", True],
    "detection.refractory": [-1, 11],
    "detection.keywords": ["yes", [1], [""]],  # names of the model's keywords: test_cli_detect
    "detection.thresholds": [{"up": 2}, {"up": "0.5"}, 0.5],
    "command.enabled": ["on"],
    "command.max_word": [0.1, 5],
    "command.pre_silence": [-0.1, 2],
    "command.post_silence": [0.01, 2],
    "command.speech_margin_db": [1, 40],
    "command.word_score_ratio": [0.1, 2],
    "command.min_snr_db": [-1, 50],
    "command.after_silence": [0.01, 2],
    "silence.enabled": [0],
    "silence.floor_dbfs": [-100, 0, "x"],
    "output.stdout": ["yes", 1],
    "output.format": ["xml"],
    "mqtt.enabled": ["yes"],
    "mqtt.host": ["", 1],
    "mqtt.port": [0, 70000, "1883"],
    "mqtt.username": [1],
    "mqtt.password": [1],
    "mqtt.password_file": [False],
    "mqtt.tls": ["on"],
    "mqtt.ca_file": [0],
    "mqtt.client_id": ["", "x" * 65],
    "mqtt.qos": [3, -1],
    "mqtt.topic_prefix": ["", "a/#"],
    "mqtt.site_id": [""],
    "mqtt.queue_size": [0],
    "wyoming.uri": ["http://x", 10400],
    "wyoming.idle_timeout": [0, 1.5, "60"],
    "wyoming.max_clients": [0, 257, True],
    "metrics.enabled": [1],
    "metrics.host": [""],
    "metrics.port": [-1, 70000],
    "service.log_level": ["verbose", 10],
    "service.status_interval": [0, 99999],
}


def test_every_key_has_a_bad_value_case():
    assert set(BAD_VALUES) == set(cfg.SETTINGS) and len(cfg.SETTINGS) == 50


@pytest.mark.parametrize("key, value", [(k, v) for k, vs in BAD_VALUES.items() for v in vs])
def test_bad_values_are_rejected_naming_the_key(key, value):
    section, name = key.split(".")
    with pytest.raises(cfg.ConfigError) as err:
        cfg.from_mapping({section: {name: value}})
    message = str(err.value)
    assert f"bad value for {key}" in message and "expected" in message
    assert "\n" not in message


def test_unknown_keys_and_sections_are_named():
    with pytest.raises(cfg.ConfigError, match="unknown setting 'detection.treshold'"):
        cfg.from_mapping({"detection": {"treshold": 0.5}})
    with pytest.raises(cfg.ConfigError, match=r"unknown section \[detector\]"):
        cfg.from_mapping({"detector": {}})


def test_the_shipped_file_documents_every_key_with_its_default():
    text = (REPO / "config" / "kws-stream.toml").read_text()
    assert cfg.load(REPO / "config" / "kws-stream.toml") == cfg.Config()
    for key in cfg.SETTINGS:
        section, name = key.split(".")
        assert f"[{section}" in text and (f"\n{name} =" in text or f"[{section}.{name}]" in text), key


def test_command_and_silence_sections_build_the_gates_parameters():
    config = cfg.from_mapping({"command": {"max_word": 1, "enabled": False}, "silence": {"floor_dbfs": -40}})
    params = config.pipeline_params()
    assert params.command.max_word == 1.0 and not params.command.enabled
    assert params.silence.floor_dbfs == -40.0 and not params.silence.enabled


def test_values_and_overrides():
    config = cfg.from_mapping({"detection": {"threshold": 1, "keywords": ["up"], "thresholds": {"up": 0.9}},
                               "audio": {"channel": 1}})
    assert config.detection.threshold == 1.0 and config.detection.keywords == ("up",)
    assert config.audio.channel_index() == 1
    params = config.detection.pipeline_params().decision
    assert params.threshold_for("up") == 0.9 and params.keywords == frozenset({"up"})
    overridden = cfg.override(config, {"detection.threshold": 0.8, "model.name": None})
    assert overridden.detection.threshold == 0.8 and overridden.detection.keywords == ("up",)


@pytest.mark.parametrize("make, section, values", [
    (CommandParams, "command", {"max_word": 5, "after_silence": 0.01, "enabled": "yes"}),
    (SilenceParams, "silence", {"floor_dbfs": 0}),
    (DecisionParams, "detection", {"threshold": 2.0, "smoothing": 0, "refractory": -1, "thresholds": {"up": 0}}),
])
def test_the_api_refuses_what_the_file_refuses_with_the_same_line(make, section, values):
    """One home per range: the library's own parameter classes check their values, and the
    config loader's message is theirs."""
    for name, value in values.items():
        with pytest.raises(ValueError) as api:  # a ConfigError is a ValueError, for API users
            make(**{name: value})
        with pytest.raises(cfg.ConfigError) as file:
            cfg.from_mapping({section: {name: value}})
        assert str(api.value) == str(file.value) and str(api.value).startswith(f"bad value for {section}.{name}: ")


def test_detection_shares_the_decision_stages_defaults_and_ranges():
    decision = DecisionParams()
    for name in ("smoothing", "threshold", "refractory", "thresholds"):
        assert getattr(cfg.DetectionConfig(), name) == getattr(decision, name)
        assert cfg.SETTINGS[f"detection.{name}"] is rule_of(next(f for f in fields(DecisionParams) if f.name == name))
    assert cfg.DetectionConfig().pipeline_params().decision == decision


def test_values_are_stored_in_their_field_type():
    config = cfg.from_mapping({"command": {"max_word": 1}, "detection": {"keywords": ["up"], "refractory": 2},
                               "audio": {"device": 3}})
    assert type(config.command.max_word) is float and type(config.detection.refractory) is float
    assert config.detection.keywords == ("up",) and config.audio.device == "3"
    assert type(CommandParams(pre_silence=1).pre_silence) is float


def test_broken_toml_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[detection\nthreshold = ")
    with pytest.raises(cfg.ConfigError, match="not valid TOML"):
        cfg.load(bad)


def test_config_check_command(run_cli, tmp_path):
    good = run_cli("config", "check", REPO / "config" / "kws-stream.toml")
    assert good.returncode == 0 and good.stdout.strip().endswith(": ok")
    bad = tmp_path / "bad.toml"
    bad.write_text("[detection]\nstride = 0\n")
    result = run_cli("config", "check", bad)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"kws-stream: config {bad}: bad value for detection.stride: 0; expected an integer from 1 to 25 (hops of 20 ms)"]


def test_a_bad_flag_value_is_one_line(run_cli):
    from conftest import AUDIO
    result = run_cli("detect", "--threshold", "2", AUDIO / "keywords/yes.wav")
    assert result.returncode == 2
    assert result.stderr.strip() == "kws-stream: bad value for detection.threshold: 2.0; expected a number in (0, 1]"


def test_an_unknown_key_suggests_the_nearest_one():
    with pytest.raises(cfg.ConfigError) as err:
        cfg.from_mapping({"detection": {"treshold": 0.5}})
    assert str(err.value) == "unknown setting 'detection.treshold' in [detection]; did you mean 'threshold'?"
    with pytest.raises(cfg.ConfigError, match=r"unknown setting 'audio.zzz' in \[audio\]; allowed: device, "):
        cfg.from_mapping({"audio": {"zzz": 1}})  # nothing near: that section's keys, not all 48
    with pytest.raises(cfg.ConfigError, match=r"unknown section \[comand\]; did you mean 'command'\?"):
        cfg.from_mapping({"comand": {}})


@pytest.mark.parametrize("value", ["²", "١", "0x1", " 1", "1000"])
def test_channel_is_mix_or_ascii_digits(value):
    with pytest.raises(cfg.ConfigError, match="bad value for audio.channel"):
        cfg.from_mapping({"audio": {"channel": value}})
    assert cfg.from_mapping({"audio": {"channel": "2"}}).audio.channel_index() == 2


@pytest.mark.parametrize("key", [k for k, rule in cfg.SETTINGS.items() if rule.accepts("x")])
def test_no_string_setting_takes_a_nul(key):
    section, name = key.split(".")
    with pytest.raises(cfg.ConfigError, match="contains a NUL character"):
        cfg.from_mapping({section: {name: "a\0b"}})


@pytest.mark.parametrize("content, message", [
    ("[detection]\nthreshold = 0.5 # caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
    (b"\x00\xff" * 100, "not UTF-8 text"),
    (("x = " + "[" * 1000 + "]" * 1000).encode(), "nested 1000 levels deep"),
    (("[" + "a." * 99999 + "a]").encode(), "nested 100000 levels deep"),
    (b"#" * (cfg.MAX_CONFIG_BYTES + 1), "larger than 1024 KiB"),
])
def test_every_loader_turns_a_hostile_file_into_one_config_error(tmp_path, content, message):
    """`load` is what run, detect, serve, check and the daemon's SIGHUP reload all call."""
    path = tmp_path / "c.toml"
    path.write_bytes(content)
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(path)
    assert message in str(err.value) and str(err.value).startswith(f"config {path}: ")
    assert "\n" not in str(err.value)


def test_brackets_and_dots_inside_strings_and_comments_are_not_nesting(tmp_path):
    text = ('[mqtt] # [[[[[[[[[[[[[[[[[[[[ a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r\n'
            'password = "[[[[[[[[[[[[[[[[[[[[ \\" a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r"\n'
            "username = '{{{{{{{{{{{{{{{{{{{{{{ a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r'\n"
            'site_id = """\n[[[[[[[[[[[[[[[[[[[[[[\na.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r\n"""\n'
            '[detection.thresholds]\nup = 0.8\n')
    assert cfg.nesting_depth(text) == 2
    (tmp_path / "c.toml").write_text(text)
    config = cfg.load(tmp_path / "c.toml")
    assert config.mqtt.password.startswith("[[[[") and config.detection.thresholds == {"up": 0.8}
