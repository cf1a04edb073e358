"""Live equals offline: does `kws-stream run` on a microphone report exactly what
`kws-stream detect` reports on the audio it captured?

    python -m benchmarks.live_offline --minutes 10 [--formats 16000x1,48000x2] [--seed 0] [--json OUT]

For each format (rate x channels) a PulseAudio virtual microphone (testsupport/vmic.py) of
that format plays a seeded, varied program in real time for `--minutes`: keyword clips after
1-60 s of digital silence, room tone or both (as the soak's feeder), keyword clips over a TV
bed (AMI meeting speech 20 dB under them) and keyword clips after running speech
(LibriSpeech utterances, no keywords in them). The daemon runs at its defaults (command mode)
with `KWS_STREAM_RECORD`, so it writes what it captured, as the device gave it; 48 kHz
stereo runs with `[audio] sample_rate = 48000, channels = 2` (the daemon's own resampler and
channel mix, not PulseAudio's). Then `kws-stream detect` (same config) runs on the captured
file. PASS when the two lists are equal: the same keywords in the same order, each `end`
within one hop (20 ms), no ring overflow, one capture session. Prints both lists where they
differ and how many of the played commands were found (the model's recall, for context).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io.wavfile

from kws_stream.features import MICRONET

from .soak import AUDIO, CLIPS, KWS, PAUSE_KINDS, RATE, Sounds, _env

HOP_S = MICRONET.hop_seconds
TV_DBFS = -45.0  # the TV bed's RMS: ~20 dB under the keyword clips
SPEECH_DBFS = -28.0  # running speech nearby
START_TIMEOUT_S = 60.0


@dataclass
class Segment:
    kind: str  # quiet, tv, speech
    audio: np.ndarray  # 16 kHz mono int16
    words: list[tuple[str, float]]  # keyword, its clip's start in the segment (s)


def _scaled(audio: np.ndarray, dbfs: float) -> np.ndarray:
    x = audio.astype(np.float64)
    rms = math.sqrt(float(np.mean(x ** 2))) or 1.0
    return x * (10 ** (dbfs / 20) * 32768 / rms)


def _read(path: Path) -> np.ndarray:
    rate, data = scipy.io.wavfile.read(path)
    assert rate == RATE and data.ndim == 1, path
    return data


def quiet(sounds: Sounds, clip_name: str, pause: float, kind: str, offset: int = 0) -> Segment:
    """A command after `pause` s of silence, room tone or both (soak.PAUSE_KINDS)."""
    before = sounds.pause(pause, kind, offset)
    return _segment("quiet", [before, sounds.clips[clip_name]], clip_name, len(before))


def tv(sounds: Sounds, bed: np.ndarray, clip_name: str, at: float) -> Segment:
    """A command `at` s into a TV bed (real meeting speech at TV_DBFS)."""
    mix = _scaled(bed, TV_DBFS)
    clip = sounds.clips[clip_name]
    i = int(at * RATE)
    mix[i:i + len(clip)] += clip
    return _segment("tv", [np.clip(np.round(mix), -32768, 32767).astype(np.int16)], clip_name, i)


def speech(sounds: Sounds, talk: list[np.ndarray], gap: float, clip_name: str) -> Segment:
    """Running speech (SPEECH_DBFS), `gap` s of room tone, a command."""
    said = np.clip(np.round(np.concatenate([_scaled(t, SPEECH_DBFS) for t in talk])), -32768, 32767)
    parts = [said.astype(np.int16), sounds.room(gap)]
    return _segment("speech", parts + [sounds.clips[clip_name]], clip_name, len(parts[0]) + len(parts[1]))


def _segment(kind: str, parts: list[np.ndarray], clip_name: str, clip_at: int) -> Segment:
    return Segment(kind, np.concatenate(parts), [(w, clip_at / RATE + k) for k, w in enumerate(CLIPS[clip_name])])


def program(seed: int, seconds: float) -> list[Segment]:
    """Segments until `seconds` of audio: a third each of quiet, TV and speech, shuffled."""
    rng = random.Random(seed)
    sounds = Sounds()
    beds = sorted((AUDIO / "real-dev").glob("ami_*.wav"))
    talks = sorted((AUDIO / "real-dev").glob("ls_*.wav"))
    out: list[Segment] = []
    total = 0.0
    while total < seconds:
        clip_name = rng.choice(list(CLIPS))
        kind = rng.choice(("quiet", "tv", "speech"))
        if kind == "quiet":
            pause = math.exp(rng.uniform(0.0, math.log(60.0)))
            seg = quiet(sounds, clip_name, pause, rng.choice(PAUSE_KINDS), rng.randrange(RATE))
        elif kind == "tv":
            bed = _read(rng.choice(beds))
            n = int(rng.uniform(8.0, 25.0) * RATE)
            first = rng.randrange(max(1, len(bed) - n))
            clip_s = len(sounds.clips[clip_name]) / RATE
            seg = tv(sounds, bed[first:first + n], clip_name, rng.uniform(2.0, max(2.0, n / RATE - clip_s - 1.0)))
        else:
            talk = [_read(p) for p in rng.sample(talks, rng.randint(1, 2))]
            seg = speech(sounds, talk, rng.uniform(1.0, 5.0), clip_name)
        out.append(seg)
        total += len(seg.audio) / RATE
    out.append(Segment("quiet", sounds.room(3.0), []))  # the pause after the last command
    return out


def to_format(audio: np.ndarray, rate: int, channels: int) -> np.ndarray:
    """16 kHz mono -> the microphone's format (soxr up; the second channel 0.8 of the first)."""
    if rate != RATE:
        import soxr

        audio = np.clip(np.round(soxr.resample(audio.astype(np.float32), RATE, rate)), -32768, 32767).astype(np.int16)
    if channels == 1:
        return audio
    chans = [audio] + [np.round(audio * 0.8).astype(np.int16)] * (channels - 1)
    return np.stack(chans, axis=1)


@dataclass
class FormatResult:
    rate: int
    channels: int
    seconds: float
    live: list[dict[str, Any]]
    offline: list[dict[str, Any]]
    played_words: int
    found_words: int
    stopping_line: str
    sessions: int
    equal: bool = False
    differences: list[str] = field(default_factory=list)
    max_end_diff_s: float = 0.0  # over the pairs with the same keyword
    max_score_diff: float = 0.0


def compare(live: list[dict[str, Any]], offline: list[dict[str, Any]], tolerance: float = HOP_S) -> list[str]:
    """What differs between the two lists ([] when they agree)."""
    diffs = []
    for i in range(max(len(live), len(offline))):
        a = live[i] if i < len(live) else None
        b = offline[i] if i < len(offline) else None
        if a is None or b is None or a["keyword"] != b["keyword"] or abs(a["end"] - b["end"]) > tolerance + 1e-9:
            diffs.append(f"#{i}: live {_short(a)} offline {_short(b)}")
    return diffs


def _short(d: dict[str, Any] | None) -> str:
    return "-" if d is None else f"{d['keyword']}@{d['end']:.3f}({d['score']:.3f})"


def run_format(rate: int, channels: int, segments: list[Segment], work: Path,
               log: Any = print) -> FormatResult:
    from testsupport.daemon_process import DaemonProcess
    from testsupport.vmic import VirtualMic

    work.mkdir(parents=True, exist_ok=True)
    conf = work / "kws.toml"
    conf.write_text("" if (rate, channels) == (RATE, 1) else
                    f"[audio]\nsample_rate = {rate}\nchannels = {channels}\n")
    prefix = work / "captured"
    with VirtualMic(work / "vmic", rate=rate, channels=channels) as mic:
        env = _env(mic.env, work / "config")
        env["KWS_STREAM_RECORD"] = str(prefix)
        daemon = DaemonProcess([*KWS, "run", "--config", str(conf), "--log-level", "info"], env)
        try:
            daemon.wait_log("event=ready", timeout=START_TIMEOUT_S)
            seconds = 0.0
            pending: list[Any] = []
            for k, seg in enumerate(segments):
                pending.append(mic.play(to_format(seg.audio, rate, channels)))
                seconds += len(seg.audio) / RATE
                if len(pending) > 2:  # keep the queue short (memory) but never empty (no gaps)
                    if pending.pop(0).wait(600) is None:
                        raise RuntimeError("the virtual microphone stopped playing")
                if k % 20 == 0:
                    log(f"live_offline {rate}x{channels}: {seconds:.0f} s queued")
            for h in pending:
                if h.wait(600) is None:
                    raise RuntimeError("the virtual microphone stopped playing")
        finally:
            status = daemon.stop(timeout=10)
        live = []
        while not daemon.stdout.empty():
            live.append(json.loads(daemon.stdout.get()[1]))
    if status != 0:
        raise RuntimeError(f"the daemon exited {status}:\n{daemon.stderr}")
    stopping = next((ln for ln in daemon.stderr.splitlines() if "event=stopping" in ln), "")
    files = sorted(work.glob("captured-*.wav"))
    detect = subprocess.run([*KWS, "detect", "--config", str(conf), str(files[0])], env=env,
                            capture_output=True, text=True, timeout=3600)
    if detect.returncode != 0:
        raise RuntimeError(f"detect failed: {detect.stderr}")
    offline = [json.loads(line) for line in detect.stdout.splitlines() if line.strip()]
    played = [w for seg in segments for w, _ in seg.words]
    found = sum(1 for w in set(played) for _ in range(min(played.count(w), [d["keyword"] for d in live].count(w))))
    r = FormatResult(rate, channels, round(seconds, 1), live, offline, len(played), found, stopping, len(files))
    r.differences = compare(live, offline)
    pairs = [(a, b) for a, b in zip(live, offline) if a["keyword"] == b["keyword"]]
    r.max_end_diff_s = max((abs(a["end"] - b["end"]) for a, b in pairs), default=0.0)
    r.max_score_diff = max((abs(a["score"] - b["score"]) for a, b in pairs), default=0.0)
    ok_ring = "ring_overflow_s=0.00" in stopping
    if not ok_ring:
        r.differences.append(f"ring overflow: {stopping}")
    if len(files) != 1:
        r.differences.append(f"{len(files)} capture sessions (a device was lost)")
    r.equal = not r.differences
    return r


def report(results: list[FormatResult], seed: int) -> str:
    out = [f"# live vs detect on the captured audio (seed {seed})", "",
           "| format | audio | live detections | detect | equal (keyword, end within 20 ms) |"
           " max end / score difference | played words found live |", "|---|---|---|---|---|---|---|"]
    for r in results:
        out.append(f"| {r.rate} Hz x {r.channels} | {r.seconds / 60:.1f} min | {len(r.live)} | {len(r.offline)} | "
                   f"{'yes' if r.equal else 'NO'} | {r.max_end_diff_s:.3f} s / {r.max_score_diff:.4f} | "
                   f"{r.found_words}/{r.played_words} |")
    for r in results:
        out.append("")
        out.append(f"{r.rate}x{r.channels}: {r.stopping_line.split('event=stopping ')[-1]}")
        out.extend(f"  {d}" for d in r.differences)
    out.append("")
    out.append("VERDICT: PASS" if all(r.equal for r in results) else "VERDICT: FAIL")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.live_offline", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="audio per format")
    p.add_argument("--formats", default="16000x1,48000x2", help="comma-separated RATExCHANNELS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, help="keep the captured audio and logs here")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    try:
        formats = [tuple(int(v) for v in f.split("x")) for f in a.formats.split(",") if f]
        assert formats and all(len(f) == 2 for f in formats) and a.minutes > 0
    except (ValueError, AssertionError):
        print("live_offline: --formats is RATExCHANNELS[,...] (e.g. 16000x1,48000x2) and --minutes > 0",
              file=sys.stderr)
        return 2
    work = a.workdir or Path(tempfile.mkdtemp(prefix="kws-live-offline-"))
    results = []
    for i, (rate, channels) in enumerate(formats):
        segments = program(a.seed + i, a.minutes * 60)
        results.append(run_format(rate, channels, segments, work / f"{rate}x{channels}",
                                  log=lambda s: print(s, file=sys.stderr, flush=True)))
    print(report(results, a.seed), flush=True)
    if a.json:
        a.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0 if all(r.equal for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
