"""The matchers compared for enrolled words, on the same bursts (`enrolled_words --compare`).

* ``mfcc``: DTW over MicroNet's exact MFCC (`features.MfccExtractor`, 10 coefficients per
  20 ms, each normalised to zero mean and unit variance over the burst), cosine distance:
  Rhasspy Raven's way;
* ``micronet``: DTW over MicroNet-L's own activations (its last convolution, 40 ms steps);
* ``embedding``: DTW over openWakeWord's speech embedding (`enrol_embed`), cosine distance;
* ``embedding+bank``: the same, each template's distance divided by its radius (its
  distance to the nearest stretch of the negative speech bank): what `enrol` ships.

Each takes 5 takes per draw (recordings whose one burst is the template) and fires when the
best template's (scaled) distance is below a threshold. The threshold is chosen on dev: the
highest recall with at most 2 false accepts per 100 other phrases, 2 per 100 keyword clips
and 1 per hour of real-dev, and (to compare false accepts at equal recall) the lowest that
finds MATCHED_RECALL on dev; each is then applied unchanged to validation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.enrol_data import Split
from benchmarks.enrolled_words import Scored, Tally, evaluate, row, trim
from kws_stream.backend import native_stderr_silenced
from kws_stream.enrol_bank import radius
from kws_stream.enrol_dtw import cosine_costs, dtw_distance
from kws_stream.features import MICRONET, MfccExtractor
from testsupport.audio import SHARED

TAKES = 5
MATCHED_RECALL = 0.93  # the second operating point: each matcher where it finds 93 % on dev
Features = Callable[[np.ndarray], np.ndarray]


def mfcc_features() -> Features:
    extractor = MfccExtractor()
    p = extractor.params

    def features(burst: np.ndarray) -> np.ndarray:
        x = trim(burst)
        n = (len(x) - p.frame_length) // p.frame_step + 1
        f = extractor.frames(x[np.arange(n)[:, None] * p.frame_step + np.arange(p.frame_length)])
        normed: np.ndarray = (f - f.mean(0)) / (f.std(0) + 1e-6)
        return normed
    return features


def micronet_features() -> Features:
    """MicroNet-L's last convolution's activations (25 steps of 40 ms x 248 channels, averaged
    over its 5 frequency rows) for the 1 s window centred on the burst (a command is at most
    1 s long): one model run per burst, read with the runtime's debugging option that keeps
    every intermediate tensor."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings(), native_stderr_silenced():
        warnings.simplefilter("ignore")  # "intended for debugging purposes only": so is this
        interpreter = Interpreter(model_path=str(SHARED / "models" / "kws_micronet_l.tflite"), num_threads=1,
                                  experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    scale, zero = inp["quantization"]
    last_conv = [d for d in interpreter.get_tensor_details() if len(d["shape"]) == 4 and d["shape"][1] > 1
                 and d["name"].startswith("Relu6")][-1]
    out_scale, out_zero = last_conv["quantization"]
    extractor = MfccExtractor()
    window = MICRONET.window_samples

    def features(burst: np.ndarray) -> np.ndarray:
        centre = len(burst) // 2
        x = burst[max(0, centre - window // 2):centre + window // 2]
        x = np.concatenate([x, np.zeros(window - len(x), np.int16)])
        q = np.clip(np.round(extractor.window(x) / scale) + zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q.reshape(MICRONET.input_shape))
        interpreter.invoke()
        act = (interpreter.get_tensor(last_conv["index"]).astype(np.float32) - out_zero) * out_scale
        seq: np.ndarray = act[0].mean(axis=1)
        return seq
    return features


def distances(split: Split, scored: Scored, features: Features, bank: list[np.ndarray] | None,
              draws: int, embedded: bool) -> list[tuple[str, set[int], np.ndarray]]:
    """Per (word, draw): the recordings enrolled and each burst's best scaled distance
    (`embedded`: the bursts' features are `scored.features`)."""
    cache = scored.features if embedded else [features(b) for b in scored.bursts]
    out = []
    for word, recs in split.custom.items():
        single = [i for i, r in enumerate(recs) if len(r.bursts) == 1]
        for seed in range(draws):
            pick = [single[j] for j in np.random.default_rng(seed).choice(len(single), TAKES, replace=False)]
            templates = [features(recs[i].bursts[0]) for i in pick]
            scale = [radius(t, bank) / 0.1 if bank is not None else 1.0 for t in templates]
            best = np.array([min(dtw_distance(cosine_costs(t, f)) / s for t, s in zip(templates, scale))
                             for f in cache])
            out.append((word, set(pick), best))
    return out


def tally(split: Split, scored: Scored, runs: list[tuple[str, set[int], np.ndarray]], threshold: float) -> Tally:
    total = Tally()
    for word, used, best in runs:
        total.add(evaluate(split, scored, -best, word, used, -threshold))
    return total


def meets_targets(t: Tally) -> bool:
    return t.other * 100 <= 2 * t.others and t.clips * 100 <= 2 * t.clip_total and t.speech <= t.hours


def compare(dev: tuple[Split, Scored], val: tuple[Split, Scored], embed: Features, bank: list[np.ndarray],
            draws: int) -> list[list[str]]:
    """Rows: each matcher at its dev-chosen threshold, on dev and on validation."""
    rows = []
    for name, features, use_bank in (("mfcc", mfcc_features(), False), ("micronet", micronet_features(), False),
                                     ("embedding", embed, False),
                                     ("embedding+bank", embed, True)):
        runs = {s: distances(*data, features, bank if use_bank else None, draws, features is embed)
                for s, data in (("dev", dev), ("val", val))}
        grid = np.quantile(np.concatenate([b for _, _, b in runs["dev"]]), np.linspace(0.0005, 0.2, 120))
        dev_tallies = [(float(thr), tally(*dev, runs["dev"], float(thr))) for thr in grid]
        at_targets = max((t.found / t.positives, thr) for thr, t in dev_tallies if meets_targets(t))[1]
        reach = [thr for thr, t in dev_tallies if t.found >= MATCHED_RECALL * t.positives]
        at_recall = min(reach) if reach else float(grid[-1])  # mfcc never gets there: its loosest
        recall_how = f"{MATCHED_RECALL:.0%} found" if reach else "loosest tried"
        for how, chosen in (("targets", at_targets), (recall_how, at_recall)):
            for s, data in (("dev", dev), ("val", val)):
                rows.append(row(f"{name}, {s}, d <= {chosen:.3f} ({how} on dev)", tally(*data, runs[s], chosen)))
    return rows
