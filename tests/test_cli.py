"""The command line a user expects: config locations, options per subcommand, exit codes,
--mode, --version, --explain, short files and a closed stdout. Real command, real model."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import scipy.io.wavfile
from conftest import AUDIO, SHARED_MODELS, detections, kws_command, read_clip

from kws_stream.features import MICRONET

SENTENCE = AUDIO / "negatives/i_tell_you.wav"  # read speech: plain spotting finds "right" in it
YES = AUDIO / "keywords/yes.wav"
RLU = AUDIO / "keywords/right_left_up.wav"


@pytest.fixture
def xdg_env(cli_env, tmp_path) -> dict[str, str]:
    """cli_env with a private, initially empty $XDG_CONFIG_HOME (the models stay shared)."""
    (tmp_path / "xdg").mkdir()
    return dict(cli_env, XDG_CONFIG_HOME=str(tmp_path / "xdg"))


def user_config(env: dict[str, str], text: str) -> Path:
    path = Path(env["XDG_CONFIG_HOME"]) / "kws-stream" / "kws-stream.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def one_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single stderr line of a refused command (no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("kws-stream: ")
    return lines[0]


# ------------------------------------------------------------------ one config, wherever read

def test_detect_reads_the_user_config_and_says_which_file(run_cli, xdg_env):
    path = user_config(xdg_env, '[detection]\nkeywords = ["left"]\n')
    result = run_cli("detect", RLU, env=xdg_env)
    assert result.returncode == 0, result.stderr
    assert [d["keyword"] for d in detections(result.stdout)] == ["left"]
    assert f"event=config file={path}" in result.stderr


def test_models_commands_read_the_user_config_too(run_cli, xdg_env, tmp_path):
    path = user_config(xdg_env, f'[model]\ndir = "{tmp_path / "models"}"\nsource = "{SHARED_MODELS}"\n')
    installed = run_cli("models", "install", "micronet-m", env=xdg_env)
    assert installed.returncode == 0, installed.stderr
    assert f"event=config file={path}" in installed.stderr
    assert (tmp_path / "models" / "kws_micronet_m.tflite").is_file()
    listing = run_cli("models", "list", env=xdg_env)
    assert str(tmp_path / "models" / "kws_micronet_m.tflite") in listing.stdout


def test_an_explicit_config_wins_over_the_user_config(run_cli, xdg_env, tmp_path):
    user_config(xdg_env, '[detection]\nkeywords = ["left"]\n')
    (tmp_path / "mine.toml").write_text('[detection]\nkeywords = ["up"]\n')
    result = run_cli("detect", "--config", tmp_path / "mine.toml", RLU, env=xdg_env)
    assert [d["keyword"] for d in detections(result.stdout)] == ["up"]


@pytest.mark.parametrize("command", [["run"], ["serve", "wyoming"], ["models", "list"], ["config", "check"]])
def test_every_command_reads_the_user_config(run_cli, xdg_env, command):
    path = user_config(xdg_env, "[detection]\nstride = 0\n")
    line = one_line(run_cli(*command, env=xdg_env, timeout=60))
    assert line.startswith(f"kws-stream: config {path}: bad value for detection.stride")


def test_the_documented_order(tmp_path, monkeypatch):
    """--config, else $XDG_CONFIG_HOME, else /etc (the system path is redirected to a
    temporary file: a test must not write /etc)."""
    from kws_stream import config as cfg

    system = tmp_path / "etc.toml"
    monkeypatch.setattr(cfg, "SYSTEM_CONFIG", system)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert cfg.find() is None
    system.write_text("")
    assert cfg.find() == system
    user = tmp_path / "xdg" / "kws-stream" / "kws-stream.toml"
    user.parent.mkdir(parents=True)
    user.write_text("")
    assert cfg.find() == user
    assert cfg.find(tmp_path / "x.toml") == tmp_path / "x.toml"


# ------------------------------------------------------------------ config check = what run refuses

def check(run_cli, tmp_path, text: str | bytes) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "c.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return run_cli("config", "check", path, timeout=60)


@pytest.mark.parametrize("text, message", [
    ('[mqtt]\nenabled = true\nusername = "u"\npassword_file = "/nonexistent"\n',
     "mqtt password_file /nonexistent: cannot be read"),
    ('[mqtt]\nenabled = true\ntls = true\nca_file = "{garbage}"\n', "not a usable CA certificate"),
    ('[mqtt]\nenabled = true\npassword = "p"\n', "a password needs a username"),
    ('[model]\nname = "micronet-xl"\n', "unknown model 'micronet-xl'; did you mean 'micronet-l'?"),
    ('[model]\nmanifest = "/nonexistent.toml"\n', "manifest /nonexistent.toml: no such file"),
    ('[wyoming]\nuri = "tcp://127.0.0.1"\n', "expected tcp://HOST:PORT"),
    ('[wyoming]\nuri = "unix://"\n', "expected unix://PATH"),
    ('[model]\nname = "{garbage}"\n', "garbage.pem is in no manifest"),
    ('[audio]\nchannel = "²"\n', "bad value for audio.channel"),
    ('[model]\ndir = "/tmp/a\\u0000b"\n', "contains a NUL character"),
    ('[detection]\ntreshold = 0.5\n', "did you mean 'threshold'?"),
    ('[detectoin]\n', "did you mean 'detection'?"),
    ('[detection]\nkeywords = ["yes", "marvin"]\n', "bad value for detection.keywords: 'marvin' is not a keyword"),
    ('[detection.thresholds]\n_silence_ = 0.5\n', "bad value for detection.thresholds: '_silence_' is not a keyword"),
])
def test_config_check_refuses_what_run_would_refuse(run_cli, tmp_path, text, message):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    line = one_line(check(run_cli, tmp_path, text.replace("{garbage}", str(garbage))))
    assert message in line


@pytest.mark.parametrize("content, message", [
    ("[detection]\nthreshold = 0.5 # caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
    (bytes(range(256)) * 4, "not UTF-8 text"),
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested 5000 levels deep"),
    ("x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n", "nested 3000 levels deep"),
    ("[" + ".".join(["a"] * 100000) + "]\n", "nested 100000 levels deep"),
    ('a = "' + "x" * (1 << 20) + '"\n', "larger than 1024 KiB"),
])
def test_hostile_config_files_are_one_line_and_quick(run_cli, tmp_path, content, message):
    assert message in one_line(check(run_cli, tmp_path, content))


def test_what_check_accepts_runs(run_cli, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("hunter2\n")
    conf = (f'[audio]\nchannel = "0"\n[mqtt]\nenabled = false\nusername = "u"\npassword_file = "{secret}"\n'
            '[detection.thresholds]\nup = 0.8\n')
    result = check(run_cli, tmp_path, conf)
    assert result.returncode == 0 and result.stdout.strip().endswith(": ok"), result.stderr
    result = run_cli("detect", "--config", tmp_path / "c.toml", RLU)
    assert result.returncode == 0, result.stderr
    assert [d["keyword"] for d in detections(result.stdout)] == ["right", "left", "up"]


def test_config_check_without_a_file_says_the_defaults_apply(run_cli, xdg_env):
    result = run_cli("config", "check", env=xdg_env)
    assert result.returncode == 0 and "the defaults apply" in result.stdout


# ------------------------------------------------------------------ options

def test_version(run_cli):
    from kws_stream import __version__

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"kws-stream {__version__}"


@pytest.mark.parametrize("command, absent", [
    (["models", "list"], ["--stride", "--format", "--channel", "--mode", "--from", "--model"]),
    (["models", "install"], ["--stride", "--format", "--channel", "--mode", "--model-source"]),
    (["serve", "wyoming"], ["--format", "--channel", "--model-source"]),
    (["detect"], ["--model-source", "--device"]),
    (["run"], ["--model-source", "--explain"]),
])
def test_each_subcommand_shows_only_its_own_options(run_cli, command, absent):
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    for option in absent:
        assert not re.search(re.escape(option) + r"(?![\w-])", result.stdout), (command, option)
    assert re.search(r"--model-dir", result.stdout)


def test_serve_wyoming_refuses_format(run_cli):
    assert run_cli("serve", "wyoming", "--format", "json").returncode == 2


@pytest.mark.parametrize("args, message", [
    (["detect", "--model", "nope", YES], "unknown model 'nope'"),
    (["detect", "--model", "micronet_m", YES], "did you mean 'micronet-m'?"),
    (["detect", "--model", "/nonexistent/m.tflite", YES], "no such file"),
    (["detect", "--manifest", "/nonexistent.toml", YES], "no such file"),
    (["detect", "--keywords", "yes,marvin", YES], "bad value for detection.keywords"),
    (["detect", "--channel", "²", YES], "bad value for audio.channel"),
    (["models", "install", "micronet-xl", "--from", SHARED_MODELS], "did you mean 'micronet-l'?"),
    (["models", "install", "micronet-m", "--from", "/nonexistent/models"], "model source /nonexistent/models: no such"),
])
def test_bad_values_and_names_exit_2(run_cli, args, message):
    assert message in one_line(run_cli(*args))


def test_mode_switches_command_mode_from_the_command_line(run_cli, tmp_path):
    plain = run_cli("detect", "--mode", "plain", SENTENCE)
    assert [d["keyword"] for d in detections(plain.stdout)] == ["right"]
    assert run_cli("detect", "--mode", "command", SENTENCE).stdout == ""
    (tmp_path / "plain.toml").write_text("[command]\nenabled = false\n")
    overridden = run_cli("detect", "--config", tmp_path / "plain.toml", "--mode", "command", SENTENCE)
    assert overridden.returncode == 0 and overridden.stdout == ""
    assert run_cli("detect", "--mode", "loose", SENTENCE).returncode == 2


def test_explain_says_why_each_candidate_was_reported_or_rejected(run_cli):
    result = run_cli("detect", "--explain", SENTENCE, YES)
    assert result.returncode == 0, result.stderr
    assert [d["keyword"] for d in detections(result.stdout)] == ["yes"]
    lines = [line for line in result.stderr.splitlines() if line.startswith("explain ")]
    rejected = [line for line in lines if "verdict=rejected" in line]
    assert len(rejected) == 1 and "keyword=right" in rejected[0] and f"source={SENTENCE}" in rejected[0]
    assert " rule=pre_silence " in rejected[0] and "score=0.8" in rejected[0] and "threshold=0.70" in rejected[0]
    reported = [line for line in lines if "verdict=reported" in line]
    assert len(reported) == 1 and "keyword=yes" in reported[0] and f"source={YES}" in reported[0]
    assert "explain" not in run_cli("detect", SENTENCE, YES).stderr
    plain = run_cli("detect", "--mode", "plain", "--explain", SENTENCE).stderr.splitlines()
    assert len(plain) == 1
    assert plain[0].startswith(f"explain source={SENTENCE} mode=plain verdict=reported keyword=right ")


# ------------------------------------------------------------------ short files

def _cut(tmp_path: Path, clip: str, seconds: float) -> Path:
    rate, audio = read_clip(clip)
    path = tmp_path / f"{Path(clip).stem}_{seconds}.wav"
    scipy.io.wavfile.write(path, rate, audio[: int(round(seconds * rate))])
    return path


@pytest.mark.parametrize("mode", ["command", "plain"])
def test_a_clip_shorter_than_one_window_is_padded_and_judged(run_cli, tmp_path, mode):
    clips = [_cut(tmp_path, "keywords/down.wav", s) for s in (0.6, 0.8, 0.998)]
    clips.append(_cut(tmp_path, "keywords/yes.wav", 0.7))
    result = run_cli("detect", "--mode", mode, *clips)
    assert result.returncode == 0, result.stderr
    assert [(Path(d["source"]).name, d["keyword"]) for d in detections(result.stdout)] == [
        (c.name, "yes" if c.name.startswith("yes") else "down") for c in clips]


def test_a_very_short_clip_gives_nothing_and_no_error(run_cli, tmp_path):
    result = run_cli("detect", _cut(tmp_path, "keywords/down.wav", 0.2), _cut(tmp_path, "keywords/down.wav", 0.01))
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


# ------------------------------------------------------------------ closed stdout

@pytest.mark.parametrize("args", [["detect", str(YES)], ["run"]])
def test_closed_stdout_is_one_line_and_exit_2(cli_env, args):
    result = subprocess.run(["bash", "-c", 'exec "$@" >&-', "bash", *kws_command(), *args],
                            stderr=subprocess.PIPE, text=True, env=cli_env, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("kws-stream: stdout is closed")


def test_closed_stdout_does_not_break_config_check(cli_env):
    conf = Path(__file__).resolve().parents[1] / "config" / "kws-stream.toml"
    result = subprocess.run(["bash", "-c", 'exec "$@" >&-', "bash", *kws_command(), "config", "check", str(conf)],
                            stderr=subprocess.PIPE, text=True, env=cli_env, timeout=60)
    assert result.returncode == 0 and result.stderr == ""


# ------------------------------------------------------------------ the daemon: same file, hostile reloads

def test_run_uses_the_user_config_and_a_hostile_reload_keeps_it(xdg_env, tmp_path):
    """`run` without --config reads $XDG_CONFIG_HOME's file (and says so); SIGHUP with that
    file rewritten as Latin-1, then nested 5000 deep, is one log line each, the old
    config is kept and the daemon keeps spotting (issue 15 item 2, the config half)."""

    from test_daemon import play_clip

    from testsupport.daemon_process import DaemonProcess
    from testsupport.vmic import VirtualMic

    path = user_config(xdg_env, '[detection]\nkeywords = ["yes"]\n')
    with VirtualMic(tmp_path / "vmic", rate=MICRONET.sample_rate, channels=1) as mic:
        env = {**mic.env, **{k: xdg_env[k] for k in ("XDG_DATA_HOME", "XDG_CONFIG_HOME")}}
        daemon = DaemonProcess([*kws_command(), "run"], env)
        try:
            daemon.wait_log(f"event=config file={path}", timeout=20)
            daemon.wait_log("event=ready", timeout=20)
            for hostile, message in ((b"[detection]\nthreshold = 0.5 # caf\xe9\n", "not UTF-8"),
                                     (b"x = " + b"[" * 5000 + b"]" * 5000, "nested 5000 levels deep")):
                path.write_bytes(hostile)
                assert message in daemon.reload("event=reload_rejected", timeout=20)
            play_clip(mic, "keywords/right_left_up.wav")  # not in the kept allow-list
            play_clip(mic, "keywords/yes.wav")
            assert [d["keyword"] for _, d in daemon.detections(1, timeout=10)] == ["yes"]
        finally:
            assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


# ------------------------------------------------------------------ the README matches the parser

def _options(parser) -> dict[str, set[str]]:
    """Every (sub)command's path -> its option strings, walking argparse's subparsers."""
    import argparse

    found: dict[str, set[str]] = {}

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        found[path] = {o for a in p._actions for o in a.option_strings}
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}".strip())

    walk(parser, "")
    return found


def test_the_readme_options_are_the_parsers():
    from kws_stream.cli import build_parser

    options = _options(build_parser())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    using = readme[readme.index("## Using it"):readme.index("### Output schema")]
    config = readme[readme.index("## Configuration"):readme.index("## Models")]
    everywhere = set().union(*options.values())
    for option in set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", using + config)):
        assert option in everywhere, option
    for command in ("detect", "run", "serve wyoming"):
        assert {"--mode", "--model", "--threshold", "--config"} <= options[command], command
    assert "--explain" in options["detect"] and "--version" in options[""]
    assert not any("--model-source" in o for o in options.values())


def test_the_readme_module_table_names_every_module():
    """The README's "How it works" table is one row per module of kws_stream/: a module added
    without a row (or a row for a module that is gone) fails here."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    table = readme[readme.index("## How it works"):readme.index("## Documentation")]
    named = set(re.findall(r"`(\w+)\.py`", table))
    modules = {p.stem for p in (root / "kws_stream").glob("*.py")} - {"__init__", "__main__"}
    assert named == modules, (sorted(modules - named), sorted(named - modules))
