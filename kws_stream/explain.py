"""`detect --explain`: why each candidate keyword was reported or rejected, one line each.

The lines go to stderr as `key=value` fields (stdout keeps the public JSON schema), so a
user can tune thresholds and the `[command]` rules on their own recordings.
"""

from __future__ import annotations

import json

from .events import Detection
from .judge import JudgeVerdict
from .pipeline import PipelineParams
from .verdicts import Reject


def _value(text: str) -> str:
    """Bare when it is one word, JSON-quoted otherwise (a path with spaces stays one field)."""
    return text if text and not any(c.isspace() or c in '"=' for c in text) else json.dumps(text)


def explain_line(d: Detection, params: PipelineParams, verdict: str, rule: Reject | None = None,
                 *, enrolled: bool = False, judge: JudgeVerdict | None = None) -> str:
    """`verdict` is "reported" or "rejected"; `rule` is command mode's rejection: its rule's
    name (the `[command]` setting) and what it measured. `enrolled`: `d` is an enrolled
    word's score on one burst (`kind=enrolled`; its threshold is the word's own unless
    [detection.thresholds] names it). `judge`: the second judge's verdict on a candidate the
    rules accepted (`judge=accept|reject judge_score= judge_threshold=`)."""
    mode = "command" if params.command.enabled else "plain"
    threshold = d.threshold if d.threshold is not None else params.decision.threshold_for(d.keyword)
    fields = [f"source={_value(d.source)}", f"mode={mode}", f"verdict={verdict}", f"keyword={d.keyword}",
              *(["kind=enrolled"] if enrolled else []),
              f"score={d.score:.3f}", f"threshold={threshold:.2f}", f"start={d.start:.2f}", f"end={d.end:.2f}"]
    if rule is not None:
        fields += [f"rule={rule.rule.value}", f"detail={json.dumps(rule.detail)}"]
    if judge is not None:
        fields += [f"judge={'accept' if judge.accepted else 'reject'}", f"judge_score={judge.score:.2f}",
                   f"judge_threshold={judge.threshold:.2f}"]
    return "explain " + " ".join(fields)
