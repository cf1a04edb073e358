"""Train the judge that ships (`kws_stream/judge_weights.npz`) on dev candidates only.

The verifier `benchmarks.judge_compare` calls "oww conv, decision score, N seeds": a 1-D
convolution over openWakeWord's embedding sequence with the keyword and MicroNet's smoothed
score beside it, N seeds averaged, on the span of `judge_features` (1.5 s ending `--after` past
the window; a row's word without the one before it, `--mask`). The threshold is set from
out-of-fold scores on dev to keep KEEP of dev's real keywords that command mode accepted, alone
and in rows (`judge_compare.KEEP_POS`); the scores go beside the weights (`.scores.npz`) to
read other thresholds from. Then checks that
`kws_stream.judge.Judge` (the run-time code, from the audio) gives the scores the training
code gives (from the cached features).

    python -m benchmarks.judge_train [--keep 1.0] [--seeds 3] [--hidden 8] [--l2 0.1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.judge_compare import CACHE, KEEP_POS, Data, out_of_fold, report, table
from benchmarks.judge_features import judged_span
from benchmarks.judge_models import SeqConv
from kws_stream.judge import AFTER_WINDOW_S, WEIGHTS, Judge, embedding_models


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--after", type=float, default=AFTER_WINDOW_S, help="the span ends this long after the window")
    ap.add_argument("--data", type=Path, default=CACHE / "candidates.npz")
    ap.add_argument("--mask", action=argparse.BooleanOptionalAction, default=True,
                    help="trained on `judge_features --mask` (a row's word alone)")
    ap.add_argument("--keep", type=float, default=0.99)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args(argv)
    data = Data(args.seconds, args.after, args.data, args.mask)
    o, aux = data.oww, data.decision
    train = data.d["split"] == "dev"

    def fit(idx: np.ndarray, y: np.ndarray):
        ms = [SeqConv(3, args.hidden, args.l2, seed).fit(o[idx], aux[idx], y) for seed in range(args.seeds)]
        return ms, (lambda j: np.mean([m.score(o[j], aux[j]) for m in ms], axis=0))

    oof = out_of_fold(lambda i, y: fit(i, y)[1], data, train)
    dev_pos = data.mask("dev", "command", KEEP_POS) & (data.y > 0)
    threshold = float(np.quantile(oof[dev_pos], 1 - args.keep))
    models, scorer = fit(np.flatnonzero(train), data.y[train])
    m0 = models[0]
    np.savez(args.out, seconds=np.float32(args.seconds), after=np.float32(args.after), threshold=np.float32(threshold), kernel=np.int32(3),
             mu=m0.mu.astype(np.float32), sd=m0.sd.astype(np.float32), amu=m0.amu.astype(np.float32),
             asd=m0.asd.astype(np.float32),
             wc=np.stack([m.wc for m in models]).astype(np.float32), bc=np.stack([m.bc for m in models]).astype(np.float32),
             v=np.stack([m.v for m in models]).astype(np.float32), wa=np.stack([m.wa for m in models]).astype(np.float32),
             c=np.array([m.c[0] for m in models], dtype=np.float32))
    np.savez(args.out.with_suffix(".scores.npz"), oof=oof, score=scorer(np.arange(len(data.y))))  # other thresholds
    row = report(f"shipped @keep {args.keep:g}", data, scorer(np.arange(len(data.y))), oof, args.keep)
    for split in ("dev", "val"):
        print(table([{c: v for c, v in row.items() if c == "verifier" or c.startswith(split)}], False))
    print(f"threshold {threshold:.3f} (keeps {args.keep:g} of dev's real keywords out of fold) -> {args.out} "
          f"({args.out.stat().st_size} bytes)")
    folder = embedding_models()
    if folder is None:
        print("pyopen-wakeword is not installed: run-time parity not checked", file=sys.stderr)
        return 1
    judge = Judge(folder, args.out)
    d = data.d
    picks = np.random.default_rng(0).choice(len(data.y), 40, replace=False)
    want = scorer(picks)
    kw = [str(k) for k in data.d["keyword"][picks]]
    score = data.d["smoothed"][picks, [data.labels.index(k) for k in kw]]
    got = np.array([judge.judge(judged_span(d["audio"][i], d["anchor"][i], d["window_end"][i], d["previous"][i],
                                            args.seconds, args.after, args.mask), k, s).score
                    for i, k, s in zip(picks, kw, score)])
    print(f"run-time judge vs training code on 40 candidates: max |difference| {np.max(np.abs(got - want)):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
