"""The accuracy harness's clip sets: which files are scored and what each should yield.

* ``shared``: the real clips in ``$KWS_SHARED/audio/keywords``; each file's expected
  keywords are the leading keyword words of its name (``right_left_up.wav`` -> right,
  left, up; ``yes_1000ms.wav`` -> yes).
* ``synthetic``: the synthetic keyword set of :mod:`benchmarks.corpus` (1.5 s clips,
  exactly one keyword each).
* ``negative``: the keyword-free stream, i.e. the synthetic prose files plus every
  ``$KWS_SHARED/audio/negatives/*.wav``. Every detection there is a false accept.
* ``positives`` / ``negatives``: a user's own folders (``--positives``, ``--negatives``).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from testsupport.audio import SHARED

SETS = ("shared", "synthetic", "negative")


def shared_dir() -> Path:
    """The shared data directory: ``$KWS_SHARED`` or ``../shared`` next to the checkout."""
    return SHARED


@dataclass(frozen=True)
class Clip:
    """One file to score. ``expected`` is empty for the keyword-free set."""

    path: Path
    set: str  # "shared", "synthetic" or "negative"
    expected: tuple[str, ...] = ()
    group: str = ""  # a breakdown key: the voice (synthetic), "prose" or "shared" (negative)

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def expected_from_name(path: Path, keywords: Iterable[str]) -> tuple[str, ...]:
    """The leading keyword words of a file name: ``right_left_up`` -> right, left, up."""
    known = set(keywords)
    out = []
    for word in path.stem.lower().split("_"):
        if word not in known:
            break
        out.append(word)
    return tuple(out)


def shared_keyword_clips(shared: Path, keywords: Iterable[str]) -> list[Clip]:
    clips = []
    for path in sorted((shared / "audio" / "keywords").glob("*.wav")):
        expected = expected_from_name(path, keywords)
        if not expected:
            raise ValueError(f"{path}: the file name starts with no keyword; cannot tell what it should yield")
        clips.append(Clip(path, "shared", expected, "shared"))
    return clips


def folder_label(path: Path, keywords: Iterable[str]) -> tuple[str, ...]:
    """A user's keyword clip: the leading keyword words of its name (`stop_017.wav` ->
    stop), else its folder's name if that is a keyword (`yes/take3.wav` -> yes)."""
    expected = expected_from_name(path, keywords)
    if not expected and path.parent.name.lower() in set(keywords):
        expected = (path.parent.name.lower(),)
    return expected


def add_folder_options(parser: argparse.ArgumentParser) -> None:
    """--negatives and --positives: a user's own recordings, as `folder_clips` reads them."""
    parser.add_argument("--negatives", type=Path, help="a folder of keyword-free WAVs: every detection is a false accept")
    parser.add_argument("--positives", type=Path,
                        help="a folder of keyword WAVs, labelled by name (stop_1.wav, right_left_up.wav) or folder (stop/)")


def folder_error(*folders: Path | None) -> str | None:
    """The one-line error for a given folder that is not one, else None."""
    for folder in folders:
        if folder is not None and not folder.is_dir():
            return f"error: {folder} is not a folder of WAV files"
    return None


def folder_clips(folder: Path, set_name: str, keywords: Iterable[str]) -> list[Clip]:
    """Every WAV under `folder` (recursively): `--negatives` (keyword-free, every detection
    is a false accept) or `--positives` (labelled by :func:`folder_label`)."""
    paths = sorted(Path(folder).rglob("*.wav"))
    if not paths:
        raise ValueError(f"{folder}: no .wav files in it")
    if set_name == "negatives":
        return [Clip(p, "negatives", (), "user") for p in paths]
    clips = []
    for path in paths:
        expected = folder_label(path, keywords)
        if not expected:
            raise ValueError(f"{path}: no keyword in its name or folder; name it like stop_1.wav or put it in stop/")
        clips.append(Clip(path, "positives", expected, "user"))
    return clips


def shared_negative_clips(shared: Path) -> list[Clip]:
    return [Clip(p, "negative", (), "shared") for p in sorted((shared / "audio" / "negatives").glob("*.wav"))]


def synthetic_keyword_clips(corpus: Path) -> list[Clip]:
    """The corpus keyword set (via ``keywords.csv``), grouped by voice."""
    from benchmarks.corpus import load_keyword_set

    voices: dict[str, str] = {}
    with open(Path(corpus) / "keywords.csv", newline="") as f:
        for row in csv.DictReader(f):
            voices[row["path"]] = row.get("voice", "")
    clips = []
    for path, keyword in load_keyword_set(Path(corpus)):
        rel = path.relative_to(corpus).as_posix()
        clips.append(Clip(path, "synthetic", (keyword,), voices.get(rel, "")))
    return clips


def prose_clips(corpus: Path) -> list[Clip]:
    return [Clip(p, "negative", (), "prose") for p in sorted((Path(corpus) / "prose").glob("prose_*.wav"))]


def collect_clips(sets: Sequence[str], keywords: Sequence[str], corpus: Path | None) -> list[Clip]:
    shared = shared_dir()
    clips: list[Clip] = []
    if "shared" in sets:
        clips += shared_keyword_clips(shared, keywords)
    if "synthetic" in sets:
        if corpus is None:
            raise ValueError("the synthetic set needs a corpus (benchmarks.corpus)")
        clips += synthetic_keyword_clips(corpus)
    if "negative" in sets:
        clips += prose_clips(corpus) if corpus is not None else []
        clips += shared_negative_clips(shared)
    return clips
