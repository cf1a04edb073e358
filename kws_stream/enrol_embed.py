"""openWakeWord's general speech embedding, the feature enrolled words are matched on.

Two small TFLite models shipped in the `pyopen-wakeword` wheel (Apache-2.0; the embedding
is Google's speech_embedding, Apache-2.0): a mel spectrogram (32 bands, 10 ms hop) and an
embedding network that turns 76 mel frames (775 ms) into 96 numbers. One embedding is
taken every 8 mel frames (80 ms), as openWakeWord does. Measured against MicroNet's own
MFCC under the same DTW (`benchmarks.enrolled_words`), it is what separates a user's word
from other speech: see docs/enrolled-words.md.

The models run through the same TFLite runtime as the keyword model (`backend`); only
their files come from pyopen-wakeword (x86_64 and aarch64 wheels).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .backend import _interpreter_class, native_stderr_silenced
from .errors import KwsError

MEL_FRAMES = 76  # mel frames one embedding sees (775 ms)
EMBEDDING_STEP = 8  # mel frames between embeddings (80 ms)
EMBEDDING_SIZE = 96
MIN_SAMPLES = 4000  # 0.25 s: shorter audio is padded with silence
MEL_MODEL = "melspectrogram.tflite"
EMBEDDING_MODEL = "embedding_model.tflite"
INSTALL_HINT = ("enrolled words need the speech embedding models of pyopen-wakeword: "
                "pip install 'pyopen-wakeword>=1.1,<2' (wheels for x86_64 and aarch64 only)")


def models_dir() -> Path:
    """Where pyopen-wakeword keeps its models; KwsError (what to install) if it is missing."""
    spec = importlib.util.find_spec("pyopen_wakeword")
    if spec is None or spec.origin is None:
        raise KwsError(INSTALL_HINT)
    folder = Path(spec.origin).parent / "models"
    for name in (MEL_MODEL, EMBEDDING_MODEL):
        if not (folder / name).is_file():
            raise KwsError(f"{folder / name} is missing; {INSTALL_HINT}")
    return folder


class SpeechEmbedding:
    """16 kHz int16 audio in, one 96-number embedding per 80 ms out. Thread-safe (a lock:
    the interpreters are not), so one per process serves every stream."""

    def __init__(self, folder: Path | None = None) -> None:
        folder = models_dir() if folder is None else folder
        interpreter_class, _ = _interpreter_class()
        try:
            with native_stderr_silenced():
                self._mel = interpreter_class(model_path=str(folder / MEL_MODEL), num_threads=1)
                self._embedding = interpreter_class(model_path=str(folder / EMBEDDING_MODEL), num_threads=1)
        except (ValueError, RuntimeError) as exc:
            raise KwsError(f"the speech embedding models in {folder} do not load ({exc}); "
                           "reinstall pyopen-wakeword") from None
        self._lock = threading.Lock()
        self._mel_length = -1
        self._batch = -1

    @staticmethod
    def _run(interpreter: Any, data: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], data)
        interpreter.invoke()
        out: np.ndarray = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        return out

    def mels(self, audio: np.ndarray) -> np.ndarray:
        """(frames, 32) mel features scaled as the embedding model expects."""
        if self._mel_length != len(audio):
            self._mel.resize_tensor_input(0, [1, len(audio)])
            self._mel.allocate_tensors()
            self._mel_length = len(audio)
        mel: np.ndarray = self._run(self._mel, audio.astype(np.float32)[np.newaxis])[0, 0]
        return mel / 10.0 + 2.0

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """(n, 96) float32 embeddings of `audio`: one per 80 ms, each of the 775 ms up to
        it (at least one: audio shorter than that is padded with its last mel frame)."""
        audio = np.asarray(audio, dtype=np.int16)
        if len(audio) < MIN_SAMPLES:  # the mel model needs a few frames; a caller's burst never is this short
            audio = np.concatenate([audio, np.zeros(MIN_SAMPLES - len(audio), np.int16)])
        with self._lock:
            mel = self.mels(audio)
            if len(mel) < MEL_FRAMES:
                mel = np.concatenate([mel, np.repeat(mel[-1:], MEL_FRAMES - len(mel), axis=0)])
            windows = np.lib.stride_tricks.sliding_window_view(mel, MEL_FRAMES, axis=0)[::EMBEDDING_STEP]
            batch = np.ascontiguousarray(windows.transpose(0, 2, 1)[..., np.newaxis], dtype=np.float32)
            if self._batch != len(batch):
                self._embedding.resize_tensor_input(0, list(batch.shape))
                self._embedding.allocate_tensors()
                self._batch = len(batch)
            out: np.ndarray = self._run(self._embedding, batch)
            return out.reshape(len(batch), EMBEDDING_SIZE).astype(np.float32)
