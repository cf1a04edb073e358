"""The accuracy harness (benchmarks/accuracy*.py) stays honest.

* Replaying a decision stage over cached stride-1 probabilities gives exactly the
  detections of the real Pipeline, at several strides and settings.
* On a tiny set with a known answer (SPEC.md) it reports that answer.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import AUDIO, SHARED

from benchmarks.accuracy import main, run
from benchmarks.accuracy_analysis import Analyzer, FileAnalysis, load_model
from benchmarks.accuracy_clips import Clip, expected_from_name, folder_clips, shared_keyword_clips, shared_negative_clips
from benchmarks.accuracy_replay import Candidate, Setting, default_setting, grid, inference_windows, replay
from benchmarks.accuracy_score import align
from kws_stream.command import CommandParams
from kws_stream.decision import Decision
from kws_stream.features import MICRONET
from kws_stream.pipeline import Pipeline, PipelineParams
from kws_stream.sources import WavFileSource

KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
QUIET_NEGATIVES = ("silence_1000ms.wav", "noise_1000ms.wav", "near_silence.wav", "marvin_617de221_0.wav")
REPLAY_FILES = ("keywords/right_left_up.wav", "keywords/yes_no_go_stop.wav", "keywords/right.wav",
                "negatives/i_tell_you.wav", "negatives/another_door.wav", "negatives/marvin_617de221_0.wav")
REPLAY_SETTINGS = (
    Setting(1, 4, 0.7, 1.0),  # the shipped default
    Setting(3, 2, 0.5, 0.3),  # a stride that leaves a window for finish() on most files
    Setting(4, 1, 0.6, 1.0),
    Setting(2, 6, 0.9, 2.0),
)


@pytest.fixture(scope="session")
def models(model_dir):
    return {name: load_model(name, model_dir) for name in ("micronet-l", "micronet-m")}


@pytest.fixture(scope="session")
def replay_analyses(models):
    return Analyzer(list(models.values())).analyse([AUDIO / f for f in REPLAY_FILES])


def plain_params(setting: Setting) -> PipelineParams:
    """The pipeline with only the stage the harness replays: no command-mode gate."""
    params = PipelineParams(stride=setting.stride, decision=setting.decision_params())
    if hasattr(params, "command"):
        params = dataclasses.replace(params, command=dataclasses.replace(params.command, enabled=False))
    return params


def pipeline_detections(model, path, setting: Setting):
    pipeline = Pipeline(model.model, model.name, str(path), plain_params(setting))
    found = []
    for block in WavFileSource(path).blocks():
        found += pipeline.feed(block)
    found += pipeline.finish()
    return found, pipeline.inferences


@pytest.mark.parametrize("setting", REPLAY_SETTINGS, ids=lambda s: f"s{s.stride}m{s.smoothing}t{s.threshold}")
@pytest.mark.parametrize("model_name", ["micronet-l", "micronet-m"])
def test_replay_gives_exactly_the_pipelines_detections(models, replay_analyses, model_name, setting):
    model = models[model_name]
    total = 0
    for name in REPLAY_FILES:
        path = (AUDIO / name).resolve()
        analysis = replay_analyses[model_name][path]
        expected, inferences = pipeline_detections(model, path, setting)
        got = replay(analysis, setting.stride, setting.factory())
        assert len(inference_windows(analysis.windows, setting.stride)) == inferences, name
        assert [(d.keyword, d.score, MICRONET.seconds(d.end_sample)) for d in got] == \
               [(d.keyword, d.score, d.end) for d in expected], name
        total += len(expected)
    assert total > 0  # the comparison covered real detections


def test_inference_windows_follow_the_pipelines_phase_rule():
    assert list(inference_windows(0, 4)) == []
    assert list(inference_windows(1, 4)) == [0]
    assert list(inference_windows(9, 4)) == [0, 4, 8]  # the last window was due anyway
    assert list(inference_windows(10, 4)) == [0, 4, 8, 9]  # finish() adds the skipped last window
    assert list(inference_windows(5, 1)) == [0, 1, 2, 3, 4]


def test_known_answer_on_the_shared_clips(models):
    """SPEC.md: MicroNet-L gets every shared keyword clip right at the defaults, MicroNet-M
    misses only the quiet right.wav; silence, noise and "marvin" give no detection."""
    clips = shared_keyword_clips(SHARED, KEYWORDS)
    clips += [c for c in shared_negative_clips(SHARED) if c.path.name in QUIET_NEGATIVES]
    assert {c.path.name: c.expected for c in clips if c.set == "shared"}["yes_no_go_stop.wav"] == \
           ("yes", "no", "go", "stop")
    candidates = [c for c in grid("default") if c.default]
    results, meta = run(list(models.values()), clips, candidates)
    by_model = {r.model: r for r in results}
    assert meta["sets"]["shared"]["files"] == 7 and meta["sets"]["negative"]["files"] == 4

    large = by_model["micronet-l"]
    assert large.default and large.params == default_setting().as_dict()
    assert large.accuracy("shared") == 1.0 and large.recall("shared") == 1.0
    assert large.scores["negative"].total == 0 and large.fa_per_hour == 0.0

    medium = by_model["micronet-m"].scores["shared"]
    assert medium.clips == 7 and medium.correct == 6
    assert medium.confusions["right"]["missed"] == 1 and medium.expected["right"] == 2 and medium.found["right"] == 1
    assert [f["clip"] for f in medium.failures] == ["keywords/right.wav"]
    assert by_model["micronet-m"].scores["negative"].total == 0


def test_the_librispeech_sentences_count_as_false_accepts(models):
    """SPEC.md: the bare model fires on three of the four sentences (i_tell_you -> right)."""
    clips = [Clip(AUDIO / "negatives" / "i_tell_you.wav", "negative", (), "shared")]
    (result,), _ = run([models["micronet-l"]], clips, [Candidate.from_setting(default_setting(), True)])
    negative = result.scores["negative"]
    assert negative.false_accepts["right"] >= 1
    assert negative.per_hour == pytest.approx(negative.total * 3600 / negative.seconds)


def test_alignment_is_order_aware():
    assert align(["right", "left", "up"], ["right", "left", "up"]) == [("right", "right"), ("left", "left"), ("up", "up")]
    assert align(["yes"], ["no", "yes"]) == [(None, "no"), ("yes", "yes")]
    assert align(["yes"], ["no"]) == [("yes", "no")]  # a confusion, not a miss plus an extra
    assert align(["yes", "no"], []) == [("yes", None), ("no", None)]
    # Order matters: "left" after "up" does not count for the "left" expected before it.
    pairs = align(["right", "left", "up"], ["right", "up", "left"])
    assert sum(e == d for e, d in pairs) == 2


def test_expected_keywords_from_file_names():
    assert expected_from_name(AUDIO / "keywords/right_left_up.wav", KEYWORDS) == ("right", "left", "up")
    assert expected_from_name(AUDIO / "keywords/yes_1000ms.wav", KEYWORDS) == ("yes",)
    assert expected_from_name(AUDIO / "keywords/down.wav", KEYWORDS) == ("down",)


def test_cache_round_trip_and_per_hop_data(models, tmp_path):
    path = (AUDIO / "keywords/right_left_up.wav").resolve()
    first = Analyzer([models["micronet-m"]], tmp_path).analyse([path])["micronet-m"][path]
    again = Analyzer([models["micronet-m"]], tmp_path)
    cached = again.analyse([path])["micronet-m"][path]
    assert again.loaded == 1 and again.computed == 0
    for field in ("probabilities", "end_samples", "frames"):
        np.testing.assert_array_equal(getattr(first, field), getattr(cached, field))
    audio = cached.audio()
    assert audio.dtype == np.int16 and len(audio) == cached.num_samples
    g = MICRONET
    assert len(cached.frames) == (len(audio) - g.frame_samples) // g.hop_samples + 1 == cached.windows + g.frames - 1
    assert cached.end_samples[-1] == (len(cached.frames) - 1) * g.hop_samples + g.frame_samples


def test_any_stage_factory_can_be_replayed(replay_analyses):
    """A per-inference stage can use anything in the analysis (here the per-hop MFCC c0)."""
    analysis: FileAnalysis = replay_analyses["micronet-l"][(AUDIO / "keywords/right_left_up.wav").resolve()]

    class LoudWindows:
        def __init__(self, a: FileAnalysis) -> None:
            self.c0 = a.frames[:, 0]  # per-hop log energy

        def update(self, probabilities, end_sample, sample_rate):
            hop = (end_sample - MICRONET.frame_samples) // MICRONET.hop_samples
            return Decision("loud", float(self.c0[hop]), end_sample) if self.c0[hop] > -40 else None

    decisions = replay(analysis, 2, LoudWindows)
    assert decisions and all(d.keyword == "loud" for d in decisions)
    assert {d.end_sample for d in decisions} <= set(analysis.end_samples[::2]) | {analysis.end_samples[-1]}


@pytest.mark.parametrize("stride", [1, 4])  # 4: finish() evaluates the skipped last window
def test_hop_stages_see_every_hop_and_the_pipelines_inferences(replay_analyses, stride):
    """A hop-driven stage (the shape a command-mode gate needs) sees every 20 ms hop with
    its audio, gets probabilities exactly where the pipeline infers, and wrapping the
    plain decider in it changes nothing."""
    setting = Setting(stride, 2, 0.6, 1.0)
    analysis: FileAnalysis = replay_analyses["micronet-l"][(AUDIO / "keywords/yes_no_go_stop.wav").resolve()]
    audio = analysis.audio()
    seen = []

    class Wrapped:
        def __init__(self, a: FileAnalysis) -> None:
            self.decider = setting.factory()(a)

        def step(self, end_sample, probabilities):
            seen.append((end_sample, probabilities is not None, len(audio[end_sample - MICRONET.hop_samples:end_sample])))
            return [] if probabilities is None else [d for d in [self.decider.update(probabilities, end_sample, MICRONET.sample_rate)] if d]

        def finish(self, probabilities):
            seen.append(("finish", probabilities is not None, 0))
            end = analysis.end_samples[-1]
            return [] if probabilities is None else [d for d in [self.decider.update(probabilities, end, MICRONET.sample_rate)] if d]

    hop_decisions = replay(analysis, stride, Wrapped)
    assert hop_decisions == replay(analysis, stride, setting.factory())
    hops = seen[:-1]
    assert [e for e, _, _ in hops] == [k * MICRONET.hop_samples + MICRONET.frame_samples for k in range(len(analysis.frames))]
    assert all(n == MICRONET.hop_samples for _, _, n in hops)
    inferred = [e for e, due, _ in hops if due] + ([analysis.end_samples[-1]] if seen[-1][1] else [])
    assert inferred == list(analysis.end_samples[inference_windows(analysis.windows, stride)])


@pytest.fixture()
def user_folders(tmp_path):
    """A user's recordings: keyword clips labelled by name or by folder, and speech."""
    pos, neg = tmp_path / "pos", tmp_path / "neg"
    (pos / "yes").mkdir(parents=True)
    neg.mkdir()
    (pos / "stop_take1.wav").symlink_to(AUDIO / "keywords/yes_no_go_stop.wav")  # first token: stop
    (pos / "right_left_up.wav").symlink_to(AUDIO / "keywords/right_left_up.wav")
    (pos / "yes" / "kitchen.wav").symlink_to(AUDIO / "keywords/yes.wav")
    (neg / "talk.wav").symlink_to(AUDIO / "negatives/i_tell_you.wav")
    return pos, neg


def test_user_folders_are_labelled_by_name_or_folder(user_folders):
    pos, neg = user_folders
    assert {c.path.name: c.expected for c in folder_clips(pos, "positives", KEYWORDS)} == {
        "stop_take1.wav": ("stop",), "right_left_up.wav": ("right", "left", "up"), "kitchen.wav": ("yes",)}
    assert [(c.set, c.expected) for c in folder_clips(neg, "negatives", KEYWORDS)] == [("negatives", ())]


def test_negatives_and_positives_are_scored_as_their_own_sets(models, user_folders):
    pos, neg = user_folders
    clips = folder_clips(pos, "positives", KEYWORDS) + folder_clips(neg, "negatives", KEYWORDS)
    (result,), meta = run([models["micronet-l"]], clips, [Candidate.from_setting(default_setting(), True)])
    assert meta["sets"]["positives"]["files"] == 3 and meta["sets"]["negatives"]["files"] == 1
    # right_left_up and yes are right; "stop_take1" holds yes, no, go, stop: found, with 3 extras
    assert result.scores["positives"].clips == 3 and result.scores["positives"].correct == 2
    assert result.recall("positives") == 1.0
    assert result.scores["negatives"].false_accepts["right"] >= 1  # SPEC: i_tell_you -> right
    assert "negatives" not in [c.set for c in clips if c.expected]


def test_a_folder_problem_is_one_line_and_exit_2(tmp_path, capsys, model_dir):
    (tmp_path / "hello.wav").symlink_to(AUDIO / "keywords/yes.wav")
    for args in (["--negatives", str(tmp_path / "missing")], ["--positives", str(tmp_path)]):
        assert main(["--sets", "shared", "--models", "micronet-l", "--model-dir", str(model_dir), "--no-cache",
                     *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert "hello.wav" in err and "stop_1.wav" in err


def test_command_benchmark_splits_real_speech_by_speaker_and_keeps_long_quiet_gaps():
    from benchmarks import command_mode as cm

    dev, val = cm.real_dev_split("dev"), cm.real_dev_split("val")
    assert dev and val and not {cm.speaker_of(p) for p in dev} & {cm.speaker_of(p) for p in val}
    assert len(dev) + len(val) == len(list(cm.REAL_DEV.glob("*.wav")))
    rate = MICRONET.sample_rate
    word = np.full(rate // 10, 3000, dtype=np.int16)
    audio, starts = cm.gapped([word] * len(cm.GAPS_S))
    gaps = np.diff([0.0, *starts]) - np.r_[0.0, [0.1] * (len(starts) - 1)]
    assert gaps.min() == pytest.approx(1.0) and gaps.max() == pytest.approx(60.0)
    second = audio[int(starts[0] * rate) + len(word): int(starts[1] * rate)]  # the 2nd gap: digital silence
    assert len(second) and not second.any()


def test_command_benchmark_refuses_a_missing_folder_in_one_line(tmp_path, capsys):
    from benchmarks import command_mode as cm

    assert cm.main(["--targets", "--negatives", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "nope" in err


def test_command_benchmarks_take_command_settings_and_refuse_bad_ones_in_one_line(capsys):
    from benchmarks import command_mode as cm
    from benchmarks import judge_e2e

    assert cm.command_settings(["min_snr_db=15", "max_word=1.2"]) == CommandParams(min_snr_db=15.0, max_word=1.2)
    assert cm.command_settings([]) == CommandParams()
    for bad, named in (["snr=15"], "snr"), (["min_snr_db=loud"], "loud"), (["min_snr_db=99"], "min_snr_db"):
        for benchmark in (lambda a: cm.main(["--targets", "--set", *a]), lambda a: judge_e2e.main(["--set", *a])):
            assert benchmark(bad) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("error: ") and len(err.splitlines()) == 1 and named in err
