"""Latency: synthetic keyword commands played live, from the end of the word to its JSON line."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)

from .speed_common import HOP, RATE


def drain(daemon: Any) -> list[tuple[float, dict[str, Any]]]:
    out = []
    while True:
        try:
            t, line = daemon.stdout.get_nowait()
        except Exception:
            return out
        out.append((t, json.loads(line)))


# Live latency: synthetic keyword commands from the corpus (benchmarks/corpus.py), each followed by
# LATENCY_TAIL_S of noise at the clip's own noise level: a command spoken in a room, with no
# digital-zero gaps (unrealistic, and they confuse command mode's adaptive noise floor).


LATENCY_TAIL_S = 1.2
DEFAULT_CORPUS = Path(tempfile.gettempdir()) / "kws-corpus"


@dataclasses.dataclass(frozen=True)
class LatencyWord:
    """One synthetic keyword clip and where its word really ends (keywords.csv `word_end_s`)."""

    path: Path
    keyword: str
    word_end_s: float


def _pick_rows(rows: Sequence[dict[str, str]], n: int, seed: int = 1) -> list[dict[str, str]]:
    """n rows spread evenly over the keywords (round robin), deterministic for a seed."""
    rng = np.random.default_rng(seed)
    by_keyword: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_keyword.setdefault(row["keyword"], []).append(row)
    pools = {k: [v[i] for i in rng.permutation(len(v))] for k, v in sorted(by_keyword.items())}
    picked: list[dict[str, str]] = []
    while len(picked) < n and any(pools.values()):
        for k in list(pools):
            if pools[k] and len(picked) < n:
                picked.append(pools[k].pop())
    order = rng.permutation(len(picked))
    return [picked[i] for i in order]


def latency_words(n: int, corpus: Path, workdir: Path, quick: bool) -> list[LatencyWord]:
    """n synthetic keyword clips from the corpus keyword set (built if missing).

    `--quick` without a built corpus renders only the n clips it needs into `workdir`
    (the same voices, levels and noise as the corpus), so the smoke test stays short.
    """
    import csv

    from . import corpus as corpus_mod

    csv_path = corpus / "keywords.csv"
    if not csv_path.exists() and quick:
        tools = corpus_mod.detect_tools()
        plan = corpus_mod.plan_keyword_clips(tools, seed=0)
        picked = _pick_rows([{"keyword": c.keyword, "i": str(i)} for i, c in enumerate(plan)], n)
        rows = [corpus_mod.render_keyword_clip(plan[int(r["i"])], workdir / "kw") for r in picked]
        return [LatencyWord(workdir / "kw" / r["path"], r["keyword"], float(r["word_end_s"])) for r in rows]
    if not csv_path.exists():
        corpus_mod.build_corpus(corpus)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [LatencyWord(corpus / r["path"], r["keyword"], float(r["word_end_s"])) for r in _pick_rows(rows, n)]


def clip_noise_sigma(clip: np.ndarray) -> float:
    """The clip's own noise level: RMS of its quietest 20 ms hops (10th percentile of hop power)."""
    x = clip.astype(np.float64)
    hops = x[: len(x) // HOP * HOP].reshape(-1, HOP)
    return float(np.sqrt(np.percentile((hops ** 2).mean(axis=1), 10)))


def command_audio(word: LatencyWord, seed: int) -> tuple[np.ndarray, int]:
    """The clip followed by LATENCY_TAIL_S of gaussian noise at its own noise level; (audio, clip samples)."""
    import scipy.io.wavfile

    rate, clip = scipy.io.wavfile.read(word.path)
    if rate != RATE:
        raise SystemExit(f"{word.path}: expected {RATE} Hz, got {rate}")
    clip = np.asarray(clip, dtype=np.int16)
    tail = np.random.default_rng(seed).normal(0.0, clip_noise_sigma(clip), int(LATENCY_TAIL_S * RATE))
    return np.concatenate([clip, np.clip(np.round(tail), -32768, 32767).astype(np.int16)]), len(clip)


def measure_latency(mic: Any, daemon: Any, words: Sequence[LatencyWord]) -> dict[str, Any]:
    """Play keyword commands back to back; match each word to its JSON line.

    A word's end is `word_end_s` in its clip, timed by when the feeder wrote the last sample
    of clip + tail into the FIFO. Latency = line read time - word end; negative when plain
    spotting's smoothed score crossed the threshold before the word was over. A detection
    matches the first unmatched played word of the same keyword whose end lies within
    [-1.0, +1.5] s of it.
    """
    lead, _ = command_audio(words[0], seed=10_000)
    mic.play(lead[-int(0.5 * RATE):]).wait(30)  # 0.5 s of room noise; whatever played before is over
    drain(daemon)
    played: list[tuple[LatencyWord, Any, int, int]] = []
    for i, w in enumerate(words):
        audio, n_clip = command_audio(w, seed=i)
        played.append((w, mic.play(audio), len(audio), n_clip))
    ends: list[float] = []
    for w, handle, n, _ in played:
        written = handle.wait(n / RATE + 60)
        if written is None:
            raise RuntimeError(f"the virtual microphone did not play {w.path}")
        ends.append(written - n / RATE + w.word_end_s)
    time.sleep(2.0)
    found = drain(daemon)
    used = [False] * len(found)
    latencies: list[float] = []
    misses: list[str] = []
    for (w, _, _, _), end in zip(played, ends, strict=False):
        for i, (t, d) in enumerate(found):
            if not used[i] and d["keyword"] == w.keyword and end - 1.0 <= t <= end + 1.5:
                used[i] = True
                latencies.append(1000 * (t - end))
                break
        else:
            misses.append(f"{w.keyword}:{w.path.parent.name}/{w.path.name}")
    extras = [d["keyword"] for (t, d), u in zip(found, used, strict=False) if not u]
    lat = sorted(latencies)
    return {
        "keywords_played": len(words), "matched": len(lat), "missed": misses, "extra_detections": extras,
        "p50_ms": float(np.percentile(lat, 50)) if lat else None,
        "p95_ms": float(np.percentile(lat, 95)) if lat else None,
        "max_ms": max(lat) if lat else None, "min_ms": min(lat) if lat else None,
        "samples_ms": [round(x, 1) for x in latencies],
    }
