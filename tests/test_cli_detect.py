"""End to end: the real `kws-stream detect` command on the real clips with the real models."""

import subprocess

import numpy as np
import pytest
import scipy.io.wavfile
import soxr

from conftest import AUDIO, SHARED_MODELS, detections, kws_command, read_clip

KEYWORD_CLIPS = {
    "down.wav": ["down"],
    "no_1000ms.wav": ["no"],
    "right.wav": ["right"],
    "right_left_up.wav": ["right", "left", "up"],
    "yes.wav": ["yes"],
    "yes_1000ms.wav": ["yes"],
    "yes_no_go_stop.wav": ["yes", "no", "go", "stop"],
}
QUIET_NEGATIVES = ["silence_1000ms.wav", "noise_1000ms.wav", "near_silence.wav", "marvin_617de221_0.wav"]
MODELS = {"micronet-l": "kws_micronet_l.tflite", "micronet-m": "kws_micronet_m.tflite"}


def expected_for(model: str, clip: str) -> list[str]:
    if model == "micronet-m" and clip == "right.wav":
        return []  # SPEC.md: MicroNet-M misses this quiet recording (top score 0.48)
    return KEYWORD_CLIPS[clip]


@pytest.mark.parametrize("model", MODELS)
def test_every_keyword_clip_yields_its_keywords_once_in_order_inside_their_second(run_cli, model):
    files = [str(AUDIO / "keywords" / clip) for clip in KEYWORD_CLIPS]
    result = run_cli("detect", "--model", model, *files)
    assert result.returncode == 0, result.stderr
    found = detections(result.stdout)
    for clip in KEYWORD_CLIPS:
        mine = [d for d in found if d["source"].endswith("/" + clip)]
        assert [d["keyword"] for d in mine] == expected_for(model, clip), clip
        for second, d in enumerate(mine):  # word k of a joined clip is in second k
            assert second <= d["end"] <= second + 1.0 + 1e-6, (clip, d)
            assert d["end"] - d["start"] == pytest.approx(1.0)
            assert 0.7 <= d["score"] <= 1.0 and d["model"] == model


@pytest.mark.parametrize("model", MODELS)
def test_quiet_negatives_yield_nothing(run_cli, model):
    result = run_cli("detect", "--model", model, *(AUDIO / "negatives" / f for f in QUIET_NEGATIVES))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("model", MODELS)
def test_a_model_from_a_user_given_path(run_cli, tmp_path, model):
    copy = tmp_path / "somewhere" / "model.tflite"
    copy.parent.mkdir()
    copy.write_bytes((SHARED_MODELS / MODELS[model]).read_bytes())
    result = run_cli("detect", "--model", copy, AUDIO / "keywords/right_left_up.wav")
    assert result.returncode == 0, result.stderr
    assert [(d["keyword"], d["model"]) for d in detections(result.stdout)] == [
        ("right", model), ("left", model), ("up", model)]


def _resampled_copy(tmp_path, rate: int, channels: int = 1):
    _, audio = read_clip("keywords/right_left_up.wav")
    x = soxr.resample(audio.astype(np.float32) / 32768, 16000, rate)
    if channels == 2:
        x = np.stack([x, x * 0.5], axis=1)
    path = tmp_path / f"rlu_{rate}_{channels}.wav"
    scipy.io.wavfile.write(path, rate, np.round(x * 32767).astype(np.int16))
    return path


@pytest.mark.parametrize("rate, channels", [(44100, 1), (48000, 2)])
def test_resampled_copies_give_the_same_keywords(run_cli, tmp_path, rate, channels):
    result = run_cli("detect", _resampled_copy(tmp_path, rate, channels))
    assert result.returncode == 0, result.stderr
    assert [d["keyword"] for d in detections(result.stdout)] == ["right", "left", "up"]


def test_an_8k_copy_runs(run_cli, tmp_path):
    result = run_cli("detect", _resampled_copy(tmp_path, 8000))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_text_format(run_cli):
    result = run_cli("detect", "--format", "text", AUDIO / "keywords/yes.wav")
    assert result.returncode == 0
    assert result.stdout.split()[0:2] == ["yes", "0.99"]


def test_bad_files_are_one_line_each_exit_2_and_the_rest_still_processed(run_cli, tmp_path):
    not_wav = tmp_path / "notes.wav"
    not_wav.write_text("hello\n" * 50)
    truncated = tmp_path / "cut.wav"
    truncated.write_bytes((AUDIO / "keywords/yes.wav").read_bytes()[:12000])
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.wav"
    result = run_cli("detect", not_wav, AUDIO / "keywords/yes.wav", truncated, empty, missing,
                     AUDIO / "keywords/down.wav")
    assert result.returncode == 2
    assert [d["keyword"] for d in detections(result.stdout)] == ["yes", "down"]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4, result.stderr
    for line, path in zip(lines, (not_wav, truncated, empty, missing)):
        assert line.startswith(f"kws-stream: {path}: ")
    assert "Traceback" not in result.stderr


def test_corrupt_installed_model_is_one_line_with_the_fix(run_cli, cli_env, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "kws_micronet_l.tflite").write_bytes((SHARED_MODELS / "kws_micronet_l.tflite").read_bytes()[:-1] + b"x")
    result = run_cli("detect", "--model-dir", models, AUDIO / "keywords/yes.wav")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"kws-stream: model file {models}/kws_micronet_l.tflite is corrupt (SHA-1 mismatch): "
        f"reinstall it with `kws-stream models install micronet-l --model-dir {models}`"]


def test_wrong_shape_model_from_a_user_manifest_is_one_line(run_cli, tmp_path):
    from tflite_fixtures import passthrough_model

    passthrough_model(tmp_path / "wrong.tflite", (1, 40, 10, 1))
    (tmp_path / "m.toml").write_text('[models.wrong]\npath = "wrong.tflite"\nlabels = ["a", "b"]\n')
    result = run_cli("detect", "--manifest", tmp_path / "m.toml", "--model", "wrong", AUDIO / "keywords/yes.wav")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "takes int8 [1, 40, 10, 1]" in result.stderr


def test_missing_model_is_installed_on_first_use_from_the_configured_source(run_cli, tmp_path):
    (tmp_path / "c.toml").write_text(f'[model]\nsource = "{SHARED_MODELS}"\n')
    result = run_cli("detect", "--config", tmp_path / "c.toml", "--model-dir", tmp_path / "fresh",
                     AUDIO / "keywords/yes.wav")
    assert result.returncode == 0, result.stderr
    assert [d["keyword"] for d in detections(result.stdout)] == ["yes"]
    assert (tmp_path / "fresh" / "kws_micronet_l.tflite").is_file()


def test_closed_stdout_ends_quietly(cli_env):
    """`kws-stream detect many.wav | head -1`: the reader goes away after one line."""
    files = [str(AUDIO / "keywords" / c) for c in KEYWORD_CLIPS] * 20
    proc = subprocess.Popen([*kws_command(), "detect", *files], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env)
    first = proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert first.startswith(b'{"keyword": ')
    assert proc.returncode == 0
    assert err == b""


def test_models_list_and_install(run_cli, tmp_path):
    result = run_cli("models", "list", "--model-dir", tmp_path)
    assert result.returncode == 0
    assert "micronet-l" in result.stdout and "not installed" in result.stdout
    result = run_cli("models", "install", "micronet-m", "--from", SHARED_MODELS, "--model-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    listing = run_cli("models", "list", "--model-dir", tmp_path).stdout
    assert any(line.split()[0] == "micronet-m" and "installed" in line and "not" not in line
               for line in listing.splitlines())
