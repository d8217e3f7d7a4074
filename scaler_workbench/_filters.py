"""Record filters: the one small expression language of ``where``, ``skip`` and ``parent_filter``.

A filter is a TOML table of *conditions*, one per record field (a dotted key such as
``"meter.status"`` reads a nested field; quote it, TOML would otherwise nest the table)::

    where = { status = "active" }                       # equality (a list: membership)
    where = { status = { "!=" = "archived" } }          # a comparison
    where = { "meter.kind" = { in = ["E", "G"] }, serial = { matches = "^Z" } }
    skip  = { value = { missing = true } }              # null or absent
    parent_filter = { kind = "interval", size = { ">=" = 10 } }

Operators (:data:`OPERATORS`): ``==``, ``!=``, ``>``, ``<``, ``>=``, ``<=``, ``in``,
``not in``, ``matches`` (a regular expression, :func:`re.search`) and ``missing`` (``true``:
the field is null or absent; ``false``: it has a value). Several operators in one condition
must all hold. Values compare as numbers when both sides read as numbers, else as text (so ISO
dates compare in time order); equality also accepts ``1`` for ``"1"`` (XML gives text). A null
or absent field fails every operator but ``!=``, ``not in`` and ``missing = true``.

``where`` keeps a record only when every condition holds; ``skip`` drops it when any holds.
Each condition is a *rule*, named ``where.<field>`` / ``skip.<field>``; a dropped record is
counted under the first rule that dropped it (in the order written), so the counts per rule add
up to the records dropped. Filters are compiled when the profile is read
(:func:`compile_filter`), so a bad operator or regex fails before any request.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scaler_workbench.exceptions import FilterError

__all__ = [
    "FILTER_KEYS",
    "OPERATORS",
    "Filter",
    "compile_filter",
    "compile_filters",
    "compile_parent_filter",
    "exclude_list",
    "lookup",
]

#: The filter keys of a ``[resources.X]`` table or a mapping section.
FILTER_KEYS = ("where", "skip")
#: Every operator a condition may use.
OPERATORS = ("==", "!=", ">", "<", ">=", "<=", "in", "not in", "matches", "missing")

_ABSENT = object()
Getter = Callable[[Mapping[str, Any], str], Any]


def lookup(record: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` in ``record`` (``None`` when absent).

    A key holding the whole dotted text wins (``{"a.b": 1}``); list items are reached by a
    number step (``readings.0.value``).
    """
    if not isinstance(record, Mapping):
        return None
    if path in record:
        return record[path]
    node: Any = record
    for step in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(step, _ABSENT)
        elif (
            isinstance(node, list)
            and step.lstrip("-").isdigit()
            and -len(node) <= int(step) < len(node)
        ):
            node = node[int(step)]
        else:
            return None
        if node is _ABSENT:
            return None
    return node


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _equal(have: Any, want: Any) -> bool:
    if have == want and type(have) is type(want):
        return True
    a, b = _number(have), _number(want)
    if a is not None and b is not None:
        return a == b
    return str(have) == str(want)


def _order(have: Any, want: Any) -> tuple[Any, Any]:
    a, b = _number(have), _number(want)
    if a is not None and b is not None:
        return a, b
    return str(have), str(want)


@dataclass(frozen=True)
class _Test:
    op: str
    value: Any
    pattern: re.Pattern[str] | None = None

    def __call__(self, have: Any) -> bool:
        op, want = self.op, self.value
        if op == "missing":
            return _is_missing(have) is bool(want)
        if _is_missing(have):
            return op in ("!=", "not in")
        if op == "==":
            return _equal(have, want)
        if op == "!=":
            return not _equal(have, want)
        if op == "in":
            return any(_equal(have, w) for w in want)
        if op == "not in":
            return not any(_equal(have, w) for w in want)
        if op == "matches":
            assert self.pattern is not None
            return self.pattern.search(str(have)) is not None
        a, b = _order(have, want)
        if op == ">":
            return bool(a > b)
        if op == "<":
            return bool(a < b)
        if op == ">=":
            return bool(a >= b)
        return bool(a <= b)


@dataclass(frozen=True)
class _Condition:
    name: str
    path: str
    tests: tuple[_Test, ...]

    def holds(self, record: Mapping[str, Any], get: Getter) -> bool:
        have = get(record, self.path)
        return all(t(have) for t in self.tests)


@dataclass
class Filter:
    """A compiled ``where`` / ``skip`` pair (and ``parent_filter``, which is a ``where``).

    Attributes
    ----------
    where, skip : tuple of conditions
        As written in the profile.
    key : str
        The dotted profile key the filter came from (``resources.meters``, ``mapping.usage.x``).
    """

    where: tuple[_Condition, ...] = ()
    skip: tuple[_Condition, ...] = ()
    key: str = ""
    get: Getter = field(default=lookup, repr=False)

    def __bool__(self) -> bool:
        return bool(self.where or self.skip)

    @property
    def rules(self) -> list[str]:
        """The rule names, in the order they are tried."""
        return [c.name for c in (*self.where, *self.skip)]

    def rule_for(self, record: Mapping[str, Any]) -> str | None:
        """The name of the first rule that drops ``record``, or ``None`` when it is kept."""
        for cond in self.where:
            if not cond.holds(record, self.get):
                return cond.name
        for cond in self.skip:
            if cond.holds(record, self.get):
                return cond.name
        return None

    def keeps(self, record: Mapping[str, Any]) -> bool:
        """True when ``record`` passes every ``where`` and no ``skip`` condition."""
        return self.rule_for(record) is None

    def split(self, records: Iterable[Mapping[str, Any]]) -> tuple[list[Any], dict[str, int]]:
        """The records kept, and the records dropped counted per rule.

        Parameters
        ----------
        records : iterable of dict
            Provider records, in order.

        Returns
        -------
        kept : list of dict
            The records that pass, in their order.
        counts : dict of str to int
            Per rule name (only rules that dropped something): records dropped [records].
        """
        kept: list[Any] = []
        counts: dict[str, int] = {}
        for rec in records:
            rule = self.rule_for(rec)
            if rule is None:
                kept.append(rec)
            else:
                counts[rule] = counts.get(rule, 0) + 1
        return kept, counts


def _err(message: str, key: str, hint: str, provider: str | None) -> FilterError:
    return FilterError(message, key=key, hint=hint, provider=provider)


_EXAMPLES = (
    'e.g. where = { status = "active" }, where = { status = { "!=" = "archived" } }, '
    'skip = { value = { missing = true } }, where = { "meter.kind" = { in = ["E", "G"] } }'
)


#: Other languages' spellings of an operator, for "did you mean" (never accepted as such).
_SPELLINGS = {
    "=": "==",
    "eq": "==",
    "ne": "!=",
    "<>": "!=",
    "=!": "!=",
    "gt": ">",
    "lt": "<",
    "ge": ">=",
    "gte": ">=",
    "=>": ">=",
    "le": "<=",
    "lte": "<=",
    "=<": "<=",
    "nin": "not in",
    "regex": "matches",
    "re": "matches",
    "like": "matches",
    "null": "missing",
    "is null": "missing",
}


def _did_you_mean(op: str) -> str:
    """``" (did you mean 'x'?)"`` for the operator closest to ``op`` (or ``""``)."""
    spaced = op.replace("_", " ").strip().lower()
    if spaced in _SPELLINGS:
        return f" (did you mean {_SPELLINGS[spaced]!r}?)"
    close = [o for o in OPERATORS if o == spaced] or difflib.get_close_matches(
        spaced, OPERATORS, n=1, cutoff=0.5
    )
    return f" (did you mean {close[0]!r}?)" if close else ""


def _compile_test(op: str, value: Any, key: str, provider: str | None) -> _Test:
    if op not in OPERATORS:
        raise _err(
            f"{key}: unknown operator {op!r}{_did_you_mean(op)}",
            key,
            f"Operators: {', '.join(OPERATORS)}. A dotted field name must be quoted "
            f'("meter.kind" = ...), else TOML nests it (docs/mapping.md, Record filters).',
            provider,
        )
    if op in ("in", "not in"):
        if not isinstance(value, list | tuple) or not value:
            raise _err(
                f"{key}.{op} needs a non-empty list, got {value!r}",
                key,
                f'e.g. {{ "{op}" = ["E", "G"] }}',
                provider,
            )
        return _Test(op, tuple(value))
    if op == "missing":
        if not isinstance(value, bool):
            raise _err(
                f"{key}.missing must be true or false, got {value!r}",
                key,
                "missing = true: the field is null or absent; false: it has a value.",
                provider,
            )
        return _Test(op, value)
    if isinstance(value, Mapping | list | tuple) or value is None:
        raise _err(
            f"{key}.{op} compares with one value, got {value!r}",
            key,
            'Use "in" / "not in" for a list of values.',
            provider,
        )
    if op == "matches":
        try:
            pattern = re.compile(str(value))
        except re.error as exc:
            raise _err(
                f"{key}.matches is not a regular expression: {exc}",
                key,
                'e.g. matches = "^Z[0-9]+$" (Python re syntax; search anywhere in the text)',
                provider,
            ) from None
        return _Test(op, str(value), pattern)
    return _Test(op, value)


def _compile_conditions(
    kind: str, table: Any, key: str, provider: str | None
) -> tuple[_Condition, ...]:
    if table is None:
        return ()
    if not isinstance(table, Mapping):
        raise _err(
            f"{key} must be a table of field = condition, got {table!r}", key, _EXAMPLES, provider
        )
    out = []
    for path, cond in table.items():
        here = f"{key}.{path}"
        if not str(path).strip():
            raise _err(f"{key} has an empty field name", key, _EXAMPLES, provider)
        if isinstance(cond, Mapping):
            if not cond:
                raise _err(f"{here} has no operator", here, _EXAMPLES, provider)
            tests = tuple(_compile_test(str(op), v, here, provider) for op, v in cond.items())
        elif isinstance(cond, list | tuple):
            tests = (_compile_test("in", list(cond), here, provider),)
        elif cond is None:
            raise _err(f"{here} has no value", here, _EXAMPLES, provider)
        else:
            tests = (_Test("==", cond),)
        out.append(_Condition(f"{kind}.{path}", str(path), tests))
    return tuple(out)


def compile_filter(
    where: Any = None,
    skip: Any = None,
    *,
    key: str = "",
    provider: str | None = None,
    get: Getter = lookup,
) -> Filter:
    """Compile a ``where`` and a ``skip`` table into a :class:`Filter`.

    Parameters
    ----------
    where, skip : dict or None
        ``{field: value | [values] | {operator: value, ...}}`` (see the module docstring).
    key : str
        The dotted profile key that holds them, for errors and rule names in reports.
    provider : str, optional
        The provider name, for errors.
    get : callable, optional
        ``get(record, path)``: how a field is read (default :func:`lookup`; connectors pass
        their own, which also reads XML records).

    Returns
    -------
    Filter

    Raises
    ------
    FilterError
        An unknown operator (with "did you mean"), a list operator without a list, a bad
        regular expression, a condition that is not a value, list or table.
    """
    return Filter(
        where=_compile_conditions("where", where, f"{key}.where" if key else "where", provider),
        skip=_compile_conditions("skip", skip, f"{key}.skip" if key else "skip", provider),
        key=key,
        get=get,
    )


def compile_parent_filter(
    table: Any, *, key: str, provider: str | None = None, get: Getter = lookup
) -> Filter:
    """``parent_filter`` (a ``where`` on the parent records) as a :class:`Filter`.

    Raises
    ------
    FilterError
        As :func:`compile_filter`.
    """
    return Filter(
        where=_compile_conditions("parent_filter", table, key, provider), key=key, get=get
    )


def compile_filters(table: Mapping[str, Any], *, key: str, provider: str | None = None) -> Filter:
    """The :class:`Filter` of a profile table holding ``where`` and/or ``skip`` keys."""
    return compile_filter(table.get("where"), table.get("skip"), key=key, provider=provider)


def exclude_list(value: Any, *, key: str, provider: str | None = None) -> frozenset[str]:
    """``exclude_meters`` as a set of meter ids (text).

    Raises
    ------
    FilterError
        When the value is not a list of ids.
    """
    if value is None:
        return frozenset()
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value)
    ):
        raise _err(
            f"{key} must be a list of meter ids, got {value!r}",
            key,
            'e.g. exclude_meters = ["Z1234", "Z5678"] (the ids as mapped, compound keys joined)',
            provider,
        )
    return frozenset(str(v) for v in value)
