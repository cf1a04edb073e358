"""The second judge of command mode: evidence that does not come from MicroNet (issue 22).

Consulted only for a candidate command mode's rules accepted (so its cost is per command,
not per hop), it must agree before the keyword is reported. It listens to
`seconds` of audio ending `after` seconds after the end of the window that fired: always the same
span relative to the candidate, whenever the rules decided (so `detect` and `detect --explain`,
whose model runs at every hop and decides sooner, judge the same audio). It hears it through
openWakeWord's general speech embedding, a model trained on far more speech than Speech
Commands: its melspectrogram.tflite and embedding_model.tflite (shipped in the
pyopen-wakeword wheel), giving a (T, 96) sequence of embeddings, one per 80 ms. A small
1-D convolution over that sequence (3 embeddings wide, ReLU, max- and mean-pooled over
time), with MicroNet's smoothed score and the keyword beside it, gives a logit; the word
is reported if it reaches the threshold. The weights (`judge_weights.npz`, an average of a
few models trained with different seeds) and the threshold come from
`python -m benchmarks.judge_train`; how they were chosen and what they give: docs/judge.md.

Where the embedding models or a TFLite runtime cannot be installed (no pyopen-wakeword
wheel for 32-bit Pi OS), `load_judge` returns None and says why once: command mode then
works as without the judge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .enrol_embed import SpeechEmbedding, models_dir
from .errors import KwsError
from .features import MICRONET

log = logging.getLogger(__name__)

WEIGHTS = Path(__file__).with_name("judge_weights.npz")
KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
AFTER_WINDOW_S = 0.25  # the audio judged ends this long after the window that fired (weights without `after`)


@dataclass(frozen=True)
class JudgeVerdict:
    accepted: bool
    score: float  # the judge's logit
    threshold: float

    def __str__(self) -> str:
        return f"score {self.score:.2f} {'>=' if self.accepted else '<'} threshold {self.threshold:.2f}"


def embedding_models() -> Path | None:
    """The folder holding openWakeWord's melspectrogram and embedding models (from the
    pyopen-wakeword wheel, found without importing it), or None."""
    try:
        return models_dir()
    except KwsError:
        return None


class Judge:
    """`judge(audio, keyword, score)`: the verdict on a candidate the rules accepted, from its
    `span` of audio (int16, the last `samples`; zeros before if shorter).
    It knows MicroNet's ten `keywords` only (a user's own model's words are not judged)."""

    keywords = KEYWORDS

    def __init__(self, folder: Path, weights: Path = WEIGHTS) -> None:
        w = np.load(weights)
        self.seconds = float(w["seconds"])
        self.after = float(w["after"]) if "after" in w.files else AFTER_WINDOW_S
        self.threshold = float(w["threshold"])
        self._w = {k: w[k] for k in w.files}
        self._k = int(w["kernel"])
        self._embed = SpeechEmbedding(folder)  # thread-safe: one judge serves every stream of a process

    @property
    def samples(self) -> int:
        return int(round(self.seconds * MICRONET.sample_rate))

    def span(self, window_end: int) -> tuple[int, int]:
        """The stream positions [start, end) of the audio judged for a candidate whose window
        ends at `window_end`: the word's, never the schedule's."""
        end = window_end + int(round(self.after * MICRONET.sample_rate))
        return end - self.samples, end

    def score(self, embeddings: np.ndarray, keyword: str, score: float) -> float:
        w, k = self._w, self._k
        x = (embeddings - w["mu"]) / w["sd"]
        t = len(x) - k + 1
        u = np.concatenate([x[i:i + t] for i in range(k)], axis=1)  # k embeddings side by side
        aux = np.zeros(1 + len(KEYWORDS))
        aux[0] = np.log(score + 1e-4)
        aux[1 + KEYWORDS.index(keyword)] = 1.0
        aux = (aux - w["amu"]) / w["asd"]
        logits = []
        for i in range(len(w["wc"])):  # the ensemble's members
            act = np.maximum(u @ w["wc"][i] + w["bc"][i], 0.0)
            logits.append(np.concatenate([act.max(0), act.mean(0)]) @ w["v"][i] + aux @ w["wa"][i] + w["c"][i])
        return float(np.mean(logits))

    def judge(self, audio: np.ndarray, keyword: str, score: float) -> JudgeVerdict:
        n = self.samples
        audio = np.asarray(audio, dtype=np.int16)[-n:]
        if len(audio) < n:
            audio = np.concatenate([np.zeros(n - len(audio), dtype=np.int16), audio])
        embeddings = self._embed.embed(audio)
        logit = self.score(embeddings, keyword, score)
        return JudgeVerdict(logit >= self.threshold, logit, self.threshold)


def load_judge() -> Judge | None:
    """The judge, or None (logged once, with why) where it cannot run."""
    folder = embedding_models()
    if folder is None:
        log.warning("command mode runs without the second judge: openWakeWord's speech embedding models "
                    "(pip install pyopen-wakeword; no wheel for 32-bit ARM) are not installed")
        return None
    try:
        judge = Judge(folder)
    except (KwsError, OSError, ValueError, RuntimeError, KeyError) as exc:
        log.warning("command mode runs without the second judge: %s", str(exc).splitlines()[0])
        return None
    log.debug("event=judge models=%s threshold=%.2f", folder, judge.threshold)
    return judge
