"""Keyword spotting over WAV files: the work behind `kws-stream detect`, for any caller.

Each file gets a fresh `Pipeline` fed block by block from `WavFileSource`, exactly as the
live daemon feeds the microphone, so a file's detections are the ones `run` would report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .backend import KeywordModel
from .errors import InputError
from .events import Detection
from .judge import JudgeVerdict, load_judge
from .pipeline import Pipeline, PipelineParams
from .sources import WavFileSource
from .verdicts import Reject


@dataclass(frozen=True)
class FileError:
    """A file that could not be read (whole or in part); the other files go on."""

    path: str
    error: InputError


RejectionObserver = Callable[[Detection, Reject], None]
WordObserver = Callable[[Detection, bool], None]
JudgeObserver = Callable[[Detection, JudgeVerdict], None]


def detect_files(paths: Iterable[str | Path], model: KeywordModel, model_name: str,
                 params: PipelineParams | None = None, channel: int | None = None,
                 on_rejection: RejectionObserver | None = None,
                 on_word: WordObserver | None = None,
                 on_judge: JudgeObserver | None = None) -> Iterator[Detection | FileError]:
    """Detections of each file in order, and a `FileError` for each file that cannot be read
    (a truncated pipe is reported after the detections before the truncation).
    `on_rejection(candidate, rejection)` sees each candidate command mode rejects,
    `on_word(score, reported)` each enrolled word's score on each burst, and `on_judge` each
    verdict of the second judge. Stop iterating to stop early."""
    params = params or PipelineParams()
    judge = load_judge() if params.command.enabled else None
    for path in paths:
        name = str(path)
        try:
            source = WavFileSource(Path(name), channel)
        except InputError as exc:
            yield FileError(name, exc)
            continue
        pipeline = Pipeline(model, model_name, name, params, judge=judge)
        pipeline.rejection_observer = on_rejection
        pipeline.word_observer = on_word
        pipeline.judge_observer = on_judge
        try:
            for block in source.blocks():
                yield from pipeline.feed(block)
        except InputError as exc:  # a pipe shows a truncation only when it ends
            yield FileError(name, exc)
        yield from pipeline.finish()
