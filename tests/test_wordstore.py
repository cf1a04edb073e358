"""The word store: where enrolled words live, atomic writes, unreadable files, names."""

from __future__ import annotations

import os
import threading

import pytest

from kws_stream.enrol import EnrolledWord, load_matcher
from kws_stream.enrolled import WordLoader, WordSet
from kws_stream.errors import KwsError
from kws_stream.params import ConfigError
from kws_stream.wordstore import SUFFIX, WordStore, check_name, default_words_dir
from testsupport.audio import read_wav

ENROL = [f"custom-words/computer_{i:03d}.wav" for i in range(5)]


@pytest.fixture(scope="module")
def computer() -> EnrolledWord:
    return load_matcher().enrol("computer", [read_wav(p) for p in ENROL])


@pytest.fixture(scope="module")
def jarvis() -> EnrolledWord:
    return load_matcher().enrol("jarvis", [read_wav(f"custom-words/jarvis_{i:03d}.wav") for i in range(5)])


def test_the_words_live_in_the_state_directory_under_systemd_else_in_the_xdg_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert default_words_dir() == tmp_path / "data" / "kws-stream" / "words"
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'state'}:{tmp_path / 'other'}")  # systemd may list several
    assert default_words_dir() == tmp_path / "state" / "words"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_words_dir() == tmp_path / "home" / ".local" / "share" / "kws-stream" / "words"


def test_a_saved_word_reads_back_the_same_and_leaves_no_temporary_file(tmp_path, computer):
    store = WordStore(tmp_path / "words")  # created on the first save
    path = store.save(computer)
    assert path == tmp_path / "words" / f"computer{SUFFIX}"
    assert os.listdir(store.directory) == [path.name]
    assert path.stat().st_mode & 0o777 == 0o644  # a service running as another user can read it
    again = store.read("computer")
    assert (again.name, again.threshold, again.to_bytes()) == (computer.name, computer.threshold, computer.to_bytes())
    assert store.names() == ["computer"]


def test_saving_replaces_a_word_by_rename_so_a_reader_sees_the_old_or_the_new_whole(tmp_path, computer):
    store = WordStore(tmp_path)
    store.save(computer)
    old = store.path("computer").open("rb")  # held open: its inode cannot be reused meanwhile
    stop = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:  # what a SIGHUP reload would read while enroll writes
        while not stop.is_set():
            seen.append(store.path("computer").read_bytes())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(20):
            store.save(computer)
    finally:
        stop.set()
        thread.join(5)
    with old:
        replaced = os.fstat(old.fileno())
        assert replaced.st_nlink == 0 and replaced.st_ino != store.path("computer").stat().st_ino  # renamed over
        assert old.read() == computer.to_bytes()  # and never rewritten in place
    assert seen and all(data == computer.to_bytes() for data in seen)


def test_an_unreadable_word_file_is_named_once_and_the_others_load(tmp_path, computer, jarvis, caplog):
    store = WordStore(tmp_path)
    store.save(computer)
    store.save(jarvis)
    store.path("broken").write_bytes(b"not a word at all")
    store.path("jarvis").write_bytes(jarvis.to_bytes()[:-7])  # truncated
    (tmp_path / "notes.txt").write_text("ignored: not a word file")
    (tmp_path / f"Bad-Name{SUFFIX}").write_bytes(computer.to_bytes())  # no word has that name: ignored
    words, unreadable = store.load()
    assert [w.name for w in words] == ["computer"]
    assert [(u.name, u.path) for u in unreadable] == [("broken", store.path("broken")), ("jarvis", store.path("jarvis"))]
    assert all(str(u.path) in u.reason and "\n" not in u.reason for u in unreadable)

    with caplog.at_level("WARNING", logger="kws_stream"):
        loaded = WordLoader(store).load()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "word=broken" in warnings[0] and "word=jarvis" in warnings[1], warnings
    assert loaded.names == ("computer",) and loaded.known == ("computer", "broken", "jarvis")


def test_a_word_file_renamed_by_hand_is_not_taken_for_another_word(tmp_path, computer):
    store = WordStore(tmp_path)
    store.path("jarvis").write_bytes(computer.to_bytes())
    with pytest.raises(KwsError, match=r"holds the word 'computer', not 'jarvis'"):
        store.read("jarvis")


def test_removing_a_word_deletes_its_file_and_an_unknown_one_says_what_is_enrolled(tmp_path, computer):
    store = WordStore(tmp_path)
    store.save(computer)
    with pytest.raises(KwsError, match=r"no enrolled word 'jarvis' .*\(enrolled: computer\)"):
        store.remove("jarvis")
    store.remove("computer")
    assert store.names() == [] and not store.path("computer").exists()
    with pytest.raises(KwsError, match="no words are enrolled"):
        store.remove("computer")


def test_a_store_that_does_not_exist_yet_holds_no_words(tmp_path):
    assert WordStore(tmp_path / "missing").load() == ([], [])
    assert WordLoader(WordStore(tmp_path / "missing")).load() == WordSet()


@pytest.mark.parametrize("name", ["view_glass", "computer", "a", "x" * 40, "lights2"])
def test_good_names(name):
    check_name(name)


@pytest.mark.parametrize("name", ["", "View", "smart mirror", "smart-mirror", "../etc", "x" * 41, "ordinateur_é"])
def test_bad_names_are_a_one_line_config_error(name):
    with pytest.raises(ConfigError, match="bad word name .*lower-case letters, digits and _"):
        check_name(name)


def test_word_sets_are_equal_when_the_same_words_are_enrolled(computer, jarvis):
    matcher = load_matcher()
    same = EnrolledWord.from_bytes(computer.to_bytes())
    assert WordSet((computer,), matcher) == WordSet((same,), load_matcher())
    assert WordSet((computer,), matcher) != WordSet((computer, jarvis), matcher)
    assert WordSet() == WordSet() and not WordSet()
    with pytest.raises(ValueError, match="matcher"):
        WordSet((computer,))
