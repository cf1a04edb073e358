"""Latency: synthetic keyword commands played live, from the end of the word to its JSON line."""

from __future__ import annotations

import dataclasses
import json
import math
import queue
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)
from kws_stream.features import MICRONET
from testsupport.audio import read_wav

from .speed_common import RATE


def drain(daemon: Any) -> list[tuple[float, dict[str, Any]]]:
    out: list[tuple[float, dict[str, Any]]] = []
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
    hop = MICRONET.hop_samples
    hops = x[: len(x) // hop * hop].reshape(-1, hop)
    return float(np.sqrt(np.percentile((hops ** 2).mean(axis=1), 10)))


def command_audio(word: LatencyWord, seed: int) -> tuple[np.ndarray, int]:
    """The clip followed by LATENCY_TAIL_S of gaussian noise at its own noise level; (audio, clip samples)."""
    clip = read_wav(word.path)
    tail = np.random.default_rng(seed).normal(0.0, clip_noise_sigma(clip), int(LATENCY_TAIL_S * RATE))
    return np.concatenate([clip, np.clip(np.round(tail), -32768, 32767).astype(np.int16)]), len(clip)


EARLY_S = 1.0  # plain spotting may cross the threshold this long before the word is over
LATE_BOUND_S = 1.5  # a line later than this after its word is not a latency sample: "beyond the bound"
LATE_WINDOW_S = 4.0  # ...but it is still that word's (and counted) up to this long after it


def measure_latency(mic: Any, daemon: Any, words: Sequence[LatencyWord]) -> dict[str, Any]:
    """Play keyword commands back to back; match each word to its JSON line.

    A word's end is `word_end_s` in its clip, timed by when the feeder wrote the last sample
    of clip + tail into the FIFO. Latency = line read time - word end; negative when plain
    spotting's smoothed score crossed the threshold before the word was over. A detection
    matches the first unmatched played word of the same keyword whose end lies within
    [-EARLY_S, +LATE_BOUND_S] of it; one that comes later, up to LATE_WINDOW_S, is that word's
    *late* detection: no latency sample, but it counts in the percentiles as beyond the bound
    (so many late words make p95 "> 1500 ms", never a better number). Missed words (no line at
    all within LATE_WINDOW_S) are listed apart.
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
    found = collect_until(daemon, max(ends) + LATE_WINDOW_S)
    used = [False] * len(found)
    latencies: list[float | None] = []  # per word: ms, or None when not (yet) matched
    for w, end in zip(words, ends):
        latencies.append(_match(found, used, w.keyword, end - EARLY_S, end + LATE_BOUND_S, end))
    late = 0
    misses: list[str] = []
    for w, end, ms in zip(words, ends, latencies):
        if ms is None:
            if _match(found, used, w.keyword, end + LATE_BOUND_S, end + LATE_WINDOW_S, end) is not None:
                late += 1
            else:
                misses.append(f"{w.keyword}:{w.path.parent.name}/{w.path.name}")
    extras = [d["keyword"] for (t, d), u in zip(found, used, strict=False) if not u]
    samples = [ms for ms in latencies if ms is not None]
    return {"keywords_played": len(words), "missed": misses, "extra_detections": extras,
            **latency_stats(samples, late)}


def collect_until(daemon: Any, deadline: float) -> list[tuple[float, dict[str, Any]]]:
    """Every JSON line the daemon prints until `deadline` (time.monotonic)."""
    out: list[tuple[float, dict[str, Any]]] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            t, line = daemon.stdout.get(timeout=left)
        except queue.Empty:
            break
        out.append((t, json.loads(line)))
    return out + drain(daemon)


def _match(found: list[tuple[float, dict[str, Any]]], used: list[bool], keyword: str, lo: float, hi: float,
           end: float) -> float | None:
    """The first unused line of `keyword` read within [lo, hi]: marks it used, returns its ms after `end`."""
    for i, (t, d) in enumerate(found):
        if not used[i] and d["keyword"] == keyword and lo <= t <= hi:
            used[i] = True
            return 1000 * (t - end)
    return None


def latency_stats(samples_ms: Sequence[float], late: int) -> dict[str, Any]:
    """p50/p95/max over the latency samples and `late` detections beyond LATE_BOUND_S.

    A late detection is an infinite sample: a percentile whose rank falls on one (or between
    it and a sample) is None and named in "beyond_bound", so it can never read as met.
    """
    values = sorted(samples_ms) + [math.inf] * late

    def pct(q: float) -> float | None:
        if not values:
            return None
        if values[math.ceil(q / 100 * (len(values) - 1))] == math.inf:  # the rank reaches a late one
            return math.inf
        return float(np.percentile(values[: len(samples_ms)] + [values[len(samples_ms) - 1]] * late, q))  # same ranks

    stats = {"p50_ms": pct(50), "p95_ms": pct(95), "max_ms": values[-1] if values else None}
    beyond = [k for k, v in stats.items() if v == math.inf]
    return {"matched": len(samples_ms), "late": late, "late_bound_ms": 1000 * LATE_BOUND_S, "beyond_bound": beyond,
            **{k: (None if v == math.inf else v) for k, v in stats.items()},
            "min_ms": min(samples_ms, default=None), "samples_ms": [round(x, 1) for x in samples_ms]}


def show_ms(stats: dict[str, Any], key: str) -> str:
    """A latency statistic for a table: its ms, "> 1500" beyond the bound, "-" when not measured."""
    if key in stats.get("beyond_bound", ()):
        return f"> {stats['late_bound_ms']:.0f}"
    return "-" if stats.get(key) is None else f"{stats[key]:.0f}"
