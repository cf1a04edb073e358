"""What enrolled words cost the pipeline: CPU with no words, one and three, on real speech.

    python -m benchmarks.words_overhead [--files N] [--repeat R]

Runs the real `Pipeline` (command mode, the default) over the first N files of
`../shared/audio/real-dev` (real running speech: meetings and read books) and the three
custom-words recordings held out of enrolment, each file as `detect` runs it, with no word
enrolled, with `computer`, and with `computer`, `jarvis` and `smart_mirror` (each enrolled
from 5 recordings of the custom-words set by the matcher in `kws_stream.enrol`). It prints,
per case, the CPU seconds (`time.process_time`, best of R runs), the CPU per second of audio,
how many bursts were scored, the matcher's CPU per burst (all words), and what the judge
costs besides the matcher per hop of audio (its own command gate, the bursts' audio: measured
with the matcher's scores stubbed out). The matcher's own numbers
belong to `kws_stream.enrol` (the placeholder's are not the product's); the per-hop cost, the
number of bursts per hour of speech and how long after a word it is reported (on 20 held-out
recordings of each phrase in a row) are this plumbing's.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from kws_stream.backend import KeywordModel
from kws_stream.enrol import EnrolledWord, WordMatcher, check_take, load_matcher
from kws_stream.enrolled import WordSet
from kws_stream.features import MICRONET
from kws_stream.models import default_model_dir
from kws_stream.pipeline import Pipeline, PipelineParams
from testsupport.audio import AUDIO, read_wav

LABELS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "_silence_", "_unknown_")
PHRASES = ("computer", "jarvis", "smart_mirror")
BLOCK = 1600  # 0.1 s, as the daemon's worker feeds it


class TimedMatcher:
    """The matcher, counting its calls and their CPU time."""

    def __init__(self, matcher: WordMatcher) -> None:
        self._matcher = matcher
        self.calls = 0
        self.seconds = 0.0

    def scores(self, words: list[EnrolledWord], burst: np.ndarray) -> list[float]:
        started = time.process_time()
        try:
            return self._matcher.scores(words, burst)
        finally:
            self.seconds += time.process_time() - started
            self.calls += 1


class Unmatched:
    """A matcher that costs nothing: what the judge costs besides the matcher."""

    def scores(self, words: list[EnrolledWord], burst: np.ndarray) -> list[float]:
        return [0.0] * len(words)


def run(model: KeywordModel, streams: list[np.ndarray], params: PipelineParams) -> float:
    started = time.process_time()
    for audio in streams:
        pipeline = Pipeline(model, "micronet-l", "bench", params)
        for i in range(0, len(audio), BLOCK):
            pipeline.feed(audio[i:i + BLOCK])
        pipeline.finish()
    return time.process_time() - started


def report_delays(model: KeywordModel, streams: list[np.ndarray], params: PipelineParams) -> list[float]:
    """Seconds from the end of each reported word's burst (the detection's `end`)
    to the end of the 0.1 s block whose `feed` returned it."""
    delays = []
    names = set(params.words.names)
    for audio in streams:
        pipeline = Pipeline(model, "micronet-l", "bench", params)
        for i in range(0, len(audio), BLOCK):
            for d in pipeline.feed(audio[i:i + BLOCK]):
                if d.keyword in names:
                    delays.append(min(i + BLOCK, len(audio)) / MICRONET.sample_rate - d.end)
    return delays


def takes(phrase: str, count: int) -> list[np.ndarray]:
    """The first `count` recordings of `phrase` that `check_take` accepts (a user would say a
    refused take again)."""
    accepted = (t for i in range(20) if check_take(t := read_wav(f"custom-words/{phrase}_{i:03d}.wav")) is None)
    return [next(accepted) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=40, help="real-dev files to run (default 40)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the fastest counts")
    args = parser.parse_args()

    model = KeywordModel(default_model_dir() / "kws_micronet_l.tflite", LABELS)
    files = sorted((AUDIO / "real-dev").glob("*.wav"))[: args.files]
    streams = [read_wav(f) for f in files] + [read_wav(f"custom-words/{p}_020.wav") for p in PHRASES]
    seconds = sum(len(s) for s in streams) / MICRONET.sample_rate
    hops = sum(len(s) for s in streams) // MICRONET.hop_samples
    matcher = load_matcher()
    started = time.process_time()
    enrolled = {p: matcher.enrol(p, takes(p, 5)) for p in PHRASES}
    enrol_cpu = (time.process_time() - started) / len(PHRASES)
    print(f"audio: {len(files)} real-dev files + 3 held-out phrases, {seconds:.0f} s; "
          f"enrolment {enrol_cpu:.2f} s CPU per word (5 takes)")
    print(f"{'words':<28} {'CPU s':>7} {'ms/s audio':>10} {'bursts':>7} {'per hour':>8} {'matcher ms/burst':>16}")
    cpu: dict[str, float] = {}
    for names in ((), ("computer",), PHRASES):
        best, timed = float("inf"), TimedMatcher(matcher)
        for _ in range(args.repeat):
            timed = TimedMatcher(matcher)
            words = WordSet(tuple(enrolled[n] for n in names), timed) if names else WordSet()  # type: ignore[arg-type]
            best = min(best, run(model, streams, replace(PipelineParams(), words=words)))
        cpu[",".join(names)] = best
        per_burst = 1000 * timed.seconds / timed.calls if timed.calls else 0.0
        bursts = timed.calls
        print(f"{','.join(names) or 'none':<28} {best:7.2f} {1000 * best / seconds:10.2f} {bursts:7d} "
              f"{bursts * 3600 / seconds:8.0f} {per_burst:16.2f}")
    stub = WordSet((enrolled["computer"],), Unmatched())  # type: ignore[arg-type]
    plumbing = min(run(model, streams, replace(PipelineParams(), words=stub)) for _ in range(args.repeat)) - cpu[""]
    print(f"the judge without the matcher (scores stubbed): {1e6 * plumbing / hops:.1f} us per hop, "
          f"{1000 * plumbing / seconds:.2f} ms per second of audio")
    said = [np.concatenate([read_wav(f"custom-words/{p}_{i:03d}.wav") for i in range(20, 40)]) for p in PHRASES]
    delays = report_delays(model, said, replace(PipelineParams(), words=WordSet(tuple(enrolled.values()), matcher)))
    if delays:
        print(f"report delay after the word's burst ends ({len(delays)} reports for 60 words said, 0.1 s blocks): "
              f"median {np.median(delays):.2f} s, max {max(delays):.2f} s")

if __name__ == "__main__":
    main()
