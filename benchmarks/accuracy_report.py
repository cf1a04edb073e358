"""The accuracy harness's tables: text for the terminal, markdown for docs/benchmarks.md."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .accuracy_clips import SETS
from .accuracy_score import KeywordSetScore, NegativeSetScore, Result, best, rate


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _fa(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def table_rows(results: Sequence[Result]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "stride", "smooth", "thresh", "refr", "shared acc", "synth acc", "synth recall",
              "FA", "FA/h", ""]
    mine = any("positives" in r.scores for r in results), any("negatives" in r.scores for r in results)
    if mine[0]:
        header[-1:-1] = ["your acc", "your recall"]
    if mine[1]:
        header[-1:-1] = ["your FA", "your FA/h"]
    rows = []
    for r in results:
        neg = r.scores.get("negative")
        p = r.params
        mark = " ".join(m for m, on in (("default", r.default), ("pareto", r.pareto)) if on)
        rows.append([r.model, str(p.get("stride", "")), str(p.get("smoothing", "")),
                     f"{p['threshold']:g}" if "threshold" in p else "", f"{p['refractory']:g}" if "refractory" in p else "",
                     _pct(r.accuracy("shared")), _pct(r.accuracy("synthetic")), _pct(r.recall("synthetic")),
                     str(neg.total) if isinstance(neg, NegativeSetScore) else "-", _fa(r.fa_per_hour), mark])
        if mine[0]:
            rows[-1][-1:-1] = [_pct(r.accuracy("positives")), _pct(r.recall("positives"))]
        if mine[1]:
            yours = r.scores.get("negatives")
            rows[-1][-1:-1] = ([str(yours.total), _fa(yours.per_hour)] if isinstance(yours, NegativeSetScore)
                               else ["-", "-"])
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    left = [i == 0 or not h for i, h in enumerate(header)]  # names and the unlabelled mark column
    line = lambda cells: "  ".join(c.ljust(w) if lft else c.rjust(w)  # noqa: E731
                                   for c, w, lft in zip(cells, widths, left)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def keyword_rows(results: Sequence[Result], keywords: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Per-keyword recall (shared, synthetic) and false accepts per hour, one column group per result."""
    header = ["keyword"]
    for r in results:
        header += [f"{r.model} shared", f"{r.model} synth", f"{r.model} FA/h"]
    rows = []
    for k in keywords:
        row = [k]
        for r in results:
            for set_name in ("shared", "synthetic"):
                s = r.scores.get(set_name)
                if isinstance(s, KeywordSetScore) and s.expected[k]:
                    row.append(f"{s.found[k]}/{s.expected[k]}")
                else:
                    row.append("-")
            neg = r.scores.get("negative")
            row.append(_fa(rate(neg.false_accepts[k] * 3600.0, neg.seconds)) if isinstance(neg, NegativeSetScore)
                       else "-")
        rows.append(row)
    return header, rows


def confusion_lines(r: Result, set_name: str, limit: int = 12) -> list[str]:
    """The most frequent errors of one set: ``expected -> detected: count``."""
    s = r.scores.get(set_name)
    if not isinstance(s, KeywordSetScore):
        return []
    errors = Counter({(e, d): n for e, row in s.confusions.items() for d, n in row.items() if e != d})
    return [f"{e} -> {d}: {n}" for (e, d), n in errors.most_common(limit)]


def summary_rows(results: Sequence[Result]) -> list[Result]:
    """Per model: the default first, then the best few."""
    chosen: list[Result] = []
    for model in dict.fromkeys(r.model for r in results):
        mine = [r for r in results if r.model == model]
        chosen += [r for r in mine if r.default]
        chosen += [r for r in best(mine) if not r.default]
    return chosen


def render_text(results: Sequence[Result], meta: Mapping[str, Any], keywords: Sequence[str]) -> str:
    header, rows = table_rows(results)
    parts = [text_table(header, rows), "", "Default and best (Pareto: synthetic acc, shared acc, FA/h):",
             text_table(*table_rows(summary_rows(results)))]
    defaults = [r for r in results if r.default]
    if defaults:
        parts += ["", "Per keyword at the default (found/expected; FA/h):", text_table(*keyword_rows(defaults, keywords))]
        for r in defaults:
            for set_name in ("shared", "synthetic"):
                lines = confusion_lines(r, set_name)
                if lines:
                    parts += [f"{r.model} {set_name} errors at the default: " + "; ".join(lines)]
    parts += ["", describe_sets(meta)]
    return "\n".join(parts)


def describe_sets(meta: Mapping[str, Any]) -> str:
    sets = meta.get("sets", {})
    bits = []
    for name in (*SETS, "positives", "negatives"):
        s = sets.get(name)
        if s:
            bits.append(f"{name}: {s['files']} files, {s['seconds'] / 60:.1f} min")
    return "Sets: " + "; ".join(bits) + f". Analysis {meta['analysis_seconds']:.1f} s, replay {meta['replay_seconds']:.1f} s."


def render_markdown(results: Sequence[Result], meta: Mapping[str, Any], keywords: Sequence[str]) -> str:
    out = [
        "## Accuracy",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}; machine: {meta['cpu']} ({meta['cpus']} CPUs), {meta['runtime']}, "
        f"Python {meta['python']}.  ",
        describe_sets(meta),
        "",
        "Clip accuracy: the detected keyword sequence equals the expected one exactly. Recall: expected keyword "
        "instances found (order-aware). FA/h: detections per hour of keyword-free audio "
        "(synthetic prose plus the shared negatives). `default` marks the shipped setting, `pareto` the settings "
        "no other setting beats on synthetic accuracy, shared accuracy and FA/h at once. The decision stage is the "
        "plain `KeywordDecider` (no command-mode gate).",
        "",
        "### Default and best settings",
        "",
        markdown_table(*table_rows(summary_rows(results))),
        "",
    ]
    defaults = [r for r in results if r.default]
    if defaults:
        out += ["### Per keyword at the default (found/expected; false accepts per hour)", "",
                markdown_table(*keyword_rows(defaults, keywords)), ""]
        for r in defaults:
            for set_name in ("shared", "synthetic"):
                lines = confusion_lines(r, set_name)
                if lines:
                    out.append(f"- {r.model}, {set_name} set, most frequent errors: " + "; ".join(lines))
        out.append("")
    out += ["### All candidates", "", markdown_table(*table_rows(results)), ""]
    return "\n".join(out)
