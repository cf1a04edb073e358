"""Each parameter's range, unit and message, declared once on its dataclass field.

A domain dataclass (`CommandParams`, `DecisionParams`, the config sections...) declares
its fields with `setting(default, rule)` and derives from `Checked`, which holds every
instance to those rules. The config file, the CLI flags (applied through the same loader) and
the Python API then all refuse a bad value with the same one line:
`bad value for command.max_word: 5; expected a number of seconds from 0.2 to 3`.
A rule also converts what TOML gives to the field's type (an int for a float, a list
for a tuple). Keywords depend on the model, so they are checked where it is chosen
(`check_keywords`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import KwsError

RULE = "kws_stream.rule"  # the field metadata key


class ConfigError(KwsError, ValueError):
    """A bad setting (file, flag or API argument): exit status 2."""

    exit_code = 2


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Rule:
    """What a setting accepts (`expected` says it to the user) and its stored form."""

    expected: str
    accepts: Callable[[Any], bool]
    convert: Callable[[Any], Any] = _same


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo: int, hi: int, what: str = "an integer", note: str = "", zero: str = "") -> Rule:
    """An int from lo to hi; `zero` names what 0 means when 0 is also allowed."""
    prefix = f"0 ({zero}) or " if zero else ""
    return Rule(f"{prefix}{what} from {lo} to {hi}{f' ({note})' if note else ''}",
                lambda v: _int(v) and (lo <= v <= hi or (bool(zero) and v == 0)))


def number(lo: float, hi: float, what: str = "a number", open_low: bool = False) -> Rule:
    """A float from lo to hi (an int is taken as a float); `open_low`: lo itself is excluded."""
    expected = f"{what} in ({lo:g}, {hi:g}]" if open_low else f"{what} from {lo:g} to {hi:g}"
    return Rule(expected, lambda v: _num(v) and (lo < v if open_low else lo <= v) and v <= hi, float)


def seconds(lo: float, hi: float) -> Rule:
    return number(lo, hi, "a number of seconds")


def decibels(lo: float, hi: float) -> Rule:
    return number(lo, hi, "a number of dB")


def text(what: str, test: Callable[[str], bool] = lambda s: True) -> Rule:
    return Rule(what, lambda v: isinstance(v, str) and test(v))


def choice(*values: str) -> Rule:
    return Rule(" or ".join(f'"{v}"' for v in values), lambda v: isinstance(v, str) and v in values)


FLAG = Rule("true or false", lambda v: isinstance(v, bool))
SCORE = number(0.0, 1.0, open_low=True)  # a softmax score a keyword must reach
KEYWORD_LIST = Rule("a list of keyword names",
                    lambda v: isinstance(v, (list, tuple)) and all(isinstance(k, str) and k for k in v), tuple)
KEYWORD_SET = Rule("None or a set of keyword names",
                   lambda v: v is None or (isinstance(v, Collection) and not isinstance(v, str)
                                           and all(isinstance(k, str) and k for k in v)),
                   lambda v: None if v is None else frozenset(v))
KEYWORD_SCORES = Rule(f"a table of keyword = {SCORE.expected}",
                      lambda v: isinstance(v, Mapping) and all(isinstance(k, str) and SCORE.accepts(x)
                                                               for k, x in v.items()),
                      lambda v: {k: float(x) for k, x in v.items()})


def setting(default: Any = dataclasses.MISSING, rule: Rule | None = None, *,
            factory: Callable[[], Any] | Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose value `check` holds to `rule`."""
    return dataclasses.field(default=default, default_factory=factory, metadata={RULE: rule})


def same_as(cls: type, name: str) -> Any:
    """A field with the default and rule of `cls`'s field `name` (one home for both)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return setting(rule=f.metadata[RULE], factory=f.default_factory)
    return setting(f.default, f.metadata[RULE])


def rule_of(f: dataclasses.Field[Any]) -> Rule:
    rule = f.metadata.get(RULE)
    if not isinstance(rule, Rule):
        raise TypeError(f"field {f.name} has no kws_stream.params rule")
    return rule


def check(obj: Any, section: str) -> None:
    """Hold each field of the frozen dataclass `obj` to its rule and store its converted
    form; the first bad one is a ConfigError naming `section.field`."""
    for f in dataclasses.fields(obj):
        rule, value = rule_of(f), getattr(obj, f.name)
        if not rule.accepts(value):
            raise ConfigError(f"bad value for {section}.{f.name}: {value!r}; expected {rule.expected}")
        if isinstance(value, str) and "\0" in value:
            raise ConfigError(f"bad value for {section}.{f.name}: {value!r}; it contains a NUL character")
        converted = rule.convert(value)
        if converted is not value:
            object.__setattr__(obj, f.name, converted)


class Checked:
    """Base of a frozen dataclass of `setting` fields: each instance is checked (and its
    values converted) when it is made, by the constructor, `replace` or the config loader."""

    section: ClassVar[str]  # the config section its fields are, for messages: "command"

    def __post_init__(self) -> None:
        check(self, self.section)


def did_you_mean(name: str, choices: list[str]) -> str:
    """"did you mean 'x'?" for the nearest choice, else the (short) list of choices."""
    import difflib  # only on a bad value: 0.2 MB resident that `kws-stream run` never needs

    near = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"did you mean {near[0]!r}?" if near else f"allowed: {', '.join(choices)}"


def check_keywords(section: str, keywords: Iterable[str], thresholds: Mapping[str, float],
                   keyword_labels: Collection[str], model: str) -> None:
    """The allow-list and per-keyword thresholds name keywords of the model in use: its
    labels, not a fixed list (a user's own model has its own)."""
    for key, names in (("keywords", keywords), ("thresholds", thresholds)):
        for name in names:
            if name not in keyword_labels:
                raise ConfigError(f"bad value for {section}.{key}: {name!r} is not a keyword of model {model}; "
                                  f"{did_you_mean(name, sorted(keyword_labels))}")
