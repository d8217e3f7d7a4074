"""Notebook widgets: thin ipywidgets UIs over the library's functions.

Each panel is a small class holding its controls and a ``widget`` (an ``ipywidgets.VBox``); a
notebook cell that returns the panel shows it. Every button and drop-down is wired to a public
method, so the same steps can be run (and tested) without a browser::

    CredentialsPanel(profile)            which environment variables the profile needs, set or not
    ApiExplorer(profile)                 pick a resource, fetch page 1, probe pagination, plan
    MappingHelper(samples, table=...)    field paths seen in samples -> mapping fields, meter types
    QuarantineBrowser(result)            filter quarantined records by table / rule / severity
    SyncRunner(profile, out=...)         run a sync: stage and request progress, live log, summary
    ProfileForm(profile)                 base URL, auth type and env var names, resources -> TOML

A panel's display bundle carries, beside the live widget, a static ``text/html`` and
``text/plain`` snapshot of what it shows. JupyterLab draws the live widget; a notebook saved
without widget state, nbconvert's HTML and a plain-text console show the snapshot instead of
empty space or ``VBox(children=(HTML(...``.

Panels never show a secret: the credentials panel shows only *whether* a variable is set, and
every text a panel renders passes through :func:`scaler_workbench._secrets.redact`. Errors of the
workbench are shown in the panel (with their hint) instead of raising out of a button callback.

ipywidgets (and pandas styling) are imported inside the constructors, so ``import
scaler_workbench`` never imports ipywidgets.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from scaler_workbench._secrets import get_logger, redact, redact_url
from scaler_workbench.exceptions import MappingError, SchemaError, WorkbenchError
from scaler_workbench.schema import METER_SUBTYPES, METER_TYPES, QUARANTINE, TABLES, Tables

if TYPE_CHECKING:  # pragma: no cover
    from scaler_workbench.profile import Profile

__all__ = [
    "SYNC_STAGES",
    "ApiExplorer",
    "CredentialsPanel",
    "MappingHelper",
    "ProfileForm",
    "QuarantineBrowser",
    "SyncRunner",
    "auth_env_keys",
    "profile_env_vars",
    "snapshot_html",
    "widget_text",
]

log = get_logger(__name__)

_ALL = "(all)"
_NONE = ""
#: Columns that later stages fill (lineage, counts), never offered in the mapping helper.
_DERIVED = frozenset(
    {"raw_value", "factor", "method", "n_intervals", "days_with_data", "expected_intervals"}
    | {"null_intervals", "estimated_intervals", "first_local", "last_local", "billing_days"}
)
#: Provider field names worth trying for a Scaler column when nothing is named like it.
_ALIASES: dict[str, tuple[str, ...]] = {
    "raw_unit": ("unit", "uom", "units"),
    "meter_type": ("commodity", "type", "utility"),
    "description": ("name", "label"),
    "consumption": ("value", "amount", "quantity"),
    "value": ("register", "reading", "read"),
}


# -- shared helpers ------------------------------------------------------------------------------
def _widgets() -> Any:
    import ipywidgets

    return ipywidgets


def widget_text(widget: Any) -> str:
    """Every string a widget tree would send to the browser (values, options, labels), joined.

    Use it to check what a panel shows, e.g. that no secret is rendered anywhere::

        assert secret not in widget_text(panel.widget)
    """
    seen: set[int] = set()
    parts: list[str] = []

    def visit(w: Any) -> None:
        if id(w) in seen:
            return
        seen.add(id(w))
        state = w.get_state()
        for name, value in state.items():
            if name.startswith("_") or name in {"layout", "style"}:
                continue
            collect(value)
        for child in getattr(w, "children", ()):
            visit(child)

    def collect(value: Any) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list | tuple):
            for v in value:
                collect(v)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)

    visit(widget)
    return "\n".join(parts)


def _html_table(frame: pd.DataFrame, *, max_rows: int = 50) -> str:
    if frame.empty:
        return "<i>no rows</i>"
    shown = frame.head(max_rows)
    text = shown.to_html(index=False, escape=True, na_rep="", border=0, max_cols=40)
    more = (
        f"<br><i>{len(frame) - max_rows} more rows not shown</i>" if len(frame) > max_rows else ""
    )
    return redact(text) + more


def _pre(text: str) -> str:
    return (
        "<pre style='max-height:24em;overflow:auto;font-size:11px'>"
        f"{html.escape(redact(text), quote=False)}</pre>"
    )


def _error_html(exc: BaseException) -> str:
    return (
        f"<div style='color:#b00020'><b>{html.escape(type(exc).__name__)}</b>: "
        f"<pre style='white-space:pre-wrap'>{html.escape(redact(str(exc)))}</pre></div>"
    )


def _ok_html(text: str) -> str:
    return f"<span style='color:#1a7f37'>{html.escape(redact(text))}</span>"


def _strip_tags(text: str) -> str:
    import re

    text = re.sub(r"(?i)<br\s*/?>|</(p|div|tr|h\d|li|pre)>", "\n", text)
    text = re.sub(r"(?i)</t[dh]>", "  ", text)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def snapshot_html(widget: Any) -> str:
    """A static HTML picture of a widget tree: what a saved notebook shows without widget state.

    HTML widgets keep their markup, controls show ``description: value``, buttons their label,
    progress bars a ``<progress>`` element, tabs and accordions their titles. Every text is
    redacted.
    """
    w = _widgets()
    parts: list[str] = []

    def label(x: Any) -> str:
        d = getattr(x, "description", "") or ""
        return f"<b>{html.escape(redact(str(d)))}</b> " if d else ""

    def visit(x: Any) -> None:
        if isinstance(x, w.HTML | w.HTMLMath):
            parts.append(f"<div>{redact(str(x.value))}</div>")
        elif isinstance(x, w.Label):
            parts.append(f"<div>{html.escape(redact(str(x.value)))}</div>")
        elif isinstance(x, w.Button):
            parts.append(
                "<span style='border:1px solid #999;border-radius:3px;padding:0 6px;"
                f"margin-right:4px'>{html.escape(x.description)}</span>"
            )
        elif isinstance(x, w.IntProgress | w.FloatProgress):
            parts.append(
                f"<div>{label(x)}<progress value='{x.value}' max='{x.max}'></progress> "
                f"{x.value}/{x.max}</div>"
            )
        elif isinstance(x, w.Output):
            for out in x.outputs:
                text = out.get("text") or out.get("data", {}).get("text/plain", "")
                parts.append(_pre(str(text)))
        elif isinstance(x, w.Tab | w.Accordion):
            for i, child in enumerate(x.children):
                title = x.get_title(i) if hasattr(x, "get_title") else ""
                parts.append(f"<h4>{html.escape(str(title or ''))}</h4>")
                visit(child)
        elif isinstance(x, w.Box):
            parts.append("<div style='margin:2px 0'>")
            for child in x.children:
                visit(child)
            parts.append("</div>")
        elif hasattr(x, "value"):
            value = x.value
            if isinstance(value, tuple | list):
                value = ", ".join(str(v) for v in value)
            parts.append(f"<div>{label(x)}<code>{html.escape(redact(str(value)))}</code></div>")

    visit(widget)
    return "<div class='scaler-workbench-snapshot'>" + "".join(parts) + "</div>"


class _Panel:
    """Base: holds ``widget`` and shows it when returned from a notebook cell."""

    widget: Any

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        snapshot = snapshot_html(self.widget)
        bundle["text/html"] = snapshot
        plain = "\n".join(line.rstrip() for line in _strip_tags(snapshot).splitlines())
        bundle["text/plain"] = "\n".join(line for line in plain.splitlines() if line.strip())
        return bundle

    def _repr_html_(self) -> str:
        return snapshot_html(self.widget)

    def text(self) -> str:
        """Everything the panel currently renders, as text (see :func:`widget_text`)."""
        return widget_text(self.widget)

    def _guard(self, target: Any, action: Callable[[], str]) -> bool:
        """Run ``action``; show its HTML in ``target`` or, on a WorkbenchError, the error."""
        try:
            target.value = action()
        except WorkbenchError as exc:
            log.info("%s: %s", type(self).__name__, exc)
            target.value = _error_html(exc)
            return False
        return True


# -- credentials ---------------------------------------------------------------------------------
def profile_env_vars(profile: Profile) -> list[dict[str, str]]:
    """Every environment variable (``*_env`` key) and file (``*_file`` key) a profile names.

    Returns
    -------
    list of dict
        ``{"key": "auth.key_env", "kind": "env" | "file", "name": "SANDBOX_API_KEY"}`` in
        profile order. Only names, never values.
    """
    found: list[dict[str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                key = f"{path}.{k}" if path else str(k)
                if isinstance(v, str) and v and str(k).endswith("_env"):
                    found.append({"key": key, "kind": "env", "name": v})
                elif isinstance(v, str) and v and str(k).endswith("_file"):
                    found.append({"key": key, "kind": "file", "name": v})
                else:
                    walk(v, key)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(profile.data, "")
    return found


class CredentialsPanel(_Panel):
    """Which credentials and settings the profile needs, and whether each is set. Never values.

    Parameters
    ----------
    profile : Profile
        The provider profile.
    environ : mapping, optional
        Where to look the variables up (default ``os.environ``, read on every refresh).

    Attributes
    ----------
    widget : ipywidgets.VBox
        Summary line, a table (profile key, variable, status) and a Refresh button.
    """

    def __init__(self, profile: Profile, *, environ: Mapping[str, str] | None = None) -> None:
        w = _widgets()
        self.profile = profile
        self._environ = environ
        self.summary = w.HTML()
        self.table = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.widget = w.VBox([self.summary, self.table, self.refresh_button])
        self.refresh()

    def _environ_now(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def status(self) -> pd.DataFrame:
        """One row per named variable/file: ``key``, ``kind``, ``name``, ``required``, ``is_set``.

        ``required`` is False for overrides such as ``base_url_env`` (the profile has a default).
        """
        environ = self._environ_now()
        rows = []
        for item in profile_env_vars(self.profile):
            if item["kind"] == "env":
                is_set = bool(environ.get(item["name"], ""))
            else:
                is_set = self.profile.resolve_path(item["name"]).is_file()
            required = not item["key"].endswith("base_url_env")
            rows.append({**item, "required": required, "is_set": is_set})
        return pd.DataFrame(rows, columns=["key", "kind", "name", "required", "is_set"])

    def _base_url(self) -> str:
        env = self.profile.env()
        override = self._environ_now().get(env.base_url_env, "") if env.base_url_env else ""
        return redact_url((override or env.base_url).rstrip("/"))

    def refresh(self) -> None:
        """Re-read the environment and redraw (the Refresh button calls this)."""
        status = self.status()
        env = self.profile.env()
        missing = status[~status["is_set"] & status["required"]]
        head = (
            f"<b>{html.escape(self.profile.name)}</b> · environment "
            f"<code>{html.escape(env.name)}</code> · base URL "
            f"<code>{html.escape(self._base_url())}</code>"
        )
        if env.builtin_sandbox:
            head += " · built-in sandbox"
        if missing.empty:
            head += "<br>" + _ok_html("every credential the profile names is set")
        else:
            names = ", ".join(missing["name"])
            head += (
                f"<br><span style='color:#b00020'>not set: {html.escape(names)}</span>"
                " (export them in the shell before starting JupyterLab;"
                " never put them in the profile or the notebook)"
            )
        self.summary.value = head
        labels = []
        for kind, required, is_set in zip(
            status["kind"], status["required"], status["is_set"], strict=True
        ):
            if kind == "file":
                labels.append("✔ exists" if is_set else "✘ missing")
            elif is_set:
                labels.append("✔ set")
            else:
                labels.append("✘ not set" if required else "– not set (optional)")
        shown = status.drop(columns=["is_set"]).assign(status=labels)
        self.table.value = _html_table(shown)


# -- mapping helper ------------------------------------------------------------------------------
def _values_at(records: Iterable[Mapping[str, Any]], path: str) -> list[Any]:
    """Every scalar value at dotted ``path`` (``[]`` maps over lists) across records."""
    parts: list[str] = []
    for part in path.split("."):
        while part.endswith("[]"):
            if part[:-2]:
                parts.append(part[:-2])
            parts.append("[]")
            part = ""
        if part:
            parts.append(part)

    def resolve(node: Any, rest: list[str]) -> list[Any]:
        if not rest:
            return [node]
        head, tail = rest[0], rest[1:]
        if head == "[]":
            if not isinstance(node, list):
                return []
            return [v for item in node for v in resolve(item, tail)]
        if isinstance(node, Mapping) and head in node:
            return resolve(node[head], tail)
        return []

    return [v for r in records for v in resolve(r, parts)]


class MappingHelper(_Panel):
    """Pick, for each Scaler column, the provider field path that fills it; map meter types.

    Parameters
    ----------
    samples : mapping of str to list of dict
        Raw records per resource (e.g. ``{name: result.records}`` from ``fetch_resources``).
    table : str
        ``assets``, ``meters``, ``usage`` or ``readings``.
    source : str, optional
        For usage/readings: the source name in ``[mapping.<table>.<source>]`` (default: the
        resource name).
    resource : str, optional
        The resource whose samples to use (default: the profile's, else the first).
    profile : Profile, optional
        Pre-select the choices already in the profile's ``[mapping]`` section.

    Attributes
    ----------
    widget : ipywidgets.VBox
        Resource picker, the field paths seen (with examples), one drop-down per Scaler column,
        (for meters) one meter type/subtype pair per provider value, and a TOML preview.
    """

    def __init__(
        self,
        samples: Mapping[str, list[dict[str, Any]]],
        *,
        table: str = "meters",
        source: str | None = None,
        resource: str | None = None,
        profile: Profile | None = None,
    ) -> None:
        w = _widgets()
        if table not in TABLES:
            raise SchemaError(
                f"unknown table {table!r}", table=table, hint=f"Use one of {', '.join(TABLES)}."
            )
        if not samples:
            raise MappingError(
                "no sample records to map from",
                hint="Fetch a few records first, e.g. fetch_resources(profile) or record/replay.",
            )
        self.samples = {str(k): list(v) for k, v in samples.items()}
        self.table = TABLES[table]
        self.profile = profile
        existing = self._existing_spec(profile, table, source)
        self.source = source
        if resource is None:
            resource = (
                existing.get("resource") if existing.get("resource") in self.samples else None
            )
        resource = resource or next(iter(self.samples))
        if resource not in self.samples:
            raise MappingError(
                f"no samples for resource {resource!r}",
                hint=f"Use one of {sorted(self.samples)}.",
            )
        self.resource = w.Dropdown(
            options=list(self.samples), value=resource, description="resource"
        )
        self.paths_view = w.HTML()
        self.field_pickers: dict[str, Any] = {}
        from scaler_workbench.mapping import MAPPING_REQUIRED

        self.required: tuple[str, ...] = tuple(MAPPING_REQUIRED.get(table, self.table.required))
        self._guessing = not existing  # a profile's mapping is taken as is, never guessed over
        for col in self.table.columns:
            if col.name in _DERIVED or (table == "meters" and col.name == "unit"):
                continue  # filled by later stages (units, usage engine), not by a field path
            label = f"{col.name}{' *' if col.name in self.required else ''}"
            picker = w.Dropdown(
                options=[_NONE],
                value=_NONE,
                description=label,
                tooltip=col.description,
                style={"description_width": "12em"},
                layout={"width": "32em"},
            )
            picker.observe(self._on_field_change, names="value")
            self.field_pickers[col.name] = picker
        self.type_rows = w.VBox()
        self.type_pickers: dict[str, tuple[Any, Any]] = {}
        self.preview = w.HTML()
        self.problems = w.HTML()
        self._initial_fields = dict(existing.get("fields", {}))
        self._initial_maps = dict(existing.get("value_maps", {}))
        self.resource.observe(self._on_resource_change, names="value")
        parts = [
            w.HTML(f"<b>Mapping for <code>{self.table.name}</code></b> (* = required)"),
            self.resource,
            w.HTML("<b>Field paths seen in the samples</b>"),
            self.paths_view,
            w.HTML("<b>Scaler column ← provider field</b>"),
            w.VBox(list(self.field_pickers.values())),
        ]
        if self.table.name == "meters":
            parts += [w.HTML("<b>Provider value → Scaler meter type / subtype</b>"), self.type_rows]
        parts += [self.problems, w.HTML("<b>Profile TOML</b>"), self.preview]
        self.widget = w.VBox(parts)
        self._on_resource_change(None)

    @staticmethod
    def _existing_spec(profile: Profile | None, table: str, source: str | None) -> dict[str, Any]:
        if profile is None:
            return {}
        section = profile.section("mapping").get(table, {})
        if not isinstance(section, dict):
            return {}
        if "fields" in section or "resource" in section:
            return section
        if source and isinstance(section.get(source), dict):
            return dict(section[source])
        for spec in section.values():  # usage/readings: the first source
            if isinstance(spec, dict):
                return spec
        return {}

    # -- derived data
    def field_paths(self) -> pd.DataFrame:
        """Field paths in the current resource's samples: ``path``, ``count``, ``examples``."""
        from scaler_workbench.mapping import field_paths

        rows = field_paths(self.samples[self.resource.value], examples=3)
        frame = pd.DataFrame(rows, columns=["path", "count", "examples"])
        frame["examples"] = frame["examples"].map(lambda xs: ", ".join(repr(x) for x in xs))
        return frame

    def mapping(self) -> dict[str, Any]:
        """The chosen mapping, shaped like the profile's ``[mapping.<table>]`` entry."""
        fields = {name: picker.value for name, picker in self.field_pickers.items() if picker.value}
        spec: dict[str, Any] = {"resource": self.resource.value, "fields": fields}
        if self.table.name == "meters" and self.type_pickers:
            types = {v: t.value for v, (t, _s) in self.type_pickers.items() if t.value}
            subtypes = {v: s.value for v, (_t, s) in self.type_pickers.items() if s.value}
            spec["value_maps"] = {}
            if types:
                spec["value_maps"]["meter_type"] = types
            if subtypes:
                spec["value_maps"]["meter_subtype"] = subtypes
            if not spec["value_maps"]:
                del spec["value_maps"]
        return spec

    def section(self) -> dict[str, Any]:
        """``{table: spec}`` (or ``{table: {source: spec}}`` for usage/readings)."""
        spec = self.mapping()
        if self.table.name in ("usage", "readings"):
            return {self.table.name: {self.source or self.resource.value: spec}}
        return {self.table.name: spec}

    def missing_required(self) -> list[str]:
        """Columns a mapping must fill (``mapping.MAPPING_REQUIRED``) that have no field yet."""
        return [c for c in self.required if not self.field_pickers[c].value]

    # -- callbacks
    def _on_resource_change(self, _change: Any) -> None:
        paths = self.field_paths()
        self.paths_view.value = _html_table(paths, max_rows=200)
        options = [_NONE, *paths["path"].tolist()]
        for name, picker in self.field_pickers.items():
            previous = picker.value
            picker.options = options
            guess = _NONE
            if self._guessing:
                own_key = name in self.table.key[:1] and self.table.name in ("assets", "meters")
                guess = self._guess(name, options, ("id",) if own_key else ())
            wanted = self._initial_fields.get(name) or previous or guess
            picker.value = wanted if wanted in options else _NONE
        self._rebuild_type_rows()
        self._render()

    @staticmethod
    def _guess(column: str, options: list[str], extra: tuple[str, ...] = ()) -> str:
        names = [column, *_ALIASES.get(column, ()), *extra]
        for name in names:
            for path in options:
                if path == name:
                    return path
            for path in options:
                if path and path.rsplit(".", 1)[-1].replace("[]", "") == name:
                    return path
        return _NONE

    def _on_field_change(self, change: Any) -> None:
        owner = change["owner"] if isinstance(change, Mapping) else None
        if owner is self.field_pickers.get("meter_type"):
            self._rebuild_type_rows()
        self._render()

    def _rebuild_type_rows(self) -> None:
        if self.table.name != "meters":
            return
        w = _widgets()
        path = self.field_pickers["meter_type"].value
        values = (
            list(dict.fromkeys(str(v) for v in _values_at(self.samples[self.resource.value], path)))
            if path
            else []
        )
        type_map = self._initial_maps.get("meter_type", {})
        sub_map = self._initial_maps.get("meter_subtype", {})
        old = {v: (t.value, s.value) for v, (t, s) in self.type_pickers.items()}
        self.type_pickers = {}
        rows = []
        for value in values:
            guess_type = old.get(value, (None, None))[0] or type_map.get(value, "")
            if not guess_type and value.title() in METER_TYPES:
                guess_type = value.title()
            t = w.Dropdown(
                options=[_NONE, *METER_TYPES],
                value=guess_type if guess_type in METER_TYPES else _NONE,
                description=value,
                style={"description_width": "12em"},
                layout={"width": "24em"},
            )
            s = w.Dropdown(options=[_NONE], value=_NONE, layout={"width": "22em"})
            self._set_subtypes(t.value, s, old.get(value, (None, None))[1] or sub_map.get(value))
            t.observe(self._on_type_change, names="value")
            s.observe(lambda _c: self._render(), names="value")
            self.type_pickers[value] = (t, s)
            rows.append(w.HBox([t, s]))
        if not rows:
            rows = [w.HTML("<i>choose the field holding the meter type / commodity above</i>")]
        self.type_rows.children = rows

    @staticmethod
    def _set_subtypes(meter_type: str, picker: Any, wanted: str | None) -> None:
        options = [_NONE, *METER_SUBTYPES.get(meter_type, ())]
        picker.options = options
        picker.value = wanted if wanted in options else _NONE

    def _on_type_change(self, change: Any) -> None:
        for t, s in self.type_pickers.values():
            if t is change["owner"]:
                self._set_subtypes(t.value, s, s.value)
        self._render()

    def _render(self) -> None:
        import tomli_w

        text = tomli_w.dumps({"mapping": self.section()})
        self.preview.value = _pre(text)
        problems = []
        missing = self.missing_required()
        if missing:
            problems.append(f"required columns without a field: {', '.join(missing)}")
        unmapped = [v for v, (t, _s) in self.type_pickers.items() if not t.value]
        if unmapped:
            problems.append(f"values without a meter type: {', '.join(unmapped)}")
        self.problems.value = (
            "<span style='color:#b00020'>" + html.escape("; ".join(problems)) + "</span>"
            if problems
            else _ok_html("every required column is mapped")
        )


# -- quarantine browser --------------------------------------------------------------------------
def _quarantine_frame(source: Any) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        frame = source
    elif isinstance(source, Tables):
        frame = source.quarantine
    elif isinstance(getattr(source, "quarantined", None), pd.DataFrame):
        frame = source.quarantined
    elif isinstance(getattr(source, "quarantine", None), pd.DataFrame):
        frame = source.quarantine
    else:
        raise SchemaError(
            f"cannot find quarantine rows in a {type(source).__name__}",
            table="quarantine",
            hint="Pass a ValidationResult, a Tables, or a DataFrame with the QUARANTINE columns.",
        )
    missing = [c for c in ("table", "rule", "reason") if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"quarantine frame lacks column(s) {missing}",
            table="quarantine",
            column=missing[0],
            hint="Pass rows with the columns of schema.QUARANTINE.",
        )
    return frame


class QuarantineBrowser(_Panel):
    """Browse quarantined records: filter by table, rule and severity; read each reason.

    Parameters
    ----------
    quarantine : DataFrame, Tables or ValidationResult
        Rows with the columns of :data:`scaler_workbench.schema.QUARANTINE`.
    max_rows : int
        Rows shown at once (the counts always cover every row).
    """

    def __init__(self, quarantine: Any, *, max_rows: int = 50) -> None:
        w = _widgets()
        frame = _quarantine_frame(quarantine)
        cols = [c for c in QUARANTINE.names if c in frame.columns]
        self.frame = frame[cols].reset_index(drop=True)
        self.max_rows = max_rows
        self.table_picker = w.Dropdown(options=self._options("table"), description="table")
        self.rule_picker = w.Dropdown(options=self._options("rule"), description="rule")
        self.severity_picker = w.Dropdown(
            options=self._options("severity") if "severity" in cols else [_ALL],
            description="severity",
        )
        self.search = w.Text(description="reason has", placeholder="text in the reason")
        self.counts = w.HTML()
        self.rows = w.HTML()
        self.table_picker.observe(self._on_table_change, names="value")
        for picker in (self.rule_picker, self.severity_picker, self.search):
            picker.observe(lambda _c: self.update(), names="value")
        self.widget = w.VBox(
            [
                w.HBox([self.table_picker, self.rule_picker, self.severity_picker]),
                self.search,
                self.counts,
                self.rows,
            ]
        )
        self.update()

    def _options(self, column: str, frame: pd.DataFrame | None = None) -> list[str]:
        frame = self.frame if frame is None else frame
        values = frame[column].dropna().astype(str).value_counts().index.tolist()
        return [_ALL, *values]

    def filtered(self) -> pd.DataFrame:
        """The rows matching the current filters."""
        f = self.frame
        mask = pd.Series(True, index=f.index)
        for column, picker in (
            ("table", self.table_picker),
            ("rule", self.rule_picker),
            ("severity", self.severity_picker),
        ):
            if picker.value != _ALL and column in f.columns:
                mask &= f[column].astype("string") == picker.value
        if self.search.value:
            mask &= (
                f["reason"]
                .astype("string")
                .str.contains(self.search.value, case=False, regex=False, na=False)
            )
        return f[mask.fillna(False).astype(bool)]

    def _on_table_change(self, _change: Any) -> None:
        subset = self.frame
        if self.table_picker.value != _ALL:
            subset = subset[subset["table"].astype("string") == self.table_picker.value]
        current = self.rule_picker.value
        options = self._options("rule", subset)
        self.rule_picker.options = options
        self.rule_picker.value = current if current in options else _ALL
        self.update()

    def update(self) -> None:
        """Redraw counts and rows for the current filters (every control calls this)."""
        from scaler_workbench.plots import quarantine_counts

        rows = self.filtered()
        head = f"<b>{len(rows)}</b> of {len(self.frame)} quarantined rows"
        if rows.empty:
            self.counts.value = head
        else:
            counts = quarantine_counts(rows).reset_index(names="rule")
            self.counts.value = head + _html_table(counts, max_rows=30)
        shown = rows.copy()
        if "record" in shown.columns:
            shown["record"] = shown["record"].astype("string").str.slice(0, 160)
        self.rows.value = _html_table(shown, max_rows=self.max_rows)


# -- API explorer --------------------------------------------------------------------------------
class ApiExplorer(_Panel):
    """Explore a provider's API: pick a resource, fetch page 1, probe pagination, plan requests.

    Child resources (``parent = ...`` in the profile) need path parameters such as
    ``{site_id}``: type them in, or leave them empty to use the first matching parent record
    (its page 1 is fetched first). Resources with a ``date_range`` fetch their first window from
    ``since`` (default: the profile's ``date_range.since``).

    Parameters
    ----------
    profile : Profile
        The provider profile (credentials come from the environment variables it names).
    client : connectors.Client, optional
        A client to reuse, e.g. ``Client(profile, record_to=folder)`` to record what you explore
        or ``Client(profile, replay_from=folder)`` to work offline. Default: built on first use.
    max_rows : int
        Records shown in the table.

    Attributes
    ----------
    records : list of dict
        Page 1 of the last fetch, as the provider sent it.
    last_page, last_probe, last_plan
        The :class:`~scaler_workbench.connectors.Page`, ``ProbeResult`` and ``RequestPlan``
        behind the views.
    """

    def __init__(self, profile: Profile, *, client: Any = None, max_rows: int = 20) -> None:
        w = _widgets()
        self.profile = profile
        self._client = client
        self._connector: Any = None
        self.max_rows = max_rows
        self.records: list[dict[str, Any]] = []
        self.last_page: Any = None
        self.last_probe: Any = None
        self.last_plan: Any = None
        resources = list(profile.resources)
        if not resources:
            raise MappingError(
                f"profile {profile.name!r} has no [resources]",
                hint="Add [resources.<name>] with a path to the profile.",
            )
        self.resource = w.Dropdown(options=resources, description="resource")
        self.since = w.Text(description="since", placeholder="YYYY-MM-DD")
        self.until = w.Text(description="until", placeholder="YYYY-MM-DD (optional)")
        self.params = w.HBox()
        self.param_inputs: dict[str, Any] = {}
        self.fetch_button = w.Button(description="Fetch page 1", button_style="primary")
        self.probe_button = w.Button(description="Probe pagination")
        self.plan_button = w.Button(description="Plan requests (dry run)")
        self.status = w.HTML()
        self.table = w.HTML()
        self.raw = w.HTML()
        self.probe_view = w.HTML()
        self.plan_view = w.HTML()
        self.fetch_button.on_click(lambda _b: self.fetch())
        self.probe_button.on_click(lambda _b: self.probe())
        self.plan_button.on_click(lambda _b: self.plan())
        self.resource.observe(self._on_resource_change, names="value")
        self.tabs = w.Tab(children=[self.table, self.raw, self.probe_view, self.plan_view])
        for i, title in enumerate(("records", "raw JSON", "pagination probe", "request plan")):
            self.tabs.set_title(i, title)
        self.dates = w.HBox([self.since, self.until])
        self.widget = w.VBox(
            [
                w.HBox([self.resource, self.fetch_button, self.probe_button, self.plan_button]),
                self.params,
                self.dates,
                self.status,
                self.tabs,
            ]
        )
        self._on_resource_change(None)

    # -- plumbing
    @property
    def client(self) -> Any:
        """The connectors ``Client`` (built from the profile on first use)."""
        if self._client is None:
            from scaler_workbench.connectors import Client

            self._client = Client(self.profile)
        return self._client

    @property
    def connector(self) -> Any:
        if self._connector is None:
            from scaler_workbench.connectors import connector_for

            self._connector = connector_for(self.profile, client=self.client)
        return self._connector

    def path_params(self) -> dict[str, str]:
        """The ``{placeholders}`` of the resource path that have been typed in."""
        return {k: v.value.strip() for k, v in self.param_inputs.items() if v.value.strip()}

    def _spec(self) -> Any:
        return self.connector.resource(self.resource.value)

    def _on_resource_change(self, _change: Any) -> None:
        import string

        w = _widgets()
        table = self.profile.resources[self.resource.value]
        names = [f for _t, f, _s, _c in string.Formatter().parse(str(table["path"])) if f]
        old = {k: v.value for k, v in self.param_inputs.items()}
        self.param_inputs = {
            n: w.Text(value=old.get(n, ""), description=n, placeholder="first parent's")
            for n in names
        }
        self.params.children = list(self.param_inputs.values())
        date_range = table.get("date_range")
        self.dates.layout.display = None if date_range else "none"
        if date_range and not self.since.value:
            self.since.value = str(date_range.get("since", "") or "")
        note = html.escape(str(table["path"]))
        if table.get("parent"):
            note += html.escape(f" (child of {table['parent']})")
        self.status.value = note

    def _resolve_params(self, spec: Any, depth: int = 0) -> dict[str, Any]:
        """Path parameters typed in, else those of the first matching parent record."""
        typed = self.path_params() if depth == 0 else {}
        if not spec.parent or (typed and len(typed) == len(spec.parent_params)):
            return typed
        from scaler_workbench.exceptions import ConnectorError

        parent = self.connector.resource(spec.parent)
        parent_params = self._resolve_params(parent, depth + 1)
        for i, page in enumerate(
            self.connector.iter_pages(
                parent, path_params=parent_params or None, window=self._window(parent)
            )
        ):
            values = self.connector.parent_values(spec, list(page))
            if values:
                return {**values[0], **typed}
            if i >= 4:
                break
        raise ConnectorError(
            f"no {spec.parent} record on the first pages matches {spec.name}'s parent filter",
            provider=self.profile.name,
            hint=f"Type the path parameters ({', '.join(spec.parent_params)}) in by hand.",
        )

    def _window(self, spec: Any) -> Any:
        if spec.date_range is None:
            return None
        windows = spec.date_range.windows(
            self.since.value.strip() or None,
            self.until.value.strip() or None,
            now=self.client.clock.now(),
        )
        return windows[0] if windows else None

    # -- actions
    def fetch(self) -> list[dict[str, Any]]:
        """Fetch page 1 of the selected resource; show the records and the raw JSON (redacted)."""

        def action() -> str:
            spec = self._spec()
            params = self._resolve_params(spec)
            page = next(
                iter(
                    self.connector.iter_pages(
                        spec, path_params=params or None, window=self._window(spec)
                    )
                )
            )
            self.last_page = page
            # like fetch_resources: child records carry the parent's path parameters
            self.records = [{**r, "_parent": dict(params)} if params else r for r in page]
            for name, value in params.items():
                if name in self.param_inputs and not self.param_inputs[name].value:
                    self.param_inputs[name].value = str(value)
            flat = pd.json_normalize(self.records, max_level=2) if self.records else pd.DataFrame()
            self.table.value = _html_table(flat, max_rows=self.max_rows)
            body = page.response.body
            if hasattr(body, "tag"):  # an XML element
                from xml.etree.ElementTree import tostring

                text = tostring(body, encoding="unicode")
            else:
                text = json.dumps(body, indent=2, default=str)
            self.raw.value = _pre(text[:200_000])
            self.tabs.selected_index = 0
            more = "more pages follow" if page.paginator.has_next_page else "the only page"
            return _ok_html(
                f"{len(self.records)} records on page 1 ({more}) from "
                f"{redact_url(page.response.url)}"
            )

        self._guard(self.status, action)
        return self.records

    def probe(self) -> Any:
        """Run the active pagination probe on the selected resource and show its report."""
        from scaler_workbench.connectors import probe_pagination

        def action() -> str:
            spec = self._spec()
            params = self._resolve_params(spec)
            path = spec.path.format(**params)
            query = dict(spec.params)
            window = self._window(spec)
            if window is not None:
                query.update(spec.date_range.params(window))
            self.last_probe = probe_pagination(
                self.client,
                path,
                params=query,
                record_path=spec.record_path or None,
                primary_key=spec.primary_key[0] if spec.primary_key else "id",
            )
            self.tabs.selected_index = 2
            return _pre(str(self.last_probe))

        self._guard(self.probe_view, action)
        return self.last_probe

    def plan(self) -> Any:
        """Show the dry-run request plan for the resource (and its parents); sends nothing."""
        from scaler_workbench.connectors import plan_requests

        def action() -> str:
            self.last_plan = plan_requests(
                self.profile,
                self.since.value.strip() or None,
                self.until.value.strip() or None,
                resources=[self.resource.value],
            )
            self.tabs.selected_index = 3
            return _pre(str(self.last_plan))

        self._guard(self.plan_view, action)
        return self.last_plan


# -- sync runner ---------------------------------------------------------------------------------
#: The stages :func:`scaler_workbench.sync.run_sync` reports, in order.
SYNC_STAGES = ("fetch", "transform", "validate", "commit", "export")


class _PanelLogHandler:
    """A logging handler (built lazily) feeding a panel: counts requests, keeps the last lines."""

    @staticmethod
    def make(runner: SyncRunner) -> Any:
        import logging

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    runner._on_log(record)
                except Exception:  # pragma: no cover - a display problem never breaks a sync
                    self.handleError(record)

        return Handler(level=logging.DEBUG)


class SyncRunner(_Panel):
    """Run a sync from a notebook: stage and request progress, a live log, the run summary.

    Parameters
    ----------
    profile : Profile
        The provider profile.
    out : path-like
        The sync's output folder (``run_sync(out=...)``).
    max_log_lines : int
        Log lines kept on screen (the newest).
    **sync_options
        Passed to :func:`scaler_workbench.sync.run_sync` (``since``, ``full``, ``clock``, ...).

    Attributes
    ----------
    widget : ipywidgets.VBox
        Run button, stage progress (5 stages), request counter, live log, summary with links to
        the exported files.
    result : SyncResult or None
        The last run's result.
    requests : int
        HTTP requests sent by the last run (retries included).
    log_lines : list of str
        The last run's log lines at INFO and above (redacted).
    """

    def __init__(
        self,
        profile: Profile,
        *,
        out: str | os.PathLike[str],
        max_log_lines: int = 200,
        **sync_options: Any,
    ) -> None:
        w = _widgets()
        self.profile = profile
        self.out = out
        self.sync_options = dict(sync_options)
        self.max_log_lines = max_log_lines
        self.result: Any = None
        self.requests = 0
        self.stages_done: list[str] = []
        self.log_lines: list[str] = []
        self.run_button = w.Button(description="Run sync", icon="play", button_style="primary")
        self.run_button.on_click(lambda _b: self.run())
        self.stage_bar = w.IntProgress(
            value=0, min=0, max=len(SYNC_STAGES), description="stage", bar_style="info"
        )
        self.stage_label = w.HTML("not started")
        self.request_label = w.HTML("0 requests")
        self.log_view = w.HTML(_pre(""))
        self.summary_view = w.HTML()
        self.widget = w.VBox(
            [
                w.HBox([self.run_button, self.stage_bar, self.stage_label]),
                self.request_label,
                self.log_view,
                self.summary_view,
            ]
        )

    # -- callbacks (public so tests drive them) ------------------------------------------------
    def on_stage(self, stage: str) -> None:
        """Progress callback of ``run_sync``: one more stage started."""
        self.stages_done.append(stage)
        position = SYNC_STAGES.index(stage) + 1 if stage in SYNC_STAGES else len(self.stages_done)
        self.stage_bar.value = min(position, self.stage_bar.max)
        self.stage_label.value = f"<b>{html.escape(stage)}</b> ({position} of {len(SYNC_STAGES)})"

    def _on_log(self, record: Any) -> None:
        import logging

        if record.name.endswith("connectors.client") and " -> " in str(record.msg):
            self.requests += 1
            self.request_label.value = f"{self.requests} requests"
            return
        if record.levelno < logging.INFO:
            return
        line = redact(f"{record.levelname:<7} {record.name.split('.')[-1]}: {record.getMessage()}")
        self.log_lines.append(line)
        del self.log_lines[: -self.max_log_lines]
        self.log_view.value = _pre("\n".join(self.log_lines))

    def run(self) -> Any:
        """Run the sync (the button calls this); returns the :class:`SyncResult` or None."""
        import logging

        from scaler_workbench.sync import run_sync

        self.result, self.requests, self.stages_done, self.log_lines = None, 0, [], []
        self.stage_bar.value, self.stage_bar.bar_style = 0, "info"
        self.summary_view.value = ""
        root = logging.getLogger("scaler_workbench")
        handler = _PanelLogHandler.make(self)
        level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)

        def action() -> str:
            self.result = run_sync(
                self.profile, out=self.out, progress=self.on_stage, **self.sync_options
            )
            return self.summary_html()

        try:
            ok = self._guard(self.summary_view, action)
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
        self.stage_bar.bar_style = (
            "success" if ok and self.result.status == "success" else ("warning" if ok else "danger")
        )
        self.request_label.value = f"{self.requests} requests"
        return self.result

    def summary_html(self) -> str:
        """The last run's summary: status, counts, partial reasons, links to its files."""
        if self.result is None:
            return ""
        r = self.result
        summary = r.summary
        colour = {"success": "#1a7f37", "partial": "#9a6700"}.get(r.status, "#b00020")
        rows = [
            f"<b>status</b> <span style='color:{colour}'>{html.escape(r.status)}</span> · "
            f"mode {html.escape(str(r.mode))} · run {r.run_id} · {self.requests} requests",
        ]
        for key in ("fetched", "accepted", "quarantine", "stored"):
            value = summary.get(key)
            if isinstance(value, Mapping) and value:
                counts = ", ".join(
                    f"{k} {v}" for k, v in value.items() if isinstance(v, int | float)
                )
                rows.append(f"<b>{key}</b> {html.escape(counts)}")
        for reason in summary.get("partial_reasons") or []:
            rows.append(f"<span style='color:#9a6700'>{html.escape(redact(str(reason)))}</span>")
        links = []
        for name, path in sorted(r.files.items()):
            href = _relative_href(path)
            links.append(
                f"<li><a href='{html.escape(href)}' target='_blank'>{html.escape(name)}</a> "
                f"<code>{html.escape(str(path))}</code></li>"
            )
        if links:
            rows.append("<b>files</b><ul style='margin:0'>" + "".join(links) + "</ul>")
        return "<br>".join(rows)


def _relative_href(path: Any) -> str:
    """A link to ``path`` relative to the notebook's folder (the kernel's working directory)."""
    from pathlib import Path

    p = Path(path)
    try:
        return Path(os.path.relpath(p.resolve(), Path.cwd())).as_posix()
    except ValueError:  # another drive on Windows
        return p.resolve().as_uri()


# -- profile form --------------------------------------------------------------------------------
def auth_env_keys(auth_type: str) -> list[str]:
    """The ``*_env`` keys an auth type reads its secrets from (``api_key`` -> ``key_env``).

    Found from the auth class's constructor: every parameter typed ``Secret``.
    """
    import inspect

    from scaler_workbench.connectors.auth import AUTH_ALIASES, AUTHS

    cls = AUTHS.get(AUTH_ALIASES.get(auth_type, auth_type))
    if cls is None:
        return []
    keys: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if "Secret" in str(param.annotation) and f"{param.name}_env" not in keys:
                keys.append(f"{param.name}_env")
    return keys


class ProfileForm(_Panel):
    """Edit a profile's basics in a form and save the TOML (never a secret, only names).

    Parameters
    ----------
    profile : Profile
        The profile to start from (its other sections are kept as they are).
    environment : str, optional
        The environment whose base URL is edited (default: the profile's).

    Attributes
    ----------
    widget : ipywidgets.VBox
        Base URL, auth type, one text box per ``*_env`` variable name the auth type needs,
        resources (``name = path`` per line), Save button and a status line.
    """

    def __init__(self, profile: Profile, *, environment: str | None = None) -> None:
        from scaler_workbench.connectors.auth import AUTHS

        w = _widgets()
        self.base = profile
        self.environment = environment or profile.environment
        env = profile.data.get("environments", {}).get(self.environment, {})
        auth = dict(profile.data.get("auth", {}) or {})
        self.base_url = w.Text(value=str(env.get("base_url", "")), description="base URL")
        self.auth_type = w.Dropdown(
            options=sorted(AUTHS), value=str(auth.get("type", "none")), description="auth"
        )
        self.env_boxes = w.VBox()
        self._env_values = {k: str(v) for k, v in auth.items() if k.endswith("_env")}
        self.resources = w.Textarea(
            value="\n".join(
                f"{name} = {spec.get('path', '')}" for name, spec in profile.resources.items()
            ),
            description="resources",
            layout={"width": "60%", "height": "8em"},
        )
        self.save_button = w.Button(description="Save profile", icon="save")
        self.save_button.on_click(lambda _b: self.save())
        self.status_line = w.HTML()
        self.auth_type.observe(lambda _c: self._rebuild_env(), names="value")
        self.widget = w.VBox(
            [
                w.HTML(
                    f"<b>{html.escape(profile.name)}</b> · environment "
                    f"<code>{html.escape(self.environment)}</code> · secrets are given as the "
                    "<i>names</i> of environment variables"
                ),
                self.base_url,
                self.auth_type,
                self.env_boxes,
                self.resources,
                self.save_button,
                self.status_line,
            ]
        )
        self._rebuild_env()

    def _rebuild_env(self) -> None:
        w = _widgets()
        for box in self.env_boxes.children:
            self._env_values[box.description] = box.value
        boxes = []
        for key in auth_env_keys(self.auth_type.value):
            default = f"{self.base.name.upper().replace('-', '_')}_{key[:-4].upper()}"
            boxes.append(w.Text(value=self._env_values.get(key, default), description=key))
        self.env_boxes.children = tuple(boxes)

    def profile(self) -> Profile:
        """The profile the form describes (validated; raises ProfileError if it is not valid)."""
        import copy

        from scaler_workbench.exceptions import ProfileError
        from scaler_workbench.profile import Profile as _Profile

        data = copy.deepcopy(self.base.data)
        env = data.setdefault("environments", {}).setdefault(self.environment, {})
        env["base_url"] = self.base_url.value.strip()
        old_auth = dict(data.get("auth", {}) or {})
        keep = {k: v for k, v in old_auth.items() if not k.endswith("_env") and k != "type"}
        if old_auth.get("type") != self.auth_type.value:
            keep = {}
        auth: dict[str, Any] = {"type": self.auth_type.value, **keep}
        for box in self.env_boxes.children:
            name = box.value.strip()
            if not name:
                raise ProfileError(
                    f"auth.{box.description} is empty",
                    key=f"auth.{box.description}",
                    hint="Give the NAME of the environment variable that holds the secret.",
                )
            auth[box.description] = name
        data["auth"] = auth
        resources = dict(data.get("resources", {}) or {})
        wanted: dict[str, Any] = {}
        for n, line in enumerate(self.resources.value.splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, path = line.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ProfileError(
                    f"resources line {n} {line.strip()!r} is not 'name = /path'",
                    key="resources",
                    hint="One resource per line, e.g. meters = /sites/{site_id}/meters",
                )
            spec = dict(resources.get(name.strip(), {}))
            spec["path"] = path.strip()
            wanted[name.strip()] = spec
        data["resources"] = wanted
        return _Profile.from_dict(data)

    def save(self, path: str | os.PathLike[str] | None = None) -> Any:
        """Validate and write the TOML (``Profile.save``); returns the path, or None on error."""
        target = path if path is not None else self.base.path
        saved: list[Any] = []

        def action() -> str:
            if target is None:
                raise MappingError(
                    "the profile has no file yet", hint="Call save(path) with where to write it."
                )
            saved.append(self.profile().save(target))
            return _ok_html(f"saved {saved[0]}")

        self._guard(self.status_line, action)
        return saved[0] if saved else None
