"""The library behind `kws-stream detect`: `open_model` and `detect_files`."""

from __future__ import annotations

import pytest
from conftest import AUDIO, detections

from kws_stream import config as cfg
from kws_stream.config import ConfigError
from kws_stream.detect import FileError, detect_files
from kws_stream.events import Detection
from kws_stream.models import open_model


def test_open_model_loads_the_configured_model_by_its_manifest_name(model_dir):
    config = cfg.override(cfg.Config(), {"model.name": "micronet-m", "model.dir": str(model_dir)})
    model, name = open_model(config, progress=False)
    assert name == "micronet-m"
    assert model.labels[:2] == ("down", "go")


def test_open_model_refuses_an_unknown_name_as_a_bad_value(model_dir):
    config = cfg.override(cfg.Config(), {"model.name": "micronet-xl", "model.dir": str(model_dir)})
    with pytest.raises(ConfigError, match="unknown model 'micronet-xl'"):
        open_model(config, progress=False)


def test_detect_files_gives_what_the_cli_prints_and_goes_on_after_a_bad_file(model_dir, run_cli, tmp_path):
    clips = [str(AUDIO / "keywords/down.wav"), str(tmp_path / "missing.wav"), str(AUDIO / "keywords/right_left_up.wav")]
    config = cfg.override(cfg.Config(), {"model.dir": str(model_dir)})
    model, name = open_model(config, progress=False)
    found = list(detect_files(clips, model, name, config.pipeline_params()))

    errors = [f for f in found if isinstance(f, FileError)]
    assert [(e.path, e.error.exit_code) for e in errors] == [(clips[1], 2)]
    assert found.index(errors[0]) > 0  # in file order: after the first file's detections
    spotted = [f for f in found if isinstance(f, Detection)]
    assert [d.keyword for d in spotted] == ["down", "right", "left", "up"]

    cli = run_cli("detect", *clips)
    assert cli.returncode == 2
    assert detections(cli.stdout) == [d.event() for d in spotted]
