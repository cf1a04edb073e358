"""Live latency with the second judge: the daemon of this tree against other source trees (a
tree without `kws_stream/judge_weights.npz` runs without the judge), paired, through the
virtual microphone.

40 synthetic commands of the validation corpus (`speed_latency.measure_latency`: end of word to
JSON line read), ROUNDS rounds of both daemons in turn.

    python -m benchmarks.judge_latency [--other TREE ...] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.speed_latency import latency_words, measure_latency
from benchmarks.speed_live import _test_helpers, start_daemon


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--other", type=Path, nargs="+", default=[Path("/work/main")], help="source trees to compare with")
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/kws-corpus-val"))
    ap.add_argument("--words", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    VirtualMic, _ = _test_helpers()
    work = Path(tempfile.mkdtemp(prefix="judge-latency"))
    words = latency_words(args.words, args.corpus, work, False)
    with VirtualMic(work / "vmic", rate=16000, channels=1) as mic:
        for rnd in range(args.rounds):
            for label, env in [("this tree", {})] + [(str(o), {"PYTHONPATH": str(o)}) for o in args.other]:
                daemon = start_daemon(mic, 1, env=env)
                try:
                    r = measure_latency(mic, daemon, words)
                finally:
                    daemon.stop()
                without = [x for x in daemon.stderr.splitlines() if "without the second judge" in x]
                print(f"round {rnd} {label}: {r['matched']}/{r['keywords_played']} found, p50 {r['p50_ms']:.0f} ms, "
                      f"p95 {r['p95_ms']:.0f} ms, max {r['max_ms']:.0f} ms{' (' + without[0] + ')' if without else ''}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
