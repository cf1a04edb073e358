"""Where enrolled words live: one file per word in the state directory.

`$STATE_DIRECTORY/words` under systemd (the unit's `StateDirectory=kws-stream`, i.e.
/var/lib/kws-stream/words), else `$XDG_DATA_HOME/kws-stream/words` (~/.local/share/...),
beside the models (`models.default_model_dir`), so that an upgrade keeps them. A word is
written to a temporary file in the same directory and renamed into place: a reader (a
SIGHUP reload) sees the old word or the new one, never half a file. A file that cannot be
read is named in one warning by whoever loads the words; the others still load.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import KwsError
from .params import ConfigError
from .paths import state_dir

if TYPE_CHECKING:
    from .enrol import EnrolledWord

SUFFIX = ".kwsword"
NAME = re.compile(r"[a-z0-9_]{1,40}")
MAX_WORD_BYTES = 16 << 20  # far above any word (the placeholder's are ~20 kB); bigger is no word file


def default_words_dir() -> Path:
    return state_dir("words")


def check_name(name: str) -> None:
    """A word name is 1-40 of a-z, 0-9 and _ (it names a file, an MQTT/JSON keyword and a
    Wyoming wake model): a ConfigError (exit 2) otherwise."""
    if NAME.fullmatch(name) is None:
        raise ConfigError(f"bad word name {name!r}: use 1 to 40 lower-case letters, digits and _ (e.g. view_glass)")


@dataclass(frozen=True)
class Unreadable:
    """A word file that could not be read, and why (one line)."""

    name: str
    path: Path
    reason: str


class WordStore:
    """The word files of one directory (which need not exist yet)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else default_words_dir()

    def path(self, name: str) -> Path:
        return self.directory / f"{name}{SUFFIX}"

    def names(self) -> list[str]:
        """The names of the word files present, sorted (readable or not)."""
        try:
            entries = list(self.directory.iterdir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KwsError(f"cannot list enrolled words in {self.directory}: {exc.strerror or exc}") from None
        return sorted(p.name[:-len(SUFFIX)] for p in entries
                      if p.name.endswith(SUFFIX) and NAME.fullmatch(p.name[:-len(SUFFIX)]))

    def read(self, name: str) -> EnrolledWord:
        """One word; a KwsError naming its file when it cannot be read or is not that word."""
        from .enrol import EnrolledWord

        path = self.path(name)
        try:
            with path.open("rb") as f:
                data = f.read(MAX_WORD_BYTES + 1)
        except OSError as exc:
            raise KwsError(f"word file {path}: cannot be read ({exc.strerror or exc})") from None
        if len(data) > MAX_WORD_BYTES:
            raise KwsError(f"word file {path}: larger than {MAX_WORD_BYTES >> 20} MiB, not an enrolled word")
        try:
            word = EnrolledWord.from_bytes(data)
        except KwsError as exc:
            raise KwsError(f"word file {path}: {exc}") from None
        if word.name != name:
            raise KwsError(f"word file {path}: holds the word {word.name!r}, not {name!r} (renamed by hand?); "
                           f"enrol it again")
        return word

    def load(self) -> tuple[list[EnrolledWord], list[Unreadable]]:
        """Every word that can be read, and the files that cannot."""
        words: list[EnrolledWord] = []
        unreadable: list[Unreadable] = []
        for name in self.names():
            try:
                words.append(self.read(name))
            except KwsError as exc:
                unreadable.append(Unreadable(name, self.path(name), str(exc)))
        return words, unreadable

    def save(self, word: EnrolledWord) -> Path:
        """Write `word` atomically (temporary file, fsync, rename); returns its path."""
        check_name(word.name)
        path = self.path(word.name)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{word.name}.", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(word.to_bytes())
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from a service running as another user
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(self.directory)
        except OSError as exc:
            raise KwsError(f"cannot save word {word.name!r} in {self.directory}: {exc.strerror or exc}") from None
        return path

    def remove(self, name: str) -> None:
        """Delete a word's file; a KwsError when there is no such word."""
        path = self.path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            known = self.names()
            hint = f"enrolled: {', '.join(known)}" if known else "no words are enrolled"
            raise KwsError(f"no enrolled word {name!r} in {self.directory} ({hint})") from None
        except OSError as exc:
            raise KwsError(f"cannot remove {path}: {exc.strerror or exc}") from None
        _fsync_dir(self.directory)


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable (a power cut right after keeps it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
