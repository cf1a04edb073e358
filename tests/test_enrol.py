"""Enrolled words (issue 23): the matcher on real recordings, bad takes, the file format.

Real recordings of shared/audio/custom-words (crowd-sourced, several speakers), the real
speech embedding models of pyopen-wakeword and the shipped negative speech bank.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from kws_stream import enrol, enrol_embed
from kws_stream.enrol import BURST_MARGIN_S, DEFAULT_THRESHOLD, EnrolError, EnrolledWord, WordMatcher, check_take, load_matcher
from kws_stream.enrol_bursts import find_bursts, with_margins
from kws_stream.errors import KwsError
from testsupport.audio import AUDIO, read_wav, room_tone

pytest.importorskip("pyopen_wakeword", reason="enrolled words need pyopen-wakeword (x86_64 / aarch64)")


def clip(name: str) -> np.ndarray:
    return read_wav(AUDIO / "custom-words" / f"{name}.wav")


@pytest.fixture(scope="module")
def matcher() -> WordMatcher:
    return load_matcher()


@pytest.fixture(scope="module")
def computer(matcher: WordMatcher) -> EnrolledWord:
    return matcher.enrol("computer", [clip(f"computer_{i:03d}") for i in (0, 2, 4, 6, 8)])


def best_score(matcher: WordMatcher, word: EnrolledWord, audio: np.ndarray) -> float:
    """The highest score over the recording's command-shaped bursts, as the product judges it."""
    spans = find_bursts(audio)
    assert spans, "the command gate found no burst in the recording"
    return max(matcher.score(word, with_margins(audio, s, BURST_MARGIN_S)) for s in spans)


def test_enrolled_word_is_found_in_held_out_recordings_of_other_speakers(matcher, computer):
    held_out = [best_score(matcher, computer, clip(f"computer_{i:03d}")) for i in (1, 3, 5, 7, 9)]
    assert sum(s >= computer.threshold for s in held_out) >= 4, held_out


def test_enrolled_word_does_not_fire_on_other_phrases(matcher, computer):
    scores = [best_score(matcher, computer, clip(f"{w}_{i:03d}")) for w in ("jarvis", "smart_mirror") for i in range(6)]
    assert max(scores) < computer.threshold, scores


def test_several_words_are_scored_on_one_embedding_of_the_burst(matcher, computer):
    jarvis = matcher.enrol("jarvis", [clip(f"jarvis_{i:03d}") for i in (0, 2, 4, 6, 8)])
    audio = clip("computer_001")
    burst = with_margins(audio, find_bursts(audio)[0], BURST_MARGIN_S)
    embedded: list[int] = []
    real_embed = matcher.embedding.embed
    matcher.embedding.embed = lambda a: embedded.append(len(a)) or real_embed(a)  # type: ignore[method-assign]
    try:
        both = matcher.scores([computer, jarvis], burst)
    finally:
        del matcher.embedding.embed  # the instance attribute: the method again
    assert len(embedded) == 1
    assert both == [matcher.score(computer, burst), matcher.score(jarvis, burst)]
    assert both[0] >= computer.threshold > both[1]


def test_enrolment_keeps_one_template_per_take_with_its_radius(computer):
    assert computer.name == "computer" and computer.threshold == DEFAULT_THRESHOLD
    assert len(computer.templates) == len(computer.radii) == 5
    assert all(t.shape[1] == enrol_embed.EMBEDDING_SIZE and len(t) >= 5 for t in computer.templates)
    assert all(0 < r < 1 for r in computer.radii)


def test_a_tiny_or_silent_burst_scores_low_without_error(matcher, computer):
    assert matcher.score(computer, np.zeros(100, np.int16)) < computer.threshold
    assert matcher.score(computer, room_tone(1.5)) < computer.threshold


# ----------------------------------------------------------------------------- bad takes

def test_a_good_take_passes():
    assert check_take(clip("computer_000")) is None


def test_silence_is_refused():
    assert "too quiet" in (check_take(room_tone(2.0)) or "")


def test_steady_noise_without_a_word_is_refused():
    assert "no word" in (check_take(room_tone(2.0, level_dbfs=-25.0)) or "")


def test_digital_silence_is_refused_as_too_quiet():
    assert "too quiet" in (check_take(np.zeros(32000, np.int16)) or "")


def test_quiet_take_is_refused():
    x = clip("computer_000")
    quiet = np.round(x * (10 ** (-45 / 20) * 32768 / max(1, np.abs(x).max()))).astype(np.int16)
    assert "too quiet" in (check_take(quiet) or "")


def test_clipped_take_is_refused():
    loud = np.clip(clip("computer_000").astype(np.int32) * 30, -32768, 32767).astype(np.int16)
    assert "clipped" in (check_take(loud) or "")


def test_two_words_in_one_take_are_refused():
    two = np.concatenate([clip("computer_000"), clip("computer_002")])
    assert "2 separate bursts" in (check_take(two) or "")


def test_a_sentence_is_refused_even_if_it_holds_an_isolated_word():
    sentence = np.concatenate([room_tone(0.5), read_wav("negatives/another_door.wav"), room_tone(0.5)])
    assert "other speech besides the word" in (check_take(sentence) or "")


def test_too_long_a_recording_is_refused():
    assert "too long" in (check_take(np.concatenate([clip("computer_000")] * 4)) or "")


def test_wrong_format_is_refused():
    assert "int16" in (check_take(clip("computer_000").astype(np.float32)) or "")
    assert "mono" in (check_take(np.stack([clip("computer_000")] * 2, axis=1)) or "")


def test_enrol_names_the_bad_take(matcher):
    takes = [clip("computer_000"), room_tone(2.0), clip("computer_004")]
    with pytest.raises(EnrolError, match=r"^take 2: too quiet"):
        matcher.enrol("computer", takes)


def test_enrol_needs_3_to_10_takes_and_a_plain_name(matcher):
    with pytest.raises(EnrolError, match="enrol from 3 to 10"):
        matcher.enrol("computer", [clip("computer_000"), clip("computer_002")])
    with pytest.raises(EnrolError, match="letters, digits and _"):
        matcher.enrol("view glass", [clip("computer_000")] * 3)


# ----------------------------------------------------------------------------- file format

def test_round_trip_keeps_the_word_and_its_scores(matcher, computer):
    again = EnrolledWord.from_bytes(computer.to_bytes())
    assert (again.name, again.threshold, again.radii) == (computer.name, computer.threshold, computer.radii)
    assert all(np.array_equal(a, b) for a, b in zip(again.templates, computer.templates))
    assert again == computer and hash(again) == hash(computer) and again is not computer
    assert again != EnrolledWord(computer.name, computer.threshold, computer.templates[:4], computer.radii[:4])
    burst = clip("computer_001")
    assert best_score(matcher, again, burst) == best_score(matcher, computer, burst)


def test_corrupt_file_is_refused(computer):
    data = bytearray(computer.to_bytes())
    data[len(data) // 2] ^= 0x40
    with pytest.raises(EnrolError, match="damaged"):
        EnrolledWord.from_bytes(bytes(data))
    with pytest.raises(EnrolError, match="damaged"):
        EnrolledWord.from_bytes(computer.to_bytes()[:-100])


def test_foreign_file_is_refused():
    wav = (AUDIO / "custom-words" / "computer_000.wav").read_bytes()
    with pytest.raises(EnrolError, match="not an enrolled word file"):
        EnrolledWord.from_bytes(wav)


def _resealed(data: bytes, edit) -> bytes:
    """`data` with its header changed by `edit` and a valid checksum again."""
    body = data[:-4]
    end = body.index(b"\n", len(enrol.MAGIC))
    header = json.loads(body[len(enrol.MAGIC):end])
    edit(header)
    body = enrol.MAGIC + json.dumps(header).encode() + body[end:]
    return body + struct.pack("<I", zlib.crc32(body))


def test_other_format_version_is_refused_with_what_to_do(computer):
    data = _resealed(computer.to_bytes(), lambda h: h.update(format=2))
    with pytest.raises(EnrolError, match="format 2 .*enrol the word again"):
        EnrolledWord.from_bytes(data)


def test_header_that_does_not_match_the_templates_is_refused(computer):
    data = _resealed(computer.to_bytes(), lambda h: h["frames"].__setitem__(0, h["frames"][0] + 1))
    with pytest.raises(EnrolError, match="do not match"):
        EnrolledWord.from_bytes(data)


def test_missing_embedding_models_say_what_to_install(monkeypatch):
    """pyopen-wakeword is installed here; the test hides it from the import system."""
    monkeypatch.setattr(enrol_embed.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(KwsError, match="pip install 'pyopen-wakeword"):
        load_matcher()


@pytest.mark.slow
def test_benchmark_quick_prints_the_table(tmp_path, capsys):
    from benchmarks import enrolled_words

    assert enrolled_words.main(["--quick", "--split", "dev", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "found % [95 % CI]" in out and "real-dev FA/h" in out
    row = next(line for line in out.splitlines() if line.startswith("3 "))
    found = int(row.split()[1].split("/")[0])
    assert found >= 20, row  # of 27 held-out recordings (the quick subset)


def test_the_wheel_carries_the_negative_speech_bank(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
                   cwd=repo, check=True, capture_output=True, timeout=120)
    wheel = zipfile.ZipFile(next(tmp_path.glob("kws_stream-*.whl")))
    assert wheel.read("kws_stream/enrol_bank.npz") == (repo / "kws_stream" / "enrol_bank.npz").read_bytes()
