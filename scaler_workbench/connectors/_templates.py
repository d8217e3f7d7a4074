"""Request body templates: ``{parent.x}``, ``{variables.x}``, ``{window.start}``, ``{cursor}``.

A resource's ``json`` table, its ``body`` string and its GraphQL ``variables`` are templates,
rendered once per request with a :class:`TemplateContext`:

=====================  ======================================================================
placeholder            value
=====================  ======================================================================
``{parent.x}``         the parent parameter ``x`` (a name of ``parent_params``), as sent
``{variables.x}``      the profile's ``[variables]`` value ``x`` (a number declared as a
                       number stays one)
``{window.start}``     the window's start in the resource's ``date_range.format``
``{window.end}``       its end (one day / second earlier with ``end_inclusive``)
``{cursor}``           the paginator's cursor (``null`` / empty before the first page)
=====================  ======================================================================

Typed substitution: a JSON string that is *exactly one* placeholder becomes the substituted
value itself (a number stays a number, ``null`` stays ``null``); a placeholder inside longer text
is replaced by its text. Anything else in braces (a GraphQL selection ``{ id }``, ``{name}``
without a namespace) is left as written. Strings (``body``) are rendered as text only, with an
optional ``escape`` function applied to every substituted value, so an XML envelope can escape
``<`` and ``&``: ``render_text(template, ctx, escape=xml.sax.saxutils.escape)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scaler_workbench._profile_schema import did_you_mean
from scaler_workbench.exceptions import ProfileError

__all__ = [
    "TemplateContext",
    "check_template",
    "render_json",
    "render_text",
    "template_placeholders",
]

_PLACEHOLDER = re.compile(r"\{(parent|variables|window)\.([A-Za-z_][A-Za-z0-9_]*)\}|\{(cursor)\}")
_WINDOW_FIELDS = ("start", "end")


@dataclass
class TemplateContext:
    """The values a template may use for one request.

    Attributes
    ----------
    parent : dict
        Parent parameters (``parent_params`` names -> values of the parent record).
    variables : dict
        Profile variables.
    window : dict or None
        ``{"start": ..., "end": ...}`` already formatted, or None without a date range.
    cursor : any
        The paginator's cursor (None on the first page).
    """

    parent: Mapping[str, Any] = field(default_factory=dict)
    variables: Mapping[str, Any] = field(default_factory=dict)
    window: Mapping[str, Any] | None = None
    cursor: Any = None

    def value(self, space: str, name: str) -> Any:
        """The value of ``{space.name}`` (``space`` ``cursor`` ignores ``name``).

        Raises
        ------
        ProfileError
            The name is unknown in this context (a template the spec check let through).
        """
        if space == "cursor":
            return self.cursor
        table = {"parent": self.parent, "variables": self.variables}.get(space)
        if space == "window":
            table = self.window
        if table is None or name not in table:
            raise ProfileError(
                f"body placeholder {{{space}.{name}}} has no value for this request",
                key=space,
                hint="Parent placeholders need parent_params, window ones a date_range.",
            )
        return table[name]


def _matches(text: str) -> list[tuple[str, str, re.Match[str]]]:
    out = []
    for m in _PLACEHOLDER.finditer(text):
        if m.group(3):
            out.append(("cursor", "", m))
        else:
            out.append((m.group(1), m.group(2), m))
    return out


def template_placeholders(template: Any) -> set[tuple[str, str]]:
    """Every ``(space, name)`` placeholder in a template (strings, lists and tables walked)."""
    found: set[tuple[str, str]] = set()
    if isinstance(template, str):
        found.update((s, n) for s, n, _m in _matches(template))
    elif isinstance(template, Mapping):
        for v in template.values():
            found |= template_placeholders(v)
    elif isinstance(template, list | tuple):
        for v in template:
            found |= template_placeholders(v)
    return found


def check_template(
    template: Any,
    *,
    key: str,
    parent_params: Mapping[str, Any],
    variables: Mapping[str, Any] | None,
    has_window: bool,
) -> set[tuple[str, str]]:
    """Refuse placeholders a request could never fill; return the ones used.

    Parameters
    ----------
    template : any
        A ``json`` table, a ``body`` string or GraphQL ``variables``.
    key : str
        Profile key named in errors.
    parent_params : mapping
        The resource's ``parent_params`` (names usable as ``{parent.x}``).
    variables : mapping or None
        The profile's declared variables (None: not checked).
    has_window : bool
        The resource has a ``date_range``.

    Returns
    -------
    set of (str, str)

    Raises
    ------
    ProfileError
        ``{parent.x}`` that is not a parent parameter, ``{variables.x}`` that is not declared,
        ``{window.x}`` without a date range or other than start/end.
    """
    used = template_placeholders(template)
    for space, name in sorted(used):
        if space == "parent" and name not in parent_params:
            raise ProfileError(
                f"{key}: {{parent.{name}}} is not a parent parameter"
                f"{did_you_mean(name, parent_params)}",
                key=key,
                hint="Declare it: parent_params = { " + name + ' = "<parent field>" }.',
            )
        if space == "variables" and variables is not None and name not in variables:
            raise ProfileError(
                f"{key}: {{variables.{name}}} is not declared{did_you_mean(name, variables)}",
                key=key,
                hint=f"Add {name} = ... (or {name}_env = ...) under [variables].",
            )
        if space == "window" and (not has_window or name not in _WINDOW_FIELDS):
            raise ProfileError(
                f"{key}: {{window.{name}}} needs a date_range and is start or end",
                key=key,
                hint="Add [resources.<name>.date_range]; use {window.start} / {window.end}.",
            )
    return used


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_text(
    template: str, ctx: TemplateContext, *, escape: Callable[[str], str] | None = None
) -> str:
    """A string template with every placeholder replaced by its text.

    Parameters
    ----------
    template : str
        e.g. a form body ``"home={parent.home}&from={window.start}"`` or an XML envelope.
    ctx : TemplateContext
    escape : callable, optional
        Applied to each substituted text (``xml.sax.saxutils.escape`` for XML bodies).

    Returns
    -------
    str
    """

    def sub(m: re.Match[str]) -> str:
        space = "cursor" if m.group(3) else m.group(1)
        text = _text(ctx.value(space, m.group(2) or ""))
        return escape(text) if escape is not None else text

    return _PLACEHOLDER.sub(sub, template)


def render_json(template: Any, ctx: TemplateContext) -> Any:
    """A JSON template (tables, lists, strings) rendered with typed substitution.

    A string that is exactly one placeholder becomes the value itself (numbers stay numbers);
    other strings get :func:`render_text`; keys are not templated.

    Parameters
    ----------
    template : any
    ctx : TemplateContext

    Returns
    -------
    any
        A new value (the template is not modified).
    """
    if isinstance(template, str):
        m = _PLACEHOLDER.fullmatch(template)
        if m is not None:
            return ctx.value("cursor" if m.group(3) else m.group(1), m.group(2) or "")
        return render_text(template, ctx) if "{" in template else template
    if isinstance(template, Mapping):
        return {k: render_json(v, ctx) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [render_json(v, ctx) for v in template]
    return template
