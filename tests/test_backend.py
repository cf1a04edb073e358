import numpy as np
import pytest
from conftest import LABELS, SHARED_MODELS, read_clip

from kws_stream.backend import KeywordModel
from kws_stream.errors import KwsError
from kws_stream.features import MICRONET, MfccExtractor
from testsupport.tflite_fixtures import passthrough_model

# SPEC.md's table; the backend must read these from the model, not hard-code them.
QUANT = {"kws_micronet_l.tflite": (0.05110505, -63), "kws_micronet_m.tflite": (0.05605359, -54)}


@pytest.mark.parametrize("file", sorted(QUANT))
def test_quantisation_is_read_from_the_model(file):
    model = KeywordModel(SHARED_MODELS / file, LABELS)
    assert model.input_scale == pytest.approx(0.20109497)
    assert model.input_zero_point == -5
    assert (model.output_scale, model.output_zero_point) == (pytest.approx(QUANT[file][0]), QUANT[file][1])


def test_probabilities_are_a_softmax_of_dequantised_logits():
    model = KeywordModel(SHARED_MODELS / "kws_micronet_l.tflite", LABELS)
    _, audio = read_clip("keywords/yes.wav")
    window = MfccExtractor().window(audio)
    logits = model.logits(window)
    probs = model.probabilities(window)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(), rtol=1e-5)
    assert LABELS[int(np.argmax(probs))] == "yes"
    assert probs.max() > 0.9  # logits would be > 1: they are not probabilities


def test_quantize_rounds_and_clamps_like_training():
    model = KeywordModel(SHARED_MODELS / "kws_micronet_m.tflite", LABELS)
    window = np.zeros(MICRONET.input_shape[1:3])
    window[0, :3] = [-1000.0, 1000.0, 0.3017]  # 0.3017 / 0.20109497 = 1.5003 -> 2
    q = model.quantize(window)
    assert q.dtype == np.int8 and q.shape == MICRONET.input_shape
    assert list(q[0, 0, :3, 0]) == [-128, 127, -3]
    assert q[0, 1, 0, 0] == -5


def test_wrong_input_shape_is_refused_with_what_was_expected(tmp_path):
    path = passthrough_model(tmp_path / "wrong.tflite", (1, 40, 10, 1))
    with pytest.raises(KwsError, match=r"takes int8 \[1, 40, 10, 1\].*produces int8 \[1, 49, 10, 1\]"):
        KeywordModel(path, LABELS)


def test_float_model_is_refused(tmp_path):
    path = passthrough_model(tmp_path / "float.tflite", MICRONET.input_shape, np.float32)
    with pytest.raises(KwsError, match="float32"):
        KeywordModel(path, LABELS)


def test_label_count_must_match_the_output(tmp_path):
    with pytest.raises(KwsError, match="12 labels"):
        KeywordModel(passthrough_model(tmp_path / "p.tflite", MICRONET.input_shape), LABELS)


def test_corrupt_file_is_one_clear_error(tmp_path):
    path = tmp_path / "corrupt.tflite"
    path.write_bytes((SHARED_MODELS / "kws_micronet_l.tflite").read_bytes()[:5000])
    with pytest.raises(KwsError, match="not a valid TFLite model"):
        KeywordModel(path, LABELS)
