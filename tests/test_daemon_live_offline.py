"""Issue 25 item 1, the short version of `python -m benchmarks.live_offline` (20 minutes,
docs/benchmarks.md): the real `kws-stream run` on a PulseAudio virtual microphone reports
exactly what `kws-stream detect` reports on the audio it captured (`KWS_STREAM_RECORD`):
same keywords, same order, each `end` within one hop. About 35 s of audio per format,
16 kHz mono and 48 kHz stereo (the daemon's own resampler and channel mix): "down" after
5.42 s of room tone (the soak's old miss), a command over a TV bed, one after running
speech, one after digital silence, one after silence then room tone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import live_offline as lo
from benchmarks.soak import AUDIO, Sounds


def mini_program() -> list[lo.Segment]:
    sounds = Sounds()
    bed = lo._read(AUDIO / "real-dev" / "ami_trn01.wav")[: 8 * 16000]
    talk = [lo._read(AUDIO / "real-dev" / "ls_1081-125237-0000.wav")]
    return [lo.quiet(sounds, "down.wav", 5.42, "room"),
            lo.tv(sounds, bed, "right_left_up.wav", 2.5),
            lo.speech(sounds, talk, 1.5, "yes_no_go_stop.wav"),
            lo.quiet(sounds, "yes.wav", 2.0, "silence"),
            lo.quiet(sounds, "no_1000ms.wav", 3.0, "silence+room"),
            lo.Segment("quiet", sounds.room(3.0), [])]


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (48000, 2)], ids=["16k-mono", "48k-stereo"])
def test_live_detections_equal_detect_on_the_captured_audio(tmp_path: Path, rate: int, channels: int) -> None:
    r = lo.run_format(rate, channels, mini_program(), tmp_path)
    print(lo.report([r], 0))
    assert r.sessions == 1 and "ring_overflow_s=0.00" in r.stopping_line, r.stopping_line
    assert len(r.live) >= 5, r.live  # it heard commands at all (most of the 10 words)
    assert r.differences == [] and r.equal, r.differences
    assert r.max_end_diff_s <= lo.HOP_S


def test_compare_names_each_difference() -> None:
    def d(keyword: str, end: float) -> dict:
        return {"keyword": keyword, "end": end, "score": 0.8}

    assert lo.compare([d("yes", 1.0), d("no", 2.0)], [d("yes", 1.02), d("no", 2.0)]) == []
    assert lo.compare([d("yes", 1.0)], [d("yes", 1.04)]) == ["#0: live yes@1.000(0.800) offline yes@1.040(0.800)"]
    assert lo.compare([d("yes", 1.0)], [d("no", 1.0), d("go", 3.0)]) == [
        "#0: live yes@1.000(0.800) offline no@1.000(0.800)", "#1: live - offline go@3.000(0.800)"]
