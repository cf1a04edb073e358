"""Second-judge verifiers compared on the same candidates (issue 22): train on dev, report validation.

Reads `benchmarks.judge_data`'s candidates and `benchmarks.judge_features`' features. Every
verifier is trained on all dev candidates (command mode's accepts and plain mode's
detections: there are too few of the former to learn from), its threshold set from
out-of-fold scores on dev (5 folds, grouped by stream; running speech by the minute) to keep
KEEP of dev's real keywords that command mode accepted (recordings alone and in rows), then applied to
validation, which nothing here is tuned on.

    python -m benchmarks.judge_compare [--keep 0.98] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.enrol_stats import exact_proportion_interval, poisson_interval
from benchmarks.judge_models import Logistic, SeqConv
from kws_stream.judge import AFTER_WINDOW_S

CACHE = Path("/work/judge-cache")
REAL_POS = ("real_keywords", "real_keywords_raw", "shared_padded")
KEEP_POS = REAL_POS + ("rows",)  # the threshold keeps KEEP of dev's real keywords, alone and in rows
SPEECH = ("real_speech", "tv_alone")
CUSTOM = ("custom_words", "custom_raw")


class Data:
    def __init__(self, seconds: float, after: float, candidates: Path = CACHE / "candidates.npz",
                 mask: bool = True) -> None:
        from benchmarks.judge_features import features_name

        d = np.load(candidates)
        f = np.load(candidates.with_name(features_name(seconds, after, mask)))
        self.d = {k: d[k] for k in d.files}
        self.labels = list(d["labels"])
        self.y = d["label"].astype(float)
        self.oww = f["oww"]
        self.micronet = f["micronet"]
        self.oww_cpu = f["oww_cpu"]
        kw = np.array([self.labels.index(k) for k in d["keyword"]])
        self.keyword = kw
        sm = np.log(d["smoothed"] + 1e-4)
        raw = np.log(d["probs"] + 1e-4)
        onehot = np.eye(10)[kw]
        self.scores = np.hstack([sm, raw, sm[np.arange(len(kw)), kw][:, None], onehot])
        self.decision = np.hstack([sm[np.arange(len(kw)), kw][:, None], onehot])  # what a Decision carries
        self.hours = {}
        for m in d["meta_streams"]:
            split, kind, n, h = str(m).split("|")
            self.hours[(split, kind)] = (int(n), float(h))
        minute = (d["window_end"] // 60).astype(int)
        # a clip and its room-tone-padded copy are one group: out-of-fold means neither was trained on
        self.group = np.array([f"{s.replace('-raw:', ':')}|{m}" for s, m in zip(d["stream"], minute)])

    def mask(self, split: str, mode: str | None = None, kinds: tuple[str, ...] | None = None) -> np.ndarray:
        m = self.d["split"] == split
        if mode:
            m &= self.d["mode"] == mode
        if kinds:
            m &= np.isin(self.d["kind"], kinds)
        return m


Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]  # (train idx, y) -> scorer(idx)


def verifiers(data: Data) -> dict[str, Fit]:
    o = data.oww
    pooled = np.hstack([o.mean(1), o.max(1)])
    flat = o.reshape(len(o), -1)
    s, act = data.scores, data.micronet

    def logistic(x: np.ndarray, l2: float = 1e-2) -> Fit:
        def fit(idx: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            m = Logistic(l2).fit(x[idx], y)
            return lambda j: m.score(x[j])
        return fit

    def conv(aux: np.ndarray, k: int = 3, hidden: int = 16, l2: float = 1e-2, seeds: int = 1) -> Fit:
        def fit(idx: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            ms = [SeqConv(k, hidden, l2, seed).fit(o[idx], aux[idx], y) for seed in range(seeds)]
            return lambda j: np.mean([m.score(o[j], aux[j]) for m in ms], axis=0)
        return fit

    return {
        "MicroNet scores only (logistic)": logistic(s),
        "oww mean+max (logistic)": logistic(np.hstack([pooled, s])),
        "oww sequence flat (logistic)": logistic(np.hstack([flat, s]), 1.0),
        "oww sequence 1-D conv k3 h16": conv(s),
        "MicroNet activations (logistic)": logistic(np.hstack([act, s]), 0.1),
        "oww conv + MicroNet activations": conv(np.hstack([act, s]), l2=0.03),
        "oww conv, decision score": conv(data.decision),
        "oww conv, decision score, 3 seeds": conv(data.decision, seeds=3),
        "oww conv k3 h8 l2 0.1, decision score, 3 seeds": conv(data.decision, hidden=8, l2=0.1, seeds=3),
    }


def out_of_fold(fit: Fit, data: Data, train: np.ndarray, folds: int = 5) -> np.ndarray:
    idx = np.flatnonzero(train)
    groups = np.unique(data.group[idx])
    rng = np.random.default_rng(0)
    fold_of = dict(zip(rng.permutation(groups), np.arange(len(groups)) % folds))
    f = np.array([fold_of[g] for g in data.group[idx]])
    out = np.full(len(data.y), np.nan)
    for k in range(folds):
        scorer = fit(idx[f != k], data.y[idx[f != k]])
        out[idx[f == k]] = scorer(idx[f == k])
    return out


def report(name: str, data: Data, score: np.ndarray, oof: np.ndarray, keep: float) -> dict[str, str]:
    dev_pos = data.mask("dev", "command", KEEP_POS) & (data.y > 0)
    thr = float(np.quantile(oof[dev_pos], 1 - keep))
    ok = score >= thr
    row = {"verifier": name}
    for split in ("dev", "val"):
        sc = ok if split == "val" else oof >= thr  # dev: out-of-fold
        cm = data.mask(split, "command")
        pos = cm & np.isin(data.d["kind"], REAL_POS) & (data.y > 0)
        rows = cm & (data.d["kind"] == "rows") & (data.y > 0)
        syn = cm & np.isin(data.d["kind"], ("keywords_tv", "keywords_gaps")) & (data.y > 0)
        sp = cm & np.isin(data.d["kind"], SPEECH)
        cu = cm & np.isin(data.d["kind"], CUSTOM)
        hours = sum(data.hours[(split, k)][1] for k in SPEECH)
        clips = sum(data.hours[(split, k)][0] for k in CUSTOM)
        k_sp, k_cu = int((sc & sp).sum()), int((sc & cu).sum())
        lo, hi = poisson_interval(k_sp)
        clo, chi = exact_proportion_interval(k_cu, clips)
        pn = data.mask(split, "plain") & (data.y == 0)
        row[f"{split} real kw kept"] = f"{int((sc & pos).sum())}/{int(pos.sum())}"
        row[f"{split} rows kept"] = f"{int((sc & rows).sum())}/{int(rows.sum())}"
        row[f"{split} synth kw kept"] = f"{int((sc & syn).sum())}/{int(syn.sum())}"
        row[f"{split} speech FA/h"] = f"{k_sp}/{int(sp.sum())}: {k_sp / hours:.1f} [{lo / hours:.1f}-{hi / hours:.1f}]"
        row[f"{split} custom per 100"] = f"{k_cu}/{int(cu.sum())}: {100 * k_cu / clips:.2f} [{100 * clo:.2f}-{100 * chi:.2f}]"
        row[f"{split} plain FAs left"] = f"{int((sc & pn).sum())}/{int(pn.sum())}"
    return row


def table(rows: list[dict[str, str]], markdown: bool) -> str:
    cols = list(rows[0])
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in cols]
    return "\n".join(["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
                     + ["  ".join(r[c].ljust(w) for c, w in zip(cols, widths)) for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=1.5, help="the features of `judge_features --seconds S --after A`")
    ap.add_argument("--after", type=float, default=AFTER_WINDOW_S)
    ap.add_argument("--data", type=Path, default=CACHE / "candidates.npz")
    ap.add_argument("--mask", action=argparse.BooleanOptionalAction, default=True,
                    help="the features of `judge_features --mask` (a row's word after the one before: zeros)")
    ap.add_argument("--keep", type=float, nargs="+", default=[0.98])
    ap.add_argument("--only", help="verifiers whose name contains this")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    data = Data(args.seconds, args.after, args.data, args.mask)
    train = data.d["split"] == "dev"
    rows = []
    for name, fit in verifiers(data).items():
        if args.only and args.only not in name:
            continue
        oof = out_of_fold(fit, data, train)
        score = fit(np.flatnonzero(train), data.y[train])(np.arange(len(data.y)))
        for keep in args.keep:
            rows.append(report(f"{name} @keep {keep:g}", data, score, oof, keep))
        print(f"done: {name}", file=sys.stderr)
    for split in ("dev", "val"):
        cols = ["verifier"] + [c for c in rows[0] if c.startswith(split)]
        print(f"== {split}" + (" (out-of-fold)" if split == "dev" else " (never tuned on)"))
        print(table([{c: r[c] for c in cols} for r in rows], False), "\n")
    if args.markdown:
        md = []
        for split in ("dev", "val"):
            cols = ["verifier"] + [c for c in rows[0] if c.startswith(split)]
            md += [f"### {split}", "", table([{c: r[c] for c in cols} for r in rows], True), ""]
        args.markdown.write_text("\n".join(md))
    print(f"oww features: CPU per candidate median {np.median(data.oww_cpu) * 1e3:.1f} ms, "
          f"p95 {np.percentile(data.oww_cpu, 95) * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
