"""`kws-stream enroll` and `kws-stream words list|remove`: a user's own words.

`enroll NAME FILE.wav ...` (3-10 recordings) or `enroll NAME --record [--takes N]` checks
every take (`takes.refusal`), enrols the word with the matcher (`enrol.WordMatcher`) and
saves it in the word store (`wordstore`), where `detect`, `run` (at start and on SIGHUP)
and `serve wyoming` find it. Every problem is one line, and nothing is saved then.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config, ConfigError
from .decision import NON_KEYWORDS
from .errors import KwsError
from .models import manifest_for, spec_for
from .preflight import check_model
from .wordstore import WordStore, check_name

if TYPE_CHECKING:
    from .capture import CaptureSession

TAKES = (3, 10)  # takes an enrolment needs, at least and at most


def _check_takes(count: int, what: str) -> None:
    lo, hi = TAKES
    if not lo <= count <= hi:
        raise ConfigError(f"enrol a word from {lo} to {hi} {what}, not {count}")


def check_new_name(config: Config, name: str) -> None:
    """A valid word name that is not one of the configured model's labels (exit 2)."""
    check_name(name)
    check_model(config)
    spec = spec_for(config.model.name, manifest_for(config))
    if name in spec.labels:
        keywords = ", ".join(k for k in spec.labels if k not in NON_KEYWORDS)
        raise ConfigError(f"{name!r} is a keyword of model {spec.name} already ({keywords}): "
                          f"give your word another name, e.g. my_{name}")


def enroll(config: Config, name: str, files: Sequence[str], record: int | None,
           store: WordStore | None = None) -> int:
    """Enrol `name` from `files`, or from `record` takes said at the microphone."""
    from .enrol import EnrolError, load_matcher
    from .takes import read_take, record_takes, refusal

    check_new_name(config, name)
    if record is not None:
        if files:
            raise ConfigError("give recordings or --record, not both")
        _check_takes(record, "takes")
        matcher = load_matcher()  # a missing dependency is said before anyone speaks
        takes = record_takes(name, record, lambda: _open_microphone(config), config.command)
    else:
        if not files:
            raise ConfigError("give 3 to 10 recordings of the word (NAME FILE.wav FILE.wav FILE.wav ...), "
                              "or --record to say it at the microphone")
        _check_takes(len(files), "recordings (WAV files)")
        takes = [read_take(f, config.audio.channel_index()) for f in files]
        refused = [f"take {k} ({Path(f).name}): {reason}" for k, (f, take) in enumerate(zip(files, takes), 1)
                   if (reason := refusal(take, config.command)) is not None]
        if refused:
            raise EnrolError("; ".join(refused))
        matcher = load_matcher()
    word = matcher.enrol(name, takes)
    store = store or WordStore()
    replaced = name in store.names()
    path = store.save(word)
    print(f"enrolled {name} from {len(takes)} takes (threshold {word.threshold:.2f}): {path}"
          f"{' (replaced the earlier one)' if replaced else ''}")
    print(f"kws-stream: `detect` and `run` now report it as {{\"keyword\": \"{name}\", ...}}; "
          "a running `kws-stream run` picks it up on SIGHUP (systemctl reload kws-stream)", file=sys.stderr)
    return 0


def _open_microphone(config: Config) -> CaptureSession:
    from .capture import open_capture

    a = config.audio
    return open_capture(a.device, a.sample_rate, a.channels, a.channel_index(), a.block_ms, reinitialise=False)


def words_list(store: WordStore | None = None) -> int:
    store = store or WordStore()
    names = store.names()
    if not names:
        print(f"kws-stream: no words enrolled in {store.directory}: `kws-stream enroll NAME FILE.wav ...` "
              "(3 to 10 recordings) or `kws-stream enroll NAME --record`", file=sys.stderr)
        return 0
    for name in names:
        try:
            word = store.read(name)
            print(f"{name:<20} threshold {word.threshold:.2f}  {store.path(name)}")
        except KwsError as exc:
            print(f"{name:<20} UNREADABLE ({exc}): enrol it again or remove it")
    return 0


def words_remove(name: str, store: WordStore | None = None) -> int:
    check_name(name)
    store = store or WordStore()
    store.remove(name)
    print(f"removed {name}; a running `kws-stream run` forgets it on SIGHUP (systemctl reload kws-stream)")
    return 0
