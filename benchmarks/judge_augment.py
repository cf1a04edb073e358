"""Noisy copies of the dev candidates, for training the judge on rooms the recordings lack.

Most real keyword recordings are close-talked in quiet rooms; a living room has a fan, a
TV, a talker further away. Each dev candidate (never a validation one) gets one copy with
noise added `--snr` dB below its speech (the 95th percentile of its 20 ms levels over the span
the judge hears), either a room-like stationary noise (Gaussian, spectrum 1/f^a, a in 0-2:
white to brown) or a stretch of the dev half of real-dev (other talkers, a TV), then a gain
of GAIN_DB (a quieter or louder talker). A copy keeps its stream's name, so the
out-of-fold folds of `judge_compare` keep a clip and its copies together, and its kind gets
"+noise", so no threshold or reported figure counts it. MicroNet's score beside it is the
clean one's (the judge's input is the rules' candidate; its score moves little in noise).

    python -m benchmarks.judge_augment [--data candidates.npz] [--out candidates_aug.npz] [--talkers] [--snr 10 25]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.command_mode import real_dev_split
from benchmarks.judge_compare import CACHE
from kws_stream.features import MICRONET
from testsupport.audio import read_wav

GAIN_DB = (-10.0, 5.0)
FRAME = MICRONET.sample_rate // 50  # 20 ms
JUDGED_S = 1.8  # the segment's last 1.8 s hold the judged span (1.5 s ending 0.1-0.3 s before it ends)


def speech_level(x: np.ndarray) -> float:
    """Power of the loud part of `x`: the 95th percentile of its 20 ms frames' mean power."""
    n = len(x) // FRAME
    frames = x[:n * FRAME].astype(np.float64).reshape(n, FRAME)
    return float(np.percentile((frames ** 2).mean(1), 95)) + 1e-3


def coloured_noise(n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-power Gaussian noise whose power spectrum falls as 1/f^alpha."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    x = np.fft.irfft(spec / f ** (alpha / 2), n)
    return x / np.sqrt(np.mean(x ** 2))


def noisy(audio: np.ndarray, bed: np.ndarray | None, snr_db: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """`audio` with room noise (or, half the time if `bed` is given, other talkers) and a gain."""
    x = audio.astype(np.float64)
    level = speech_level(audio[-int(JUDGED_S * MICRONET.sample_rate):])
    if bed is None or rng.random() < 0.5:
        noise = coloured_noise(len(x), rng.uniform(0.0, 2.0), rng)
    else:
        start = int(rng.integers(0, len(bed) - len(x)))
        noise = bed[start:start + len(x)].astype(np.float64)
        noise /= np.sqrt(speech_level(bed[start:start + len(x)]))
    snr = rng.uniform(*snr_db)
    mix = (x + noise * np.sqrt(level / 10 ** (snr / 10))) * 10 ** (rng.uniform(*GAIN_DB) / 20)
    return np.clip(np.round(mix), -32768, 32767).astype(np.int16)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=CACHE / "candidates.npz")
    ap.add_argument("--out", type=Path, default=CACHE / "candidates_aug.npz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--talkers", action=argparse.BooleanOptionalAction, default=False,
                    help="half the copies with other talkers (dev real-dev) instead of room noise")
    ap.add_argument("--snr", type=float, nargs=2, default=(10.0, 25.0), metavar=("LOW", "HIGH"),
                    help="the noise this many dB below the speech, uniform between LOW and HIGH")
    args = ap.parse_args(argv)
    d = np.load(args.data)
    data = {k: d[k] for k in d.files}
    dev = np.flatnonzero(data["split"] == "dev")
    bed = np.concatenate([read_wav(p) for p in real_dev_split("dev")]) if args.talkers else None
    rng = np.random.default_rng(args.seed)
    copies = {k: v[dev] for k, v in data.items() if k not in ("meta_streams", "labels")}
    copies["kind"] = np.char.add(copies["kind"], "+noise")
    copies["audio"] = np.stack([noisy(a, bed, tuple(args.snr), rng) for a in copies["audio"]])
    out = {k: np.concatenate([v, copies[k]]) if k in copies else v for k, v in data.items()}
    np.savez_compressed(args.out, **out)  # type: ignore[arg-type]
    print(f"{len(dev)} noisy copies of dev candidates (+{len(dev)} = {len(out['label'])}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
