"""Plain keyword spotting vs command mode, on the synthetic corpus and the shared clips.

Measures, for the plain decider and for `CommandGate` after it:

* false accepts per hour on keyword-free continuous speech: the synthetic prose
  (``prose/*.wav``) and the four shared LibriSpeech sentences (as they are, and with
  0.5 s of room tone on each side);
* recall on isolated keywords: the synthetic keyword clips (as they are, padded with
  0.5 s of room tone, and joined back to back per voice, i.e. commands 0.2-1.3 s apart)
  and the shared keyword clips padded with room tone (every word in order);
* added latency after the end of the word (offline, from stream positions: the hop at
  which the accept is emitted minus ``word_end_s``), p50/p95;
* the gate's CPU time per 20 ms hop;
* a trade-off curve over the main knobs.

Room tone is ``negatives/noise_1000ms.wav`` (a real background recording) tiled and
scaled to -60 dBFS RMS (a quiet room; ``testsupport.audio.room_tone``), not digital zeros.

The model runs once per stream (one window per hop) and its probabilities are cached
(``--cache``); the plain decider and the gate are then replayed, which makes sweeps cheap.

Usage::

    python -m benchmarks.command_mode [--corpus /tmp/kws-corpus] [--model micronet-l]
        [--sweep] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from benchmarks.accuracy_clips import add_folder_options, folder_clips, folder_error
from kws_stream.command import CommandGate, CommandParams
from kws_stream.contour import CORE_DROP_DB, Contour
from kws_stream.decision import DecisionParams
from kws_stream.errors import KwsError
from kws_stream.features import MICRONET, FeatureParams, MfccExtractor, hop_level_db
from kws_stream.pipeline import PipelineParams, Spotter
from kws_stream.verdicts import Burst, Reject, RuleId
from testsupport.audio import AUDIO, SHARED, read_wav, room_tone

LABELS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "_silence_", "_unknown_")
MODEL_FILES = {"micronet-l": "kws_micronet_l.tflite", "micronet-m": "kws_micronet_m.tflite"}
RATE = MICRONET.sample_rate
HOP_SAMPLES = MICRONET.hop_samples
PAD_S = 0.5
LIBRISPEECH = ("another_door.wav", "another_engineer.wav", "i_tell_you.wav", "testing_routine.wav")
SHARED_KEYWORDS = {
    "down.wav": ["down"], "no_1000ms.wav": ["no"], "right.wav": ["right"],
    "right_left_up.wav": ["right", "left", "up"], "yes.wav": ["yes"], "yes_1000ms.wav": ["yes"],
    "yes_no_go_stop.wav": ["yes", "no", "go", "stop"],
}


# ----------------------------------------------------------------------------- audio sets

@dataclass
class Stream:
    """One audio stream and what it should yield: `words` (keyword, word_end_s) in order.
    `speech_s`: the seconds of speech in it, when a false-accept rate should not count its
    quiet gaps (None: all of it)."""

    name: str
    audio: np.ndarray
    words: list[tuple[str, float]] = field(default_factory=list)
    group: str = ""
    speech_s: float | None = None

    @property
    def hours(self) -> float:
        return (self.speech_s if self.speech_s is not None else len(self.audio) / RATE) / 3600


def hop_levels(x: np.ndarray) -> np.ndarray:
    """Level (dBFS) of hop i = samples [320 i, 320 (i + 1))."""
    n = len(x) // HOP_SAMPLES
    return np.array([hop_level_db(x[i * HOP_SAMPLES:(i + 1) * HOP_SAMPLES]) for i in range(n)])


def padded(x: np.ndarray, seconds: float = PAD_S) -> np.ndarray:
    """`x` with `seconds` of room tone before and after: a command spoken in a room."""
    return np.concatenate([room_tone(seconds), x, room_tone(seconds)])


def load_sets(corpus: Path) -> dict[str, list[Stream]]:
    sets: dict[str, list[Stream]] = {}
    sets["prose"] = [Stream(p.name, read_wav(p)) for p in sorted((corpus / "prose").glob("*.wav"))]
    libri = [read_wav(AUDIO / "negatives" / f) for f in LIBRISPEECH]
    sets["librispeech"] = [Stream(f, x) for f, x in zip(LIBRISPEECH, libri)]
    sets["librispeech_padded"] = [Stream(f + "+pad", padded(x)) for f, x in zip(LIBRISPEECH, libri)]
    rows = list(csv.DictReader(open(corpus / "keywords.csv")))
    clips = [(r, read_wav(corpus / r["path"])) for r in rows]
    sets["synthetic_keywords"] = [Stream(r["path"], x, [(r["keyword"], float(r["word_end_s"]))], r["voice"])
                                  for r, x in clips]
    sets["synthetic_keywords_padded"] = [
        Stream(r["path"] + "+pad", padded(x), [(r["keyword"], float(r["word_end_s"]) + PAD_S)], r["voice"])
        for r, x in clips]
    by_voice: dict[str, list[tuple[dict, np.ndarray]]] = {}
    for r, x in clips:
        by_voice.setdefault(r["voice"], []).append((r, x))
    joined: list[Stream] = []
    for voice, items in sorted(by_voice.items()):
        order = np.random.default_rng(len(joined)).permutation(len(items))
        parts, words, t = [room_tone(PAD_S)], [], PAD_S
        for k in order:
            r, x = items[k]
            parts.append(x)
            words.append((r["keyword"], t + float(r["word_end_s"])))
            t += len(x) / RATE
        parts.append(room_tone(PAD_S))
        joined.append(Stream(f"joined:{voice}", np.concatenate(parts), words, voice))
    sets["synthetic_joined"] = joined
    shared = []
    for clip, kws in SHARED_KEYWORDS.items():
        x = read_wav(AUDIO / "keywords" / clip)
        # word k of a joined clip ends inside second k; the end time is unknown (nan)
        shared.append(Stream(clip + "+pad", padded(x), [(k, math.nan) for k in kws]))
    sets["shared_keywords_padded"] = shared
    sets["shared_keywords"] = [Stream(c, read_wav(AUDIO / "keywords" / c), [(k, math.nan) for k in kws])
                               for c, kws in SHARED_KEYWORDS.items()]
    return sets


TV_LEVELS_DB = (10, 20, 30)  # background speech this far below the keyword's level
AFTER_SPEECH_GAPS_S = (0.5, 0.75, 1.0)  # pause between talking and the command


def speech_level_db(x: np.ndarray) -> float:
    """Active speech level: mean power of the hops within 20 dB of the loudest hop (dBFS)."""
    lv = hop_levels(x)
    loud = lv[lv >= lv.max() - 20.0]
    return 10 * math.log10(float(np.mean(10 ** (loud / 10))))


def scaled(x: np.ndarray, gain_db: float) -> np.ndarray:
    return np.clip(np.round(x.astype(np.float64) * 10 ** (gain_db / 20)), -32768, 32767).astype(np.int16)


def add_scenarios(sets: dict[str, list[Stream]], corpus: Path) -> None:
    """What a user should expect: "with a TV on" (keywords over continuous synthetic prose
    TV_LEVELS_DB below the keyword's level; the prose alone at those levels gives the TV's
    own false accepts) and "after talking" (a keyword AFTER_SPEECH_GAPS_S after 2 s of
    prose at the keyword's level: what pre_silence costs)."""
    rng = np.random.default_rng(1234)
    prose = [s.audio for s in sets["prose"]]
    prose_level = [speech_level_db(x) for x in prose]
    rows = list(csv.DictReader(open(corpus / "keywords.csv")))
    clips = [(r, read_wav(corpus / r["path"])) for r in rows]
    levels = [speech_level_db(x) for _, x in clips]
    ref = float(np.median(levels))

    def excerpt(n: int) -> tuple[np.ndarray, float]:
        k = int(rng.integers(len(prose)))
        start = int(rng.integers(0, len(prose[k]) - n))
        return prose[k][start:start + n], prose_level[k]

    for db in TV_LEVELS_DB:
        streams = []
        for (r, x), level in zip(clips, levels):
            clip = padded(x)
            bg, bg_level = excerpt(len(clip))
            mix = np.clip(clip.astype(np.int32) + scaled(bg, level - db - bg_level), -32768, 32767).astype(np.int16)
            streams.append(Stream(f"{r['path']}+tv-{db}", mix, [(r["keyword"], float(r["word_end_s"]) + PAD_S)]))
        sets[f"tv_keywords_-{db}dB"] = streams
        sets[f"tv_alone_-{db}dB"] = [
            Stream(f"{s.name}+tv-{db}", np.clip(scaled(s.audio, ref - db - lv).astype(np.int32)
                                                  + room_tone(len(s.audio) / RATE), -32768, 32767).astype(np.int16))
            for s, lv in zip(sets["prose"], prose_level)]
    for gap in AFTER_SPEECH_GAPS_S:
        streams = []
        for (r, x), level in zip(clips, levels):
            a = max(0, int((float(r["word_start_s"]) - 0.05) * RATE))
            b = min(len(x), int((float(r["word_end_s"]) + 0.05) * RATE))
            word = x[a:b]
            talk, talk_level = excerpt(2 * RATE)
            parts = [room_tone(PAD_S), scaled(talk, level - talk_level), room_tone(gap), word, room_tone(PAD_S)]
            end = PAD_S + 2.0 + gap + (b - a) / RATE - 0.05
            streams.append(Stream(f"{r['path']}+after{gap}", np.concatenate(parts), [(r["keyword"], end)]))
        sets[f"after_speech_{gap}s"] = streams


def is_negative(set_name: str) -> bool:
    return (set_name in NEGATIVE_SETS or set_name.startswith("tv_alone")
            or split_of(set_name)[1] in NEGATIVE_KINDS)


NEGATIVE_SETS = ("prose", "librispeech", "librispeech_padded")
SCENARIO_SETS = tuple([f"tv_keywords_-{db}dB" for db in TV_LEVELS_DB]
                      + [f"after_speech_{g}s" for g in AFTER_SPEECH_GAPS_S])
POSITIVE_SETS = ("synthetic_keywords", "synthetic_keywords_padded", "synthetic_joined",
                 "shared_keywords", "shared_keywords_padded")


# ----------------------------------------------------------------------------- dev / validation

REAL_DEV = AUDIO / "real-dev"
SPLITS = ("dev", "val")
# Quiet before each word or utterance, cycling; every other gap is digital silence (a muted or
# gated source), the rest room tone. Issue 15: nothing may go deaf after a long quiet.
GAPS_S = (1.0, 2.0, 3.5, 5.0, 10.0, 1.5, 3.0, 60.0, 1.0, 2.0, 1.5, 3.0, 1.0, 2.0, 1.5, 3.0)  # mean 6.3 s
KEYWORDS_WITH_GAPS_EVERY = 3  # every 3rd keyword clip goes into the gapped stream (CPU budget)
TV_DB = 20  # the TV: background speech 20 dB below the command
NEGATIVE_KINDS = ("real_speech", "tv_alone", "prose", "negatives")
KIND_TITLES = {
    "real_speech": "real running speech (LibriSpeech + AMI), FA/h",
    "tv_alone": f"real speech as a TV {TV_DB} dB below a command's level, FA/h",
    "prose": "synthetic prose, FA/h",
    "negatives": "--negatives, FA/h",
    "keywords_padded": "isolated synthetic keywords in room tone",
    "keywords_gaps": "synthetic keywords after 1-60 s of quiet (room tone / digital silence)",
    "keywords_tv": f"synthetic keywords with real speech {TV_DB} dB below",
    "shared_padded": "real keyword clips (shared/audio/keywords) in room tone",
    "positives": "--positives",
}


def split_of(name: str) -> tuple[str, str]:
    """'dev:real_speech' -> ('dev', 'real_speech')."""
    split, _, kind = name.partition(":")
    return split, kind


def speaker_of(path: Path) -> str:
    """LibriSpeech `ls_<speaker>-<chapter>-<utterance>` -> the speaker; an AMI excerpt is its own."""
    stem = path.stem
    return stem.split("-")[0] if stem.startswith("ls_") else stem


def real_dev_split(split: str, folder: Path = REAL_DEV) -> list[Path]:
    """Half of real-dev by speaker: the sorted speakers alternate dev, val, dev, ...
    (63 + 63 LibriSpeech speakers, 5 + 5 AMI excerpts). Tune on dev, never on val."""
    files = sorted(folder.glob("*.wav"))
    speakers = sorted({speaker_of(f) for f in files})
    part = {spk: SPLITS[i % 2] for i, spk in enumerate(speakers)}
    return [f for f in files if part[speaker_of(f)] == split]


def gapped(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, list[float]]:
    """`parts` each after a quiet gap from GAPS_S (alternately room tone and digital
    silence), then 1 s of room tone; returns the audio and where each part starts (s)."""
    chunks, starts, t = [], [], 0
    for i, x in enumerate(parts):
        g = GAPS_S[i % len(GAPS_S)]
        quiet = np.zeros(int(g * RATE), dtype=np.int16) if i % 2 else room_tone(g)
        chunks += [quiet, x]
        starts.append((t + len(quiet)) / RATE)
        t += len(quiet) + len(x)
    chunks.append(room_tone(1.0))
    return np.concatenate(chunks), starts


def user_sets(negatives: Path | None, positives: Path | None) -> dict[str, list[Stream]]:
    """--negatives (every detection is a false accept) and --positives (keywords labelled
    by name or folder, as benchmarks.accuracy_clips.folder_label reads them)."""
    sets: dict[str, list[Stream]] = {}
    if negatives is not None:
        sets["user:negatives"] = [Stream(f"user:{c.path}", read_wav(c.path))
                                  for c in folder_clips(negatives, "negatives", LABELS[:10])]
    if positives is not None:
        sets["user:positives"] = [Stream(f"user:{c.path}", read_wav(c.path), [(w, math.nan) for w in c.expected])
                                  for c in folder_clips(positives, "positives", LABELS[:10])]
    return sets


def split_sets(split: str, corpus: Path) -> dict[str, list[Stream]]:
    """Everything measured on one side of the split: its half of real-dev and its corpus."""
    real = [read_wav(p) for p in real_dev_split(split)]
    speech_s = sum(len(x) for x in real) / RATE
    audio, _ = gapped(real)
    sets = {f"{split}:real_speech": [Stream(f"{split}:real_speech", audio, speech_s=speech_s)]}
    sets[f"{split}:prose"] = [Stream(f"{split}:{p.name}", read_wav(p)) for p in sorted((corpus / "prose").glob("*.wav"))]
    rows = list(csv.DictReader(open(corpus / "keywords.csv")))
    clips = [(r, read_wav(corpus / r["path"])) for r in rows]
    levels = [speech_level_db(x) for _, x in clips]
    ref = float(np.median(levels))
    bed = np.concatenate(real)
    bed_level = speech_level_db(bed)
    tv = scaled(bed, ref - TV_DB - bed_level)
    sets[f"{split}:tv_alone"] = [Stream(f"{split}:tv_alone", np.clip(
        tv.astype(np.int32) + room_tone(len(tv) / RATE), -32768, 32767).astype(np.int16))]
    sets[f"{split}:keywords_padded"] = [
        Stream(f"{split}:{r['path']}+pad", padded(x), [(r["keyword"], float(r["word_end_s"]) + PAD_S)], r["voice"])
        for r, x in clips]
    rng = np.random.default_rng(7)
    streams = []
    for (r, x), level in zip(clips, levels):
        clip = padded(x)
        start = int(rng.integers(0, len(bed) - len(clip)))
        mix = clip.astype(np.int32) + scaled(bed[start:start + len(clip)], level - TV_DB - bed_level)
        streams.append(Stream(f"{split}:{r['path']}+tv", np.clip(mix, -32768, 32767).astype(np.int16),
                              [(r["keyword"], float(r["word_end_s"]) + PAD_S)], r["voice"]))
    sets[f"{split}:keywords_tv"] = streams
    by_voice: dict[str, list[tuple[dict, np.ndarray]]] = {}
    for r, x in clips[::KEYWORDS_WITH_GAPS_EVERY]:
        by_voice.setdefault(r["voice"], []).append((r, x))
    streams = []
    for voice, items in sorted(by_voice.items()):
        audio, starts = gapped([x for _, x in items])
        words = [(r["keyword"], t + float(r["word_end_s"])) for (r, _), t in zip(items, starts)]
        streams.append(Stream(f"{split}:gaps:{voice}", audio, words, voice))
    sets[f"{split}:keywords_gaps"] = streams
    if split == "val":  # real keyword clips: never tuned on (the tests only check they work)
        sets["val:shared_padded"] = [
            Stream(f"val:{c}+pad", padded(read_wav(AUDIO / "keywords" / c)), [(k, math.nan) for k in kws])
            for c, kws in SHARED_KEYWORDS.items()]
    return sets


# ----------------------------------------------------------------------------- model pass

@dataclass
class Trace:
    """Per-hop data of one stream: levels[i] for hop i, probs[i] for the window ending
    with hop i (NaN rows before the first full window)."""

    levels: np.ndarray
    probs: np.ndarray


def compute_trace(x: np.ndarray, model) -> Trace:
    p = FeatureParams()
    extractor = MfccExtractor(p)
    frames_total = (len(x) - p.frame_length) // p.frame_step + 1 if len(x) >= p.frame_length else 0
    idx = np.arange(frames_total)[:, None] * p.frame_step + np.arange(p.frame_length)
    mfcc = extractor.frames(x[idx]) if frames_total else np.zeros((0, p.num_mfcc))
    n_hops = frames_total + 1  # frame F (1-based) ends at 320 (F + 1): hop index F
    probs = np.full((n_hops, len(LABELS)), np.nan, dtype=np.float32)
    for f in range(p.num_frames, frames_total + 1):
        probs[f] = model.probabilities(mfcc[f - p.num_frames:f])
    return Trace(hop_levels(x[: n_hops * HOP_SAMPLES]), probs)


def traces_for(sets: dict[str, list[Stream]], model_name: str, cache: Path) -> dict[str, Trace]:
    from kws_stream.backend import KeywordModel

    cache.mkdir(parents=True, exist_ok=True)
    model = None
    out = {}
    for streams in sets.values():
        for s in streams:
            key = hashlib.sha1(model_name.encode() + s.audio.tobytes()).hexdigest()[:20]
            path = cache / f"{key}.npz"
            if path.exists():
                data = np.load(path)
                out[s.name] = Trace(data["levels"], data["probs"])
                continue
            if model is None:
                model = KeywordModel(SHARED / "models" / MODEL_FILES[model_name], LABELS)
            trace = compute_trace(s.audio, model)
            np.savez(path, levels=trace.levels, probs=trace.probs)
            out[s.name] = trace
    return out


# ----------------------------------------------------------------------------- replay

@dataclass
class Fired:
    keyword: str
    window_end: float  # end of the window that fired (s)
    emitted: float  # stream position at which it was reported (s)


def replay(trace: Trace, decision: DecisionParams, command: CommandParams,
           voiced: np.ndarray | None = None, rule: VadRule | None = None, eager: bool = False) -> list[Fired]:
    """The pipeline's own `Spotter` over cached levels and probabilities: hop k of the
    pipeline (its frame ends at (k + 2) * 320) is trace index k + 1. With `voiced` (per-hop
    VAD flags, `vad_flags_for`), the VAD experiment instead: the gate also vetoes by `rule`
    (`VadVeto`, a rule added to the gate's), with the model at every hop (as it was measured)."""
    vad = voiced is not None and command.enabled
    spotter = Spotter(LABELS, PipelineParams(decision=decision, command=command, eager_inference=eager or vad),
                      lambda k: trace.probs[k + 1], rules=[VadVeto(voiced, rule)] if vad and voiced is not None else [])
    out: list[Fired] = []
    for k in range(len(trace.levels) - 1):
        end = (k + 2) * HOP_SAMPLES / RATE
        out.extend(Fired(d.keyword, d.end_sample / RATE, end) for d in spotter.hop(k, float(trace.levels[k + 1])))
    end = len(trace.levels) * HOP_SAMPLES / RATE
    out.extend(Fired(d.keyword, d.end_sample / RATE, end) for d in spotter.finish())
    return out


# ----------------------------------------------------------------------------- VAD evidence

VAD_AGGRESSIVENESS = (1, 2, 3)  # WebRTC VAD modes measured; column k of a flags array is mode k + 1
BACKGROUND_S = 3.0  # "is the room busy": voiced hops below the speech margin in the 3 s before the pause
QUIET_ROOM = 0.1  # ... a quiet room has fewer than 10 % of them (mode 1, the most sensitive)


VAD_US_PER_S = 155  # CPU of one SpeechFlags per second of audio (python -m benchmarks.vad_cost, 2026-12-02)


def vad_flags_for_audio(x: np.ndarray) -> np.ndarray:
    """WebRTC VAD flags per hop of `x`, one column per mode in VAD_AGGRESSIVENESS."""
    from benchmarks.vad import SpeechFlags

    return np.stack([SpeechFlags(mode).flags(x) for mode in VAD_AGGRESSIVENESS], axis=1)


def vad_flags_for(sets: dict[str, list[Stream]], traces: dict[str, Trace], cache: Path) -> dict[str, np.ndarray]:
    """WebRTC VAD flags per hop of every stream, one column per mode, aligned with its trace
    (cached next to the traces). The VAD runs over the stream from its first sample."""
    from benchmarks.vad import SpeechFlags

    out = {}
    for streams in sets.values():
        for s in streams:
            cols = []
            for mode in VAD_AGGRESSIVENESS:
                key = hashlib.sha1(f"webrtcvad{mode}".encode() + s.audio.tobytes()).hexdigest()[:20]
                path = cache / f"vad-{key}.npy"
                if path.exists():
                    flags = np.load(path)
                else:
                    flags = SpeechFlags(mode).flags(s.audio)
                    np.save(path, flags)
                n = len(traces[s.name].levels)
                cols.append(np.concatenate([flags, np.zeros(max(0, n - len(flags)), dtype=bool)])[:n])
            out[s.name] = np.stack(cols, axis=1)
    return out


@dataclass(frozen=True)
class VadFeatures:
    """What the VAD says around a burst the level rules accepted; one value per mode."""

    pause_before: tuple[int, ...]  # voiced hops in the pre_silence before the burst
    pause_after: tuple[int, ...]  # voiced hops in the after_silence after it
    background: tuple[float, ...]  # voiced fraction below the speech margin in the BACKGROUND_S before that
    row_gap: tuple[float, ...] | None  # voiced fraction of the gap after the previous short burst, when
    #                                    the burst was taken as the next command of a row (else None)


@dataclass(frozen=True)
class VadRule:
    """Veto an accepted word when the VAD says the pause around it was not free of speech.

    where="pause": more than `limit` of the pre_silence hops before it are voiced (mode `mode`);
    where="after": more than `limit` of the after_silence hops after it are voiced;
    where="row": it followed a short burst after less than pre_silence (a row of commands) and at
    least `limit` of that gap is voiced. quiet_only: only when the room is quiet (background < QUIET_ROOM)."""

    where: str
    mode: int
    limit: float
    quiet_only: bool = False

    @property
    def label(self) -> str:
        what = {"pause": f"pause before voiced > {self.limit:g} of 30 hops",
                "after": f"pause after voiced > {self.limit:g} of 12 hops"}.get(self.where,
                                                                               f"row gap voiced >= {self.limit:.0%}")
        return f"VAD mode {self.mode}: {what}" + (" (quiet room only)" if self.quiet_only else "")

    def __call__(self, f: VadFeatures) -> bool:
        k = self.mode - 1
        if self.quiet_only and f.background[0] >= QUIET_ROOM:
            return False
        if self.where == "pause":
            return f.pause_before[k] > self.limit
        if self.where == "after":
            return f.pause_after[k] > self.limit
        return f.row_gap is not None and f.row_gap[k] >= self.limit

    @property
    def cost(self) -> str:
        modes = 2 if self.quiet_only and self.mode != 1 else 1  # the background is judged with mode 1
        return f"{modes} VAD: {modes * VAD_US_PER_S / 1000:.2f} ms CPU per s ({modes * VAD_US_PER_S * 3.6 / 1000:.1f} s/h)"


def vad_rules() -> list[VadRule]:
    """The trade-off curve: the pause before the word (mode 3, the strictest; one mode 2
    point), the pause after it (mode 3) and the gap inside a row of commands (mode 2); each
    mode 3 / row rule both always and only in a quiet room."""
    out = []
    for limit in (5, 12):
        out += [VadRule("pause", 3, limit), VadRule("pause", 3, limit, quiet_only=True)]
    out += [VadRule("pause", 2, 12), VadRule("after", 3, 5), VadRule("after", 3, 5, quiet_only=True)]
    out += [VadRule("row", 2, 0.6), VadRule("row", 2, 0.6, quiet_only=True)]
    return out


class VadVeto:
    """A rule added to the gate (`kws_stream.rules.AddedRule`): vetoes a burst the level rules
    accepted when `rule` says so, from per-hop VAD flags (`voiced`: one row per hop of the
    stream, hop i = samples [320 i, 320 (i + 1)), one column per mode). The benchmark's way
    of trying VAD rules without changing the gate."""

    def __init__(self, voiced: np.ndarray, rule: VadRule | None) -> None:
        self._source = voiced
        self.rule = rule

    def _voiced(self, c: Contour, hops: np.ndarray) -> np.ndarray:
        return self._source[c.ends[hops % c.size] // HOP_SAMPLES - 1]

    def features(self, v: Burst, c: Contour) -> VadFeatures:
        h, now, oldest = c.hops, c.now, c.oldest
        speech = c.speech_db()

        def hops(a: int, b: int) -> np.ndarray:
            return np.arange(max(a, oldest), min(b, now) + 1)

        pause = hops(v.start - h.pre, v.start - 1)
        after = hops(v.end + 1, v.end + h.after)
        bg = hops(v.start - h.pre - int(round(BACKGROUND_S / h.seconds)), v.start - h.pre - 1)
        quiet = np.array([c.level(k) < speech for k in bg], dtype=bool)
        flags_bg = self._voiced(c, bg) & quiet[:, None] if len(bg) else np.zeros((0, 3), dtype=bool)
        threshold = max(speech, c.level(v.peak) - CORE_DROP_DB)
        start, before = c.burst_start(v.peak, threshold, oldest)
        row_gap = None
        if before >= oldest and start - before - 1 < h.pre:
            gap = np.arange(before + 1, start)
            row_gap = tuple(self._voiced(c, gap).mean(axis=0)) if len(gap) else (1.0,) * 3
        return VadFeatures(tuple(int(x) for x in self._voiced(c, pause).sum(axis=0)),
                           tuple(int(x) for x in self._voiced(c, after).sum(axis=0)),
                           tuple(flags_bg.mean(axis=0)) if len(bg) else (0.0,) * 3, row_gap)

    def __call__(self, burst: Burst, contour: Contour) -> Reject | None:
        if self.rule is None or not self.rule(self.features(burst, contour)):
            return None
        return Reject(RuleId.EXTRA, burst, "vad: " + self.rule.label.replace("{", "{{").replace("}", "}}"))


@dataclass
class Result:
    fa: dict[str, int] = field(default_factory=dict)
    hours: dict[str, float] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    wrong: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    duplicates: int = 0  # the same keyword reported twice within DUPLICATE_S (one word, two reports)


def match(words: list[tuple[str, float]], fired: list[Fired], joined: bool) -> tuple[int, int, list[float]]:
    """Greedy in-order matching; returns (hits, wrong detections, latencies)."""
    hits, lat, used = 0, [], set()
    for kw, end in words:
        for j, f in enumerate(fired):
            if j in used or f.keyword != kw:
                continue
            if joined and not math.isnan(end) and not (end - 1.5 <= f.window_end <= end + 1.5):
                continue
            used.add(j)
            hits += 1
            if not math.isnan(end):
                lat.append(f.emitted - end)
            break
    return hits, len(fired) - len(used), lat


def evaluate(sets, traces, decision: DecisionParams, command: CommandParams,
             names: Iterable[str] | None = None, flags: dict[str, np.ndarray] | None = None,
             rule: VadRule | None = None) -> Result:
    res = Result()
    for set_name in names or sets:
        streams = sets[set_name]
        for s in streams:
            fired = replay(traces[s.name], decision, command, None if flags is None else flags[s.name], rule)
            res.duplicates += sum(1 for a, b in zip(fired, fired[1:])
                                  if a.keyword == b.keyword and b.window_end - a.window_end < DUPLICATE_S)
            if is_negative(set_name):
                res.fa[set_name] = res.fa.get(set_name, 0) + len(fired)
                res.hours[set_name] = res.hours.get(set_name, 0.0) + s.hours
                if fired and set_name != "prose":
                    res.failures.append(f"{s.name}: {[f.keyword for f in fired]}")
            else:
                hits, wrong, lat = match(s.words, fired, joined=len(s.words) > 1 or set_name in SCENARIO_SETS)
                res.hits[set_name] = res.hits.get(set_name, 0) + hits
                res.total[set_name] = res.total.get(set_name, 0) + len(s.words)
                res.wrong[set_name] = res.wrong.get(set_name, 0) + wrong
                if set_name in ("synthetic_keywords_padded", "synthetic_joined") or \
                        split_of(set_name)[1] in ("keywords_padded", "keywords_gaps"):
                    res.latencies.extend(lat)
                if set_name.startswith("shared") and [f.keyword for f in fired] != [w for w, _ in s.words]:
                    res.failures.append(f"{s.name}: {[f.keyword for f in fired]}")
    return res


DUPLICATE_S = 1.0  # nobody says one command twice within a second: two reports are one word


def gate_cpu_us(sets, command: CommandParams, seconds: float = 300.0) -> float:
    """Mean wall time of CommandGate.push per hop (levels computed from the samples)."""
    x = np.concatenate([s.audio for s in sets["prose"]])[: int(seconds * RATE)]
    gate = CommandGate(command)
    hops = [x[i:i + HOP_SAMPLES] for i in range(0, len(x) - HOP_SAMPLES + 1, HOP_SAMPLES)]
    t0 = time.perf_counter()
    for i, hop in enumerate(hops):
        gate.push(hop, (i + 1) * HOP_SAMPLES)
    return (time.perf_counter() - t0) / len(hops) * 1e6


# ----------------------------------------------------------------------------- item 4 targets

TARGET_FA_H = 2.0
TARGET_RECALL = 0.97  # of plain mode's, isolated keywords
TARGET_RECALL_TV = 0.90  # of plain mode's, with a TV 20 dB below
TARGET_LATENCY_S = 0.4


def _names(sets, split: str) -> list[str]:
    order = list(KIND_TITLES)
    names = [n for n in sets if split_of(n)[0] == split]
    return sorted(names, key=lambda n: order.index(split_of(n)[1]))


def describe(sets, name: str) -> str:
    split, kind = split_of(name)
    streams = sets[name]
    if is_negative(name):
        minutes = sum(s.hours for s in streams) * 60
        return f"{KIND_TITLES[kind]} ({minutes:.1f} min)"
    words = sum(len(s.words) for s in streams)
    return f"{KIND_TITLES[kind]} ({words} words)"


def target_rows(sets, traces, decision: DecisionParams, command: CommandParams,
                split: str) -> list[dict[str, str]]:
    """The issue's item 4 on one side of the split: plain vs command mode, target, met?"""
    plain_p = CommandParams(enabled=False)
    rows = []
    lat: list[float] = []
    dups = 0
    for name in _names(sets, split):
        p, c = evaluate(sets, traces, decision, plain_p, [name]), evaluate(sets, traces, decision, command, [name])
        lat += c.latencies
        dups += c.duplicates
        if is_negative(name):
            fp, fc = p.fa[name] / p.hours[name], c.fa[name] / c.hours[name]
            rows.append({"measure": describe(sets, name), "target": f"<= {TARGET_FA_H:g}",
                         "plain": f"{fp:.0f}", "command": f"{fc:.1f} ({c.fa[name]})",
                         "met": "yes" if fc <= TARGET_FA_H else "NO"})
        else:
            goal = TARGET_RECALL_TV if split_of(name)[1] == "keywords_tv" else TARGET_RECALL
            hp, hc, n = p.hits[name], c.hits[name], p.total[name]
            ratio = hc / hp if hp else math.nan
            rows.append({"measure": describe(sets, name), "target": f">= {goal:.0%} of plain",
                         "plain": f"{hp}/{n}", "command": f"{hc}/{n} ({ratio:.1%} of plain)",
                         "met": "yes" if ratio >= goal else "NO"})
    if lat:
        p95 = float(np.percentile(lat, 95))
        rows.append({"measure": "added latency after the word, p95 (offline, stream positions)",
                     "target": f"<= {TARGET_LATENCY_S * 1000:.0f} ms", "plain": "-",
                     "command": f"{p95 * 1000:.0f} ms", "met": "yes" if p95 <= TARGET_LATENCY_S else "NO"})
    rows.append({"measure": f"same keyword twice within {DUPLICATE_S:g} s (every set above)", "target": "0",
                 "plain": "-", "command": str(dups), "met": "yes" if dups == 0 else "NO"})
    return rows


@dataclass(frozen=True)
class Variant:
    """An alternative rule set measured side by side: its decision and gate parameters,
    and what it costs per hour on top of the default (model passes it adds)."""

    label: str
    decision: DecisionParams
    command: CommandParams
    cost: str = "~0 (posteriors already computed)"
    vad: VadRule | None = None


def variants(base: CommandParams, decision: DecisionParams) -> list[Variant]:
    worst = ("right", "left", "stop")  # the issue: most false accepts on real speech
    out = [Variant("defaults", decision, base)]
    for t in (0.8, 0.9):
        th = {k: t for k in worst}
        out.append(Variant(f"right/left/stop threshold {t:g}", dataclasses.replace(decision, thresholds=th), base))
    for r in (1.0,):
        out.append(Variant(f"word_score_ratio {r:g}", decision, dataclasses.replace(base, word_score_ratio=r)))
    for v in (0.8,):
        out.append(Variant(f"pre_silence {v:g}", decision, dataclasses.replace(base, pre_silence=v)))
    for v in (0.25, 0.3):
        out.append(Variant(f"post_silence {v:g}", decision, dataclasses.replace(base, post_silence=v),
                           f"~0; {(max(v, base.after_silence) - base.after_silence) * 1000:+.0f} ms latency"))
    for v in (0.2, 0.3, 0.35):
        out.append(Variant(f"after_silence {v:g}", decision, dataclasses.replace(base, after_silence=v),
                           f"~0; {(v - base.after_silence) * 1000:+.0f} ms latency"))
    for v in (15.0, 25.0):
        out.append(Variant(f"min_snr_db {v:g}", decision, dataclasses.replace(base, min_snr_db=v)))
    return out


def variant_rows(sets, traces, chosen: Sequence[Variant],
                 flags: dict[str, np.ndarray] | None = None) -> list[dict[str, str]]:
    """Each variant on dev and val: FA/h on real speech, TV and prose; recall vs plain."""
    plain_p = CommandParams(enabled=False)
    rows = []
    plain_hits = {}
    for name in sets:
        if not is_negative(name) and split_of(name)[0] in SPLITS:
            plain_hits[name] = evaluate(sets, traces, DecisionParams(), plain_p, [name]).hits[name]
    for v in chosen:
        row_ = {"variant": v.label}
        for split in SPLITS:
            names = _names(sets, split)
            r = evaluate(sets, traces, v.decision, v.command, names, flags if v.vad else None, v.vad)
            for name in names:
                kind = split_of(name)[1]
                short = {"real_speech": "real", "tv_alone": "TV", "prose": "prose", "keywords_padded": "kw",
                         "keywords_gaps": "gaps", "keywords_tv": "kw+TV", "shared_padded": "shared"}.get(kind)
                if short is None:
                    continue
                if is_negative(name):
                    row_[f"{split} {short} FA/h"] = f"{r.fa[name] / r.hours[name]:.1f}"
                else:
                    row_[f"{split} {short} %"] = f"{100 * r.hits[name] / max(1, plain_hits[name]):.1f}"
        row_["extra CPU"] = v.cost
        rows.append(row_)
    return rows


# ----------------------------------------------------------------------------- report

def row(label: str, res: Result) -> dict[str, str]:
    def fah(name: str) -> str:
        return f"{res.fa.get(name, 0) / res.hours[name]:.1f}" if res.hours.get(name) else "-"

    def rec(name: str) -> str:
        return f"{res.hits.get(name, 0)}/{res.total.get(name, 0)}"

    lat = np.array(res.latencies) if res.latencies else np.array([math.nan])
    return {
        "setting": label,
        "prose FA/h": fah("prose"),
        "LibriSpeech FA (raw/pad)": f"{res.fa.get('librispeech', 0)}/{res.fa.get('librispeech_padded', 0)}",
        "synth kw": rec("synthetic_keywords"),
        "synth kw padded": rec("synthetic_keywords_padded"),
        "synth joined": rec("synthetic_joined"),
        "shared kw (raw/pad)": f"{rec('shared_keywords')} / {rec('shared_keywords_padded')}",
        "wrong kw": str(sum(res.wrong.values())),
        "lat p50/p95 ms": f"{np.percentile(lat, 50) * 1000:.0f}/{np.percentile(lat, 95) * 1000:.0f}",
    }


def table(rows: Sequence[dict[str, str]], markdown: bool) -> str:
    cols = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in cols]
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    else:
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(r[c].ljust(w) for c, w in zip(cols, widths)) for r in rows]
    return "\n".join(lines)


def sweep_settings(base: CommandParams) -> list[tuple[str, CommandParams]]:
    out = []
    for v in (0.15, 0.2, 0.25, 0.3):
        out.append((f"post_silence={v}", dataclasses.replace(base, post_silence=v)))
    for v in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        out.append((f"pre_silence={v}", dataclasses.replace(base, pre_silence=v)))
    for v in (0.7, 0.8, 0.9, 1.0, 1.2, 1.5):
        out.append((f"max_word={v}", dataclasses.replace(base, max_word=v)))
    for v in (6.0, 8.0, 10.0, 12.0, 15.0):
        out.append((f"speech_margin_db={v}", dataclasses.replace(base, speech_margin_db=v)))
    for v in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2):
        out.append((f"word_score_ratio={v}", dataclasses.replace(base, word_score_ratio=v)))
    for v in (0.0, 15.0, 20.0, 25.0):
        out.append((f"min_snr_db={v}", dataclasses.replace(base, min_snr_db=v)))
    return out


def scenario_rows(sets, traces, decision: DecisionParams, command: CommandParams) -> list[dict[str, str]]:
    """Quiet room / TV / after talking / conversation: recall (command vs plain) and FA/h."""
    plain_p = CommandParams(enabled=False)

    def recall(name: str, params: CommandParams) -> tuple[int, int]:
        r = evaluate(sets, traces, decision, params, [name])
        return r.hits[name], r.total[name]

    def fah(name: str, params: CommandParams) -> float:
        r = evaluate(sets, traces, decision, params, [name])
        return r.fa[name] / r.hours[name]

    def rec_row(label: str, name: str, fa_name: str | None) -> dict[str, str]:
        (hp, n), (hc, _) = recall(name, plain_p), recall(name, command)
        out = {"scenario": label, "keywords found (plain)": f"{hp}/{n}",
               "keywords found (command)": f"{hc}/{n} ({100 * hc / max(hp, 1):.0f}% of plain)",
               "false accepts/h (plain)": "-", "false accepts/h (command)": "-"}
        if fa_name:
            out["false accepts/h (plain)"] = f"{fah(fa_name, plain_p):.0f}"
            out["false accepts/h (command)"] = f"{fah(fa_name, command):.1f}"
        return out

    rows = [rec_row("quiet room (keyword padded with -60 dBFS room tone)", "synthetic_keywords_padded", None)]
    for db in TV_LEVELS_DB:
        rows.append(rec_row(f"TV on, {db} dB below the keyword", f"tv_keywords_-{db}dB", f"tv_alone_-{db}dB"))
    for gap in AFTER_SPEECH_GAPS_S:
        rows.append(rec_row(f"command {gap} s after talking", f"after_speech_{gap}s", None))
    conv = {"scenario": "in conversation (keyword-free prose, full level)", "keywords found (plain)": "-",
            "keywords found (command)": "-", "false accepts/h (plain)": f"{fah('prose', plain_p):.0f}",
            "false accepts/h (command)": f"{fah('prose', command):.1f}"}
    rows.append(conv)
    return rows


EVIDENCE_AROUND_HOPS = 10  # windows ending within 0.2 s of the reported window


def smoothed_probs(probs: np.ndarray, n: int = DecisionParams().smoothing) -> np.ndarray:
    """The decider's moving average over the last `n` windows (NaN rows: no window yet)."""
    valid = ~np.isnan(probs[:, :1])
    c = np.vstack([np.zeros((n, probs.shape[1])), np.cumsum(np.nan_to_num(probs), axis=0)])
    k = np.vstack([np.zeros((n, 1)), np.cumsum(valid, axis=0)])
    return (c[n:] - c[:-n]) / np.maximum(k[n:] - k[:-n], 1)


def evidence_rows(sets, traces: dict[str, Trace], second: dict[str, Trace]) -> list[dict[str, str]]:
    """Issue 11's other evidence, measured on command mode's accepts (defaults): would it
    remove the false accepts left, and what would it cost in keywords found? For each accept,
    MicroNet-M's best smoothed score for the same keyword, and MicroNet-L's mean `_unknown_`,
    over the windows ending within 0.2 s of the reported one."""
    unknown = LABELS.index("_unknown_")
    seen: dict[str, list[tuple[bool, float, float]]] = {}  # split -> (false accept?, M score, unknown)
    for name, streams in sets.items():
        split, _ = split_of(name)
        if split not in SPLITS or not (is_negative(name) or split_of(name)[1] in ("keywords_padded", "keywords_tv")):
            continue
        for s in streams:
            fired = replay(traces[s.name], DecisionParams(), CommandParams())
            if not fired:
                continue
            m, l_ = smoothed_probs(second[s.name].probs), smoothed_probs(traces[s.name].probs)
            for f in fired:
                e = int(round(f.window_end * RATE / HOP_SAMPLES)) - 1
                near = slice(max(0, e - EVIDENCE_AROUND_HOPS), e + EVIDENCE_AROUND_HOPS + 1)
                fa = is_negative(name)
                if not fa and f.keyword not in [w for w, _ in s.words]:
                    continue  # a wrong keyword: neither a false accept on speech nor a command found
                seen.setdefault(split, []).append(
                    (fa, float(np.max(m[near, LABELS.index(f.keyword)])), float(np.mean(l_[near, unknown]))))
    rows = []
    for rule, test in [*((f"MicroNet-M agrees (score >= {t:g})", lambda x, t=t: x[1] >= t) for t in (0.3, 0.49, 0.7)),
                       *((f"MicroNet-L _unknown_ mean < {t:g}", lambda x, t=t: x[2] < t) for t in (0.2, 0.3, 0.4))]:
        r = {"rule added to the defaults": rule}
        for split in SPLITS:
            items = seen.get(split, [])
            fas, hits = [x for x in items if x[0]], [x for x in items if not x[0]]
            r[f"{split} FAs kept"] = f"{sum(map(test, fas))}/{len(fas)}"
            r[f"{split} keywords kept"] = f"{sum(map(test, hits))}/{len(hits)}"
        rows.append(r)
    return rows


def command_settings(pairs: Sequence[str]) -> CommandParams:
    """The defaults with `KEY=VALUE` [command] settings in place (a benchmark's `--set`);
    a ValueError naming what is wrong."""
    values: dict[str, float] = {}
    for kv in pairs:
        key, eq, value = kv.partition("=")
        if not eq or key not in {f.name for f in dataclasses.fields(CommandParams)}:
            raise ValueError(f"--set {kv!r}: expected KEY=VALUE with KEY a [command] setting")
        try:
            values[key] = float(value)
        except ValueError:
            raise ValueError(f"--set {kv!r}: the value is not a number") from None
    return CommandParams(**values)


def run_targets(args: argparse.Namespace, user: dict[str, list[Stream]]) -> int:
    """Item 4's table on dev and on validation data (and the user's folders), one command."""
    for corpus in (args.corpus, args.validation_corpus):
        if not (corpus / "keywords.csv").exists():
            print(f"error: no corpus in {corpus}: build it with python -m benchmarks.corpus", file=sys.stderr)
            return 2
    sets = {**split_sets("dev", args.corpus), **split_sets("val", args.validation_corpus), **user}
    model = "micronet-l" if args.model == "all" else args.model
    t0 = time.perf_counter()
    traces = traces_for(sets, model, args.cache)
    print(f"{model} model pass: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    decision, command = DecisionParams(), args.command
    out, md = [], []
    titles = {"dev": f"dev (tuned on): {args.corpus} + real-dev speakers 1, 3, 5, ... (sorted)",
              "val": f"validation (never tuned on): {args.validation_corpus} + real-dev speakers 2, 4, 6, ...",
              "user": f"your folders: {args.negatives or '-'} (negatives), {args.positives or '-'} (positives)"}
    print(f"[command] {command}")
    for split in (*SPLITS, "user"):
        if not _names(sets, split) or split not in args.splits:
            continue
        rows = target_rows(sets, traces, decision, command, split)
        out += [f"== {model}, {titles[split]}", table(rows, False), ""]
        md += [f"### {model}: {titles[split]}", "", table(rows, True), ""]
    if args.alternatives:
        rows = variant_rows(sets, traces, variants(command, decision))
        out += ["== rule variants side by side (recall as % of plain mode's)", table(rows, False), ""]
        md += ["### Rule variants side by side (recall as % of plain mode's)", "", table(rows, True), ""]
    if args.vad:
        flags = vad_flags_for(sets, traces, args.cache)
        chosen = [Variant("defaults (no VAD)", decision, command)]
        chosen += [Variant(r.label, decision, command, r.cost, r) for r in vad_rules()]
        rows = variant_rows(sets, traces, chosen, flags)
        title = "WebRTC VAD evidence in the gate (recall as % of plain mode's)"
        out += [f"== {title}", table(rows, False), ""]
        md += [f"### {title}", "", table(rows, True), ""]
    if args.evidence:
        second = traces_for(sets, "micronet-m" if model == "micronet-l" else "micronet-l", args.cache)
        rows = evidence_rows(sets, traces, second)
        title = "other evidence on command mode's accepts (real speech + TV: FAs; keywords in room tone / TV)"
        out += [f"== {title}", table(rows, False), ""]
        md += [f"### {title[0].upper()}{title[1:]}", "", table(rows, True), ""]
    print("\n".join(out))
    if args.markdown:
        args.markdown.write_text("\n".join(md) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/kws-corpus"))
    ap.add_argument("--model", choices=[*sorted(MODEL_FILES), "all"], default="micronet-l")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/kws-command-cache"))
    ap.add_argument("--sweep", action="store_true", help="also vary each knob around the defaults")
    ap.add_argument("--scenarios", action="store_true",
                    help="also quiet room / TV on / after talking / conversation (more audio through the model)")
    ap.add_argument("--markdown", type=Path, help="write the tables as markdown to this file")
    ap.add_argument("--failures", action="store_true", help="list shared clips that went wrong")
    ap.add_argument("--targets", action="store_true",
                    help="the issue-11 targets on dev (--corpus + half of real-dev) and validation data "
                         "(--validation-corpus + the other half), instead of the tables above")
    ap.add_argument("--validation-corpus", type=Path, default=Path("/tmp/kws-corpus-val"),
                    help="held-out corpus: python -m benchmarks.corpus DIR --seed 1 --held-out")
    ap.add_argument("--alternatives", action="store_true", help="with --targets: compare rule variants")
    ap.add_argument("--evidence", action="store_true",
                    help="with --targets: MicroNet-M agreement and _unknown_ on the accepts (runs the other model)")
    ap.add_argument("--vad", action="store_true",
                    help="with --targets: WebRTC VAD rules in the gate (needs pip install webrtcvad-wheels)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="with --targets: [command] settings to measure instead of the defaults (min_snr_db=15)")
    ap.add_argument("--only-split", choices=SPLITS, help="with --targets: print only this side (and your folders)")
    add_folder_options(ap)
    args = ap.parse_args(argv)
    try:
        args.command = command_settings(args.set)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.splits = (args.only_split, "user") if args.only_split else (*SPLITS, "user")
    if error := folder_error(args.negatives, args.positives):
        print(error, file=sys.stderr)
        return 2
    try:
        user = user_sets(args.negatives, args.positives)
    except (ValueError, OSError, KwsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.targets:
        return run_targets(args, user)

    sets = load_sets(args.corpus)
    if args.scenarios:
        add_scenarios(sets, args.corpus)
    models = sorted(MODEL_FILES) if args.model == "all" else [args.model]
    models.sort(key=lambda m: m != "micronet-l")
    decision = DecisionParams()
    cpu = gate_cpu_us(sets, CommandParams())
    out: list[str] = []
    md: list[str] = []
    head = None
    for model in models:
        t0 = time.perf_counter()
        traces = traces_for(sets, model, args.cache)
        print(f"{model} model pass: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        plain = evaluate(sets, traces, decision, CommandParams(enabled=False), NEGATIVE_SETS + POSITIVE_SETS)
        default = evaluate(sets, traces, decision, CommandParams(), NEGATIVE_SETS + POSITIVE_SETS)
        rows = [row(f"{model} plain", plain), row(f"{model} command (defaults)", default)]
        head = (f"prose {plain.hours['prose'] * 60:.1f} min (+ 4 LibriSpeech sentences); "
                f"gate CPU {cpu:.1f} us per 20 ms hop; defaults {CommandParams()}")
        out += [f"== {model}: {head}", table(rows, False)]
        md += [f"### {model} at defaults", "", head, "", table(rows, True), ""]
        if args.failures:
            out += ["plain failures:", *plain.failures, "command failures:", *default.failures]
        if args.sweep:
            curve = [row(label, evaluate(sets, traces, decision, params, NEGATIVE_SETS + POSITIVE_SETS))
                     for label, params in sweep_settings(CommandParams())]
            out += ["", f"{model} trade-off (one knob at a time, others at defaults):", table(curve, False)]
            md += [f"### {model} trade-off curve (one knob at a time, others at defaults)", "",
                   table(curve, True), ""]
        if args.scenarios:
            sc = scenario_rows(sets, traces, decision, CommandParams())
            out += ["", f"{model} what to expect:", table(sc, False)]
            md += [f"### {model}: what to expect", "", table(sc, True), ""]
        out.append("")
    print("\n".join(out))
    if args.markdown:
        args.markdown.write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
