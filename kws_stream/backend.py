"""The inference backend: one small interface over the TFLite interpreters.

`ai-edge-litert` is the default; `tflite-runtime` (the only choice on 32-bit Pi OS)
is used when it is what is installed. Both expose the same Interpreter API.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KwsError
from .features import MICRONET

INPUT_SHAPE = MICRONET.input_shape  # (1, 49, 10, 1): the MFCC front end's window


def _interpreter_class() -> tuple[Any, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter, "tflite-runtime"
    except ImportError:
        raise KwsError(
            "no TFLite runtime is installed: pip install ai-edge-litert "
            "(or tflite-runtime on 32-bit Pi OS)"
        ) from None


class KeywordModel:
    """A loaded int8 keyword model: float MFCC window in, class probabilities out."""

    def __init__(self, path: Path, labels: tuple[str, ...], num_threads: int = 1) -> None:
        interpreter_class, self.runtime = _interpreter_class()
        try:
            with native_stderr_silenced():
                self._interpreter = interpreter_class(model_path=str(path), num_threads=num_threads)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise KwsError(f"model {path} is not a valid TFLite model ({_first_line(exc)}): "
                           "reinstall it with `kws-stream models install`") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise KwsError(f"model {path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                           "a keyword model needs exactly one of each")
        inp, out = inputs[0], outputs[0]
        if tuple(inp["shape"]) != INPUT_SHAPE or inp["dtype"] != np.int8:
            raise KwsError(f"model {path} takes {np.dtype(inp['dtype']).name} {_shape(inp)}; "
                           f"the MFCC front end produces int8 {list(INPUT_SHAPE)}")
        if out["dtype"] != np.int8 or tuple(out["shape"]) != (1, len(labels)):
            raise KwsError(f"model {path} outputs {np.dtype(out['dtype']).name} {_shape(out)} "
                           f"but its manifest lists {len(labels)} labels; fix the labels list")
        self.labels = labels
        self._input_index = inp["index"]
        self._output_index = out["index"]
        self.input_scale, self.input_zero_point = (float(v) for v in inp["quantization"])
        self.output_scale, self.output_zero_point = (float(v) for v in out["quantization"])
        if self.input_scale == 0.0 or self.output_scale == 0.0:
            raise KwsError(f"model {path} is not quantised; kws-stream needs an int8 model")
        self._input = np.zeros(INPUT_SHAPE, dtype=np.int8)

    def quantize(self, window: np.ndarray) -> np.ndarray:
        """(49, 10) float MFCC -> int8 model input, as the training pipeline did."""
        q = np.round(window / self.input_scale) + self.input_zero_point
        return np.clip(q, -128, 127).astype(np.int8).reshape(INPUT_SHAPE)

    def logits(self, window: np.ndarray) -> np.ndarray:
        """Dequantised raw logits for one (49, 10) float MFCC window."""
        self._interpreter.set_tensor(self._input_index, self.quantize(window))
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output_index)[0]
        return (raw.astype(np.float32) - self.output_zero_point) * self.output_scale

    def probabilities(self, window: np.ndarray) -> np.ndarray:
        """Softmax over the logits (the model outputs raw logits, not probabilities)."""
        logits = self.logits(window)
        e = np.exp(logits - logits.max())
        return e / e.sum()


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """The runtime's C++ code prints "INFO: Created TensorFlow Lite XNNPACK delegate"
    straight to fd 2 on every load; our logs are one line per event, so hide it.
    Load failures still surface as exceptions, reported in our own words."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _shape(details: dict[str, Any]) -> list[int]:
    return [int(x) for x in details["shape"]]
