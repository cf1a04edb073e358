"""CPU per second of audio, in-process, kws-stream against pymicro-wakeword and pyopen-wakeword
(kws-stream's command mode with its second judge, as detect, run and serve wyoming load it).

    python -m benchmarks.cpu_compare [--rounds 5] [--speech-s 120] [--quiet-s 60] [--json out.json]

Every contender is loaded first (model load is not counted), then each round runs every
contender over every condition, in the opposite order on odd rounds (ABC.. CBA..), so slow
drift of a shared machine falls on all rows alike; a row's figure is the median of its rounds
of process CPU time (all threads) per second of audio. Audio is fed in 100 ms blocks, as the
daemon's capture does. Peak RSS is measured per contender in a subprocess of its own that
imports only what that contender needs, loads it and runs it over the speech condition.

Conditions: digital silence; room noise (negatives/noise_1000ms.wav tiled, scaled to about
-60 dBFS RMS); continuous real speech (real-dev, joined); commands in conversation (real-dev
utterances with the shared keyword clips between 1-5 s pauses of room noise).

"kws-command-every-hop" is command mode with `PipelineParams.eager_inference=True` (the model on
every hop, as `detect --explain` runs it); "kws-command-event-driven" is the default (False).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy: every row runs single-threaded BLAS)
from kws_stream.config import AudioConfig
from kws_stream.features import MICRONET
from testsupport.audio import AUDIO, read_wav, room_tone, write_wav

RATE = MICRONET.sample_rate
BLOCK = RATE * AudioConfig().block_ms // 1000  # the daemon's default capture block (100 ms)
PAUSE_S = (1.0, 5.0)
COMMAND_CLIPS = ("keywords/yes.wav", "keywords/down.wav", "keywords/right.wav", "keywords/yes_1000ms.wav",
                 "keywords/no_1000ms.wav")
PYMICRO_MODELS = ("okay_nabu", "hey_jarvis", "hey_mycroft", "alexa")
PYOPEN_MODELS = ("okay_nabu", "hey_jarvis", "hey_mycroft", "alexa", "hey_rhasspy")
ROWS = ("baseline", "kws-command-every-hop", "kws-command-event-driven", "kws-plain",
        "pymicro-wakeword", "pyopen-wakeword")
CONDITIONS = ("silence", "noise", "speech", "mix")


def shared_audio() -> Path:
    if not (AUDIO / "keywords").is_dir():
        raise SystemExit(f"cpu_compare: no shared recordings in {AUDIO}: set KWS_SHARED to the shared folder")
    return AUDIO


# ----------------------------------------------------------------------------- audio


def room_noise(samples: int, rng: np.random.Generator) -> np.ndarray:
    """Room tone (testsupport.audio) from a random offset into the recording."""
    return room_tone(samples / RATE, offset=int(rng.integers(RATE)), remove_dc=True)


def speech_files(audio_dir: Path) -> list[Path]:
    files = sorted((audio_dir / "real-dev").glob("*.wav"))
    if not files:
        raise SystemExit(f"no real speech in {audio_dir / 'real-dev'}: set KWS_SHARED to the shared folder")
    # LibriSpeech and AMI alternate, so a short run still has both kinds of speech.
    ls = [f for f in files if not f.name.startswith("ami")]
    ami = [f for f in files if f.name.startswith("ami")]
    out: list[Path] = []
    for i in range(max(len(ls), len(ami))):
        out += ([ls[i]] if i < len(ls) else []) + ([ami[i]] if i < len(ami) else [])
    return out


def continuous_speech(seconds: float, audio_dir: Path) -> np.ndarray:
    parts, have = [], 0
    for f in speech_files(audio_dir):
        if have >= seconds * RATE:
            break
        parts.append(read_wav(f))
        have += len(parts[-1])
    return np.concatenate(parts)[: int(seconds * RATE)]


def commands_in_conversation(seconds: float, audio_dir: Path, seed: int = 0) -> tuple[np.ndarray, int]:
    """(audio, commands inserted): utterance, pause, keyword clip, pause, utterance, ..."""
    rng = np.random.default_rng(seed)
    clips = [read_wav(audio_dir / c) for c in COMMAND_CLIPS]
    parts: list[np.ndarray] = []
    have = commands = 0
    for utterance in (read_wav(f) for f in speech_files(audio_dir)):
        if have >= seconds * RATE:
            break
        utterance = utterance[: 8 * RATE]  # short turns: more commands per minute
        clip = clips[commands % len(clips)]
        for part in (utterance, room_noise(int(rng.uniform(*PAUSE_S) * RATE), rng), clip,
                     room_noise(int(rng.uniform(*PAUSE_S) * RATE), rng)):
            parts.append(part)
            have += len(part)
        commands += 1
    return np.concatenate(parts), commands


def mix_commands(speech_s: float) -> list[str]:
    """The keywords the mix of `conditions` holds, in order."""
    mix, n = commands_in_conversation(speech_s, shared_audio())
    return [Path(COMMAND_CLIPS[i % len(COMMAND_CLIPS)]).stem.split("_")[0] for i in range(n)]


def conditions(speech_s: float, quiet_s: float, audio_dir: Path) -> dict[str, np.ndarray]:
    mix, _ = commands_in_conversation(speech_s, audio_dir)
    return {
        "silence": np.zeros(int(quiet_s * RATE), dtype=np.int16),
        "noise": room_noise(int(quiet_s * RATE), np.random.default_rng(1)),
        "speech": continuous_speech(speech_s, audio_dir),
        "mix": mix,
    }


# ----------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    """A loaded spotter: `run(audio)` feeds it a whole stream in 100 ms blocks from a fresh
    state and returns what it detected, in order. `note` says what it really ran."""

    name: str
    run: Callable[[np.ndarray], list[str]]
    note: str = ""


def blocks(audio: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(audio), BLOCK):
        yield audio[start : start + BLOCK]


def baseline() -> Contender:
    """Reading the audio in blocks and doing nothing with it: the harness's own cost."""

    def run(audio: np.ndarray) -> list[str]:
        for b in blocks(audio):
            b.tobytes()
        return []

    return Contender("baseline", run, "blocks read, nothing done")


def kws(variant: str) -> Contender:
    """kws-stream's real Pipeline at the daemon's defaults (MicroNet-L, stride 1)."""
    from kws_stream import config as cfg
    from kws_stream.backend import KeywordModel
    from kws_stream.judge import load_judge
    from kws_stream.models import default_model_dir, load_manifest, resolve
    from kws_stream.pipeline import Pipeline

    spec, path = resolve("micronet-l", default_model_dir(), load_manifest(), None, progress=False)
    model = KeywordModel(path, spec.labels, num_threads=1)
    params = cfg.DetectionConfig().pipeline_params()
    note = "defaults, MicroNet-L"
    if variant == "plain":
        params = dataclasses.replace(params, command=dataclasses.replace(params.command, enabled=False))
        note += ", command mode off"
    else:
        params = dataclasses.replace(params, eager_inference=(variant == "every-hop"))
        note += f", eager_inference={variant == 'every-hop'}"
    judge = load_judge() if params.command.enabled else None  # as detect, run and serve wyoming load it
    note += ", second judge" if judge is not None else ""

    def run(audio: np.ndarray) -> list[str]:
        pipeline = Pipeline(model, "micronet-l", "bench", params, judge=judge)
        found = [d.keyword for b in blocks(audio) for d in pipeline.feed(b)]
        return found + [d.keyword for d in pipeline.finish()]

    name = "kws-plain" if variant == "plain" else f"kws-command-{variant}"
    return Contender(name, run, note)


def pymicro() -> Contender:
    """pymicro-wakeword: one feature front end, all its bundled wake words on every feature."""
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

    words = [MicroWakeWord.from_builtin(Model(m)) for m in PYMICRO_MODELS]

    def run(audio: np.ndarray) -> list[str]:
        for w in words:
            w.reset()
        features = MicroWakeWordFeatures()
        found = []
        for b in blocks(audio):
            for f in features.process_streaming(b.tobytes()):
                found += [w.id for w in words if w.process_streaming(f)]
        return found

    return Contender("pymicro-wakeword", run, f"{len(words)} wake words: {', '.join(PYMICRO_MODELS)}")


def pyopen() -> Contender:
    """pyopen-wakeword: mel + embedding models once, then all its bundled wake-word models."""
    from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

    features = OpenWakeWordFeatures.from_builtin()
    words = [OpenWakeWord.from_builtin(Model(m)) for m in PYOPEN_MODELS]

    def run(audio: np.ndarray) -> list[str]:
        features.reset()
        for w in words:
            w.reset()
        found = []
        for b in blocks(audio):
            for emb in features.process_streaming(b.tobytes()):
                found += [w.id for w in words for p in w.process_streaming(emb) if p > 0.5]
        return found

    return Contender("pyopen-wakeword", run, f"{len(words)} wake words: {', '.join(PYOPEN_MODELS)}")


FACTORIES: dict[str, Callable[[], Contender]] = {
    "baseline": baseline,
    "kws-command-every-hop": lambda: kws("every-hop"),
    "kws-command-event-driven": lambda: kws("event-driven"),
    "kws-plain": lambda: kws("plain"),
    "pymicro-wakeword": pymicro,
    "pyopen-wakeword": pyopen,
}


def load(names: Sequence[str]) -> tuple[dict[str, Contender], dict[str, str]]:
    """The contenders that load here, and the reason for each that does not."""
    loaded, skipped = {}, {}
    for name in names:
        try:
            loaded[name] = FACTORIES[name]()
        except ImportError as exc:
            skipped[name] = f"not installed ({exc.name}): pip install -e '.[bench]'"
        except Exception as exc:  # a row that cannot run says why; the others still run
            skipped[name] = f"cannot load: {exc!r}"
    return loaded, skipped


# ----------------------------------------------------------------------------- measuring


def cpu_rounds(contenders: dict[str, Contender], audio: dict[str, np.ndarray], rounds: int,
               progress: Callable[[str], None] = lambda _: None) -> dict[str, dict[str, Any]]:
    """{row: {condition: {ms_per_s: median, rounds: [...], detections: n}}}, interleaved rounds."""
    order = list(contenders)
    warm = next(iter(audio.values()))[: 2 * RATE]
    for c in contenders.values():  # first calls allocate and fault pages in: not part of any round
        c.run(warm)
    out: dict[str, dict[str, Any]] = {n: {c: {"rounds": []} for c in audio} for n in order}
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            for cond, samples in audio.items():
                t0 = time.process_time()
                found = contenders[name].run(samples)
                used = time.process_time() - t0
                cell = out[name][cond]
                cell["rounds"].append(1000 * used / (len(samples) / RATE))
                cell["detections"] = len(found)
                cell["found"] = found
        progress(f"round {r + 1}/{rounds} done")
    for row in out.values():
        for cell in row.values():
            cell["ms_per_s"] = statistics.median(cell["rounds"])
    return out


def peak_rss(name: str, speech_wav: Path, timeout: float = 600) -> dict[str, Any]:
    """Peak RSS of one contender in a fresh interpreter (see `child`)."""
    cmd = [sys.executable, "-m", "benchmarks.cpu_compare", "--child", name, "--child-wav", str(speech_wav)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).resolve().parents[1])
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def child(name: str, wav: Path) -> None:
    """One contender alone: RSS after its imports+load, and peak RSS after the speech stream."""
    from benchmarks import procstat

    audio = read_wav(wav)
    before = procstat.memory().rss_mb
    contender = FACTORIES[name]()
    loaded = procstat.memory().rss_mb
    contender.run(audio)
    mem = procstat.memory()
    print(json.dumps({"rss_start_mb": before, "rss_loaded_mb": loaded, "vmhwm_mb": mem.hwm_mb}))


# ----------------------------------------------------------------------------- report


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    r = a / b
    return f"{r:.2f}x" if r < 1 else f"{r:.1f}x"


def table(result: dict[str, Any]) -> str:
    cpu, rss, skipped = result["cpu"], result["rss"], result["skipped"]
    conds = result["conditions"]
    lines = [f"ms CPU per s of audio (median of {result['rounds']} interleaved rounds; process time, all threads)",
             f"{'row':<26}" + "".join(f"{c:>10}" for c in conds) + f"{'peak RSS':>11}  note"]
    for name in ROWS:
        if name in skipped:
            lines.append(f"{name:<26}skipped: {skipped[name]}")
            continue
        r = rss.get(name, {})
        mb = f"{r['vmhwm_mb']:.1f} MB" if "vmhwm_mb" in r else "-"
        lines.append(f"{name:<26}" + "".join(f"{cpu[name][c]['ms_per_s']:>10.3f}" for c in conds)
                     + f"{mb:>11}  {result['notes'][name]}")
    lines.append("detections per condition: " + "; ".join(
        f"{n} " + "/".join(str(cpu[n][c].get("detections", "-")) for c in conds) for n in cpu if n != "baseline"))
    med = {n: {c: cpu[n][c]["ms_per_s"] for c in conds} for n in cpu}
    every_hop, event, micro = (med.get(k) for k in ("kws-command-every-hop", "kws-command-event-driven",
                                                "pymicro-wakeword"))
    lines.append(f"{'ratios':<26}" + "".join(f"{c:>10}" for c in conds))
    lines.append(f"{'every-hop / event-driven':<26}" + "".join(
        f"{ratio(every_hop[c] if every_hop else None, event[c] if event else None):>10}" for c in conds))
    lines.append(f"{'event-driven / pymicro':<26}" + "".join(
        f"{ratio(event[c] if event else None, micro[c] if micro else None):>10}" for c in conds))
    expected = result.get("mix_commands", [])
    lines.append(f"mix commands ({len(expected)}): {' '.join(expected)}")
    for name in ("kws-command-every-hop", "kws-command-event-driven"):
        if name in cpu:
            got = cpu[name]["mix"].get("found", [])
            lines.append(f"  {name}: {' '.join(got) or '-'}" + ("  (= the commands)" if got == expected else ""))
    if "rss_error" in result:
        lines.append(f"peak RSS not measured: {result['rss_error']}")
    for name, r in rss.items():
        if "error" in r:
            lines.append(f"peak RSS of {name} failed: {r['error']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cpu_compare", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--speech-s", type=float, default=120.0, help="seconds of speech and of the mix (>= 120 for "
                                                                   "the reported figures)")
    ap.add_argument("--quiet-s", type=float, default=60.0, help="seconds of silence and of room noise")
    ap.add_argument("--no-rss", action="store_true", help="skip the per-contender peak RSS subprocesses")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", choices=ROWS, help=argparse.SUPPRESS)
    ap.add_argument("--child-wav", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.child_wav)
        return 0
    if args.rounds < 1 or args.speech_s <= 0 or args.quiet_s <= 0:
        print("cpu_compare: --rounds must be >= 1 and --speech-s/--quiet-s > 0", file=sys.stderr)
        return 2
    audio_dir = shared_audio()
    audio = conditions(args.speech_s, args.quiet_s, audio_dir)
    contenders, skipped = load(ROWS)
    for name, why in skipped.items():
        print(f"skipping {name}: {why}", file=sys.stderr)
    cpu = cpu_rounds(contenders, audio, args.rounds, lambda s: print(s, file=sys.stderr))
    result: dict[str, Any] = {
        "rounds": args.rounds, "conditions": list(audio),
        "audio_s": {c: len(a) / RATE for c, a in audio.items()}, "cpu": cpu, "skipped": skipped,
        "notes": {n: c.note for n, c in contenders.items()}, "rss": {}, "mix_commands": mix_commands(args.speech_s),
    }
    if not args.no_rss:
        with tempfile.TemporaryDirectory(prefix="kws-cpu-compare-") as tmp:
            wav = Path(tmp) / "speech.wav"
            write_wav(wav, audio["speech"])
            result["rss"] = {n: peak_rss(n, wav) for n in contenders}
    else:
        result["rss_error"] = "--no-rss"
    print("audio: " + ", ".join(f"{c} {s:.0f} s" for c, s in result["audio_s"].items()))
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
