"""End to end: the real `kws-stream enroll`, `words list|remove` and `detect` with enrolled
words, on the real recordings of ../shared/audio/custom-words, each test in a data home of
its own (the models linked into it), so no enrolled word reaches another test."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soxr
from conftest import AUDIO, detections

from kws_stream.wordstore import SUFFIX
from testsupport.audio import read_wav, write_wav

WORDS = AUDIO / "custom-words"
TAKES = [WORDS / f"computer_{i:03d}.wav" for i in range(5)]
HELD_OUT = WORDS / "computer_020.wav"  # not a take; the placeholder matcher scores it well above its threshold
OTHER = WORDS / "jarvis_010.wav"


def words_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "kws-stream" / "words"


def one_line_error(result, code: int = 2) -> str:
    """The single error line of a refused command (no traceback; log lines may precede it)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if " level=" not in line]
    assert len(lines) == 1 and lines[0].startswith("kws-stream: "), result.stderr
    return lines[0]


def enrol(run_cli, env, name="computer", takes=TAKES, *more: str):
    return run_cli("enroll", name, *takes, *more, env=env)


def test_enrol_from_files_then_detect_list_and_remove(run_cli, env):
    result = enrol(run_cli, env)
    assert result.returncode == 0, result.stderr
    saved = words_dir(env) / f"computer{SUFFIX}"
    assert saved.is_file() and "enrolled computer from 5 takes" in result.stdout and str(saved) in result.stdout
    assert "Traceback" not in result.stderr

    found = run_cli("detect", HELD_OUT, OTHER, env=env)
    assert found.returncode == 0, found.stderr
    assert [(d["keyword"], Path(d["source"]).name) for d in detections(found.stdout)] == [("computer", HELD_OUT.name)]
    assert "event=words_loaded words=computer" in found.stderr

    listed = run_cli("words", "list", env=env)
    assert listed.returncode == 0 and listed.stdout.split()[0] == "computer" and str(saved) in listed.stdout

    removed = run_cli("words", "remove", "computer", env=env)
    assert removed.returncode == 0, removed.stderr
    assert not saved.exists()
    assert run_cli("words", "list", env=env).stdout == ""
    assert detections(run_cli("detect", HELD_OUT, env=env).stdout) == []
    assert "no enrolled word 'computer'" in one_line_error(run_cli("words", "remove", "computer", env=env), 1)


def test_bad_takes_are_each_named_in_one_line_and_nothing_is_saved(run_cli, env, tmp_path):
    silence = AUDIO / "negatives" / "silence_1000ms.wav"
    clipped = tmp_path / "clipped.wav"
    write_wav(clipped, np.clip(read_wav(TAKES[1]).astype(np.int32) * 30, -32768, 32767).astype(np.int16))
    two = tmp_path / "two_words.wav"  # "computer ... computer" in one take
    write_wav(two, np.concatenate([read_wav(TAKES[2]), read_wav(TAKES[3])]))
    line = one_line_error(enrol(run_cli, env, "computer", [TAKES[0], silence, clipped, two, TAKES[4]]))
    assert "take 1" not in line and "take 5" not in line
    assert "take 2 (silence_1000ms.wav): too quiet" in line
    assert "take 3 (clipped.wav): clipped" in line
    assert "take 4 (two_words.wav):" in line and "separate" in line
    assert not words_dir(env).exists() or not os.listdir(words_dir(env))


def test_a_missing_file_or_too_few_takes_is_one_line(run_cli, env, tmp_path):
    line = one_line_error(enrol(run_cli, env, "computer", [*TAKES[:4], tmp_path / "nope.wav"]))
    assert "nope.wav: no such file" in line
    assert "from 3 to 10 recordings" in one_line_error(enrol(run_cli, env, "computer", TAKES[:2]))
    assert "from 3 to 10 recordings" in one_line_error(enrol(run_cli, env, "computer", TAKES * 3))
    assert "or --record" in one_line_error(enrol(run_cli, env, "computer", []))
    assert "give --record too" in one_line_error(enrol(run_cli, env, "computer", TAKES, "--takes", "3"))
    assert "not both" in one_line_error(enrol(run_cli, env, "computer", TAKES, "--record"))
    assert "from 3 to 10 takes" in one_line_error(enrol(run_cli, env, "computer", [], "--record", "--takes", "2"))
    assert not words_dir(env).exists()


def test_takes_at_another_rate_and_in_stereo_are_resampled_as_detect_reads_them(run_cli, env, tmp_path):
    import scipy.io.wavfile

    copies = []
    for k, take in enumerate(TAKES):
        x = soxr.resample(read_wav(take).astype(np.float32) / 65536, 16000, 44100)  # -6 dB: no overshoot clips
        path = tmp_path / f"take{k}_44k_stereo.wav"
        scipy.io.wavfile.write(path, 44100, np.round(np.stack([x, x], axis=1) * 32767).astype(np.int16))
        copies.append(path)
    assert enrol(run_cli, env, "computer", copies).returncode == 0
    found = run_cli("detect", HELD_OUT, env=env)
    assert [d["keyword"] for d in detections(found.stdout)] == ["computer"], found.stderr


@pytest.mark.parametrize("name, message", [
    ("yes", "'yes' is a keyword of model micronet-l already"),
    ("_silence_", "is a keyword of model micronet-l already"),
    ("Smart-Mirror", "bad word name 'Smart-Mirror'"),
])
def test_a_name_clashing_with_a_keyword_or_badly_formed_is_refused(run_cli, env, name, message):
    assert message in one_line_error(enrol(run_cli, env, name))
    assert not words_dir(env).exists()


def test_a_corrupt_word_file_is_one_warning_and_the_other_words_still_work(run_cli, env):
    assert enrol(run_cli, env).returncode == 0
    broken = words_dir(env) / f"jarvis{SUFFIX}"
    broken.write_bytes(b"\x00garbage, not a word")
    found = run_cli("detect", HELD_OUT, env=env)
    assert found.returncode == 0, found.stderr
    assert [d["keyword"] for d in detections(found.stdout)] == ["computer"]
    warnings = [line for line in found.stderr.splitlines() if "level=WARNING" in line]
    assert len(warnings) == 1 and "word=jarvis" in warnings[0] and str(broken) in warnings[0], found.stderr
    listed = run_cli("words", "list", env=env)
    assert "jarvis" in listed.stdout and "UNREADABLE" in listed.stdout and listed.returncode == 0


def test_the_config_names_enrolled_words_and_explain_gives_their_scores(run_cli, env, tmp_path):
    assert enrol(run_cli, env).returncode == 0
    config = tmp_path / "only_computer.toml"
    config.write_text('[detection]\nkeywords = ["computer"]\n\n[detection.thresholds]\ncomputer = 0.5\n')
    found = run_cli("detect", "--config", config, "--explain", AUDIO / "keywords" / "yes.wav", HELD_OUT, OTHER, env=env)
    assert found.returncode == 0, found.stderr
    assert [(d["keyword"], d["threshold"]) for d in detections(found.stdout)] == [("computer", 0.5)]
    scores = [line for line in found.stderr.splitlines() if "kind=enrolled" in line]
    assert any("verdict=reported keyword=computer" in s and HELD_OUT.name in s and "threshold=0.50" in s for s in scores)
    assert any("verdict=rejected keyword=computer" in s and OTHER.name in s for s in scores), scores

    checked = run_cli("config", "check", config, env=env)
    assert checked.returncode == 0 and checked.stdout.strip() == f"{config}: ok", checked.stderr

    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[detection]\nkeywords = ["jarvis"]\n')
    line = one_line_error(run_cli("detect", "--config", unknown, HELD_OUT, env=env))
    assert "'jarvis' is not a keyword" in line
    assert "'jarvis' is not a keyword" in one_line_error(run_cli("config", "check", unknown, env=env))


def test_a_take_the_spotter_would_never_judge_is_refused_by_the_configs_command_rules(run_cli, env, tmp_path):
    """A word longer than [command] max_word is never a command-shaped burst, so it would be
    enrolled and never reported: refused, naming the setting."""
    config = tmp_path / "short_words.toml"
    config.write_text("[command]\nmax_word = 0.3\n")
    line = one_line_error(enrol(run_cli, env, "computer", TAKES, "--config", str(config)))
    assert line.count("the spotter hears no word alone in it") == 5 and "max_word" in line
    assert not words_dir(env).exists()
