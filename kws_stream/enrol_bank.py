"""The bank of negative speech an enrolled word is calibrated against.

Each template (a take's embeddings) gets a radius at enrolment: its DTW distance to the
nearest stretch of the bank, real running speech in which the word is not said. A burst
matches the template when it is closer to it than that (`enrol.WordMatcher.score`). The
radius is what makes one threshold fit every word: a word whose takes sound like common
speech ("jarvis" like "yes", "right") gets a tighter radius than a word that does not.

The bank (`enrol_bank.npz`, ~2 MB) holds the speech embeddings of the *dev* half of
shared/audio/real-dev (LibriSpeech train-clean-100 and AMI meeting excerpts, both CC BY
4.0), built by `python -m benchmarks.enrolled_words --build-bank`; the validation half
is never in it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .enrol_dtw import dtw_distances, unit_rows
from .errors import KwsError

BANK_FILE = Path(__file__).with_name("enrol_bank.npz")
BANK_STEP = 2  # stretches of the bank start every 2 embeddings (160 ms)


def save_bank(path: Path, utterances: list[np.ndarray]) -> None:
    """Write the embeddings of each utterance (n_i, 96) as one float16 array and the offsets."""
    lengths = np.array([len(u) for u in utterances], dtype=np.int32)
    np.savez_compressed(path, embeddings=np.concatenate(utterances).astype(np.float16), lengths=lengths)


def load_bank(path: Path = BANK_FILE) -> list[np.ndarray]:
    """The bank's utterances, each (n_i, 96) with unit rows (float32)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            embeddings, lengths = data["embeddings"], data["lengths"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise KwsError(f"the negative speech bank {path} is missing or damaged ({exc}): reinstall kws-stream") from None
    bounds = np.cumsum(lengths)[:-1]
    return [unit_rows(u.astype(np.float32)) for u in np.split(embeddings, bounds)]


def radius(template: np.ndarray, bank: list[np.ndarray]) -> float:
    """DTW distance from `template` (n, 96) to the nearest stretch of the bank as long as it."""
    t = unit_rows(template)
    n = len(t)
    best = np.inf
    for utterance in bank:
        costs = 1.0 - t @ utterance.T  # (n, m)
        if costs.shape[1] < n:
            continue
        stretches = np.lib.stride_tricks.sliding_window_view(costs, n, axis=1)[:, ::BANK_STEP]
        best = min(best, float(dtw_distances(stretches.transpose(1, 0, 2)).min()))
    return best
