"""The soak benchmark (benchmarks/soak.py): a one-minute live run where every part takes
part (virtual microphone removed and re-added, mosquitto with a restart, `kws-stream run`
with a threshold and an [mqtt] SIGHUP, a /metrics scraper, a Wyoming server with a client
and clients that vanish), and the verdict logic on made-up results.

The live run plays single-word clips only, after pauses of 1-8 s, without the CPU hog (the
full soak has it). It must PASS: every command on stdout and on MQTT, nothing extra, every
process flat. One minute is short for a trend, but not for a leak of a thread or an fd.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks import soak

needs_mosquitto = pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                     reason="mosquitto is not installed (apt install mosquitto)")

SINGLE_WORDS = ("yes.wav", "down.wav", "no_1000ms.wav", "yes_1000ms.wav")


@needs_mosquitto
def test_a_one_minute_soak_passes_through_every_fault(tmp_path: Path) -> None:
    opts = soak.Options(minutes=1.0, seed=0, min_pause=1.0, max_pause=8.0, sample_every=10.0, sighup_every=20.0,
                        broker_restarts=1, broker_down=2.0, wyoming_max_pause=4.0, clips=SINGLE_WORDS,
                        mqtt_drain=20.0, workdir=tmp_path, mic_unplugs=1, mic_down=2.0, hog=False, warmup_s=10.0)
    r = soak.run_soak(opts)
    text = soak.report(r)
    print(text)
    # seeded plan: the first commands come after 1.09 s room tone, 5.43 s room tone, 6.67 s silence
    assert len(r.expected) >= 3, text
    assert any(e.pause_s >= 3 and e.pause_kind == "silence" for e in r.expected), text
    assert [e for e in r.expected if e.stdout is None] == [], text
    assert [e for e in r.expected if not (e.mqtt and e.hermes)] == [], text  # every one on MQTT too
    assert r.extra_stdout == [] and r.extra_mqtt == [], text
    assert [w for _, w in r.sighups] == ["threshold=0.65", "mqtt.client_id=kws-soak-b"], text
    assert r.reloads == 2 and len(r.broker_restarts) == 1 and len(r.mic_unplugs) == 1, text
    assert r.daemon_events.get("device_lost") == 1 and r.daemon_events.get("device_back") == 1, text
    assert r.wyoming and all(w.ok for w in r.wyoming), text
    assert r.vanisher_connections >= 1 and r.vanisher_errors == [], text
    assert r.scrapes >= 10 and r.scrape_failures == [], text
    assert len(r.samples) >= 3 and all(s.rss_mb > 0 and s.threads > 0 and s.fds > 0 and s.wy_rss_mb > 0
                                       for s in r.samples), text
    assert r.daemon_alive_at_end and r.daemon_status == 0 and r.wyoming_status == 0 and r.tracebacks == 0, text
    assert text.count("\n") > len(r.samples) + len(r.expected)  # a row per sample and per word
    assert r.verdict and r.reasons == [] and "VERDICT: PASS" in text, text


def _expected(keyword: str, start: float) -> soak.Expected:
    return soak.Expected(0, "yes.wav", keyword, 5.0, "room", start, start + 1.0)


def _result(expected: list[soak.Expected], fds: list[int]) -> soak.Result:
    samples = [soak.Sample(i * 30.0, 70.0, 9, f, 50.0, 3, 9, None) for i, f in enumerate(fds)]
    return soak.Result(soak.Options(warmup_s=0.0), expected, [], [], samples, [(60.0, "threshold=0.65")], 1, 0, [90.0],
                       [soak.WyomingRound(0, "yes.wav", 2.0, ("yes",), ["yes"])], 1, 0, True, 0, 0, {}, 0, 240.0)


def test_matching_gives_each_line_to_one_word_in_its_time_window() -> None:
    words = [_expected("yes", 10.0), _expected("no", 20.0), _expected("yes", 30.0)]
    lines = [(11.2, {"keyword": "yes"}), (11.3, {"keyword": "yes"}),  # a double report: the 2nd is extra
             (21.0, {"keyword": "go"}),  # wrong keyword: "no" is missing and "go" is extra
             (36.5, {"keyword": "yes"})]  # 5.5 s after the word: too late
    extra = soak.match_stdout(words, lines)
    assert [w.stdout is not None for w in words] == [True, False, False]
    assert [d["keyword"] for _, d in extra] == ["yes", "go", "yes"]


def test_mqtt_needs_the_same_detection_and_its_hermes_message() -> None:
    words = [_expected("yes", 10.0), _expected("up", 20.0)]
    words[0].stdout = {"keyword": "yes", "start": 1.0, "end": 2.0}
    words[1].stdout = {"keyword": "up", "start": 11.0, "end": 12.0}
    msgs = [("kws-soak/detection", {"keyword": "yes", "start": 1.0, "end": 2.0}),
            ("hermes/hotword/yes/detected", {"modelId": "yes"}),
            ("kws-soak/detection", {"keyword": "up", "start": 11.0, "end": 12.5}),  # not the stdout one
            ("hermes/hotword/up/detected", {"modelId": "up"})]
    extra = soak.match_mqtt(words, msgs)
    assert (words[0].mqtt, words[0].hermes) == (True, True)
    assert (words[1].mqtt, words[1].hermes) == (False, True)
    assert extra == [msgs[2]]


def test_verdict_fails_on_a_missing_command_or_a_growing_fd_count_and_passes_otherwise() -> None:
    found = _expected("yes", 10.0)
    found.stdout, found.mqtt, found.hermes = {"keyword": "yes"}, True, True
    good = _result([found], [15, 15, 16, 15, 16, 17, 16, 15])
    soak.judge(good)
    assert good.verdict and good.reasons == []
    assert "VERDICT: PASS" in soak.report(good)

    bad = _result([found, _expected("no", 20.0)], [15, 15, 17, 19, 18, 21, 21, 23])
    soak.judge(bad)
    assert not bad.verdict
    assert bad.reasons == ["1 of 2 commands missing on stdout", "daemon fds not flat: 15 -> 22 (allowed +4)"]
    assert "VERDICT: FAIL: 1 of 2 commands missing on stdout; daemon fds not flat" in soak.report(bad)


def test_flat_compares_quarter_medians() -> None:
    assert soak.flat([70.0, 71.0, 90.0, 71.0, 72.0, 71.5, 72.0, 72.5], 5.0) == (True, 70.5, 72.25)  # one spike
    assert soak.flat([70.0, 72.0, 74.0, 76.0, 78.0, 80.0, 82.0, 84.0], 5.0)[0] is False  # a steady leak
    assert soak.flat([], 5.0)[0] is False
