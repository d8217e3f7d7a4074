"""Response bodies: decode JSON or XML safely, select records and values by path.

JSON paths are dotted with ``[*]`` (every element) and ``[n]`` (one element), an optional
leading ``$.``: ``data``, ``result.items[*]``, ``$.pages[*].records``. An empty path selects the
body itself.

A body nested deeper than :data:`MAX_NESTING` levels (JSON arrays/objects, XML elements) is a
:class:`ResponseParseError` for that page, never a ``RecursionError``; a ``charset`` declared in
the Content-Type (``application/json; charset=iso-8859-1``) is honoured.

XML bodies are parsed with :mod:`defusedxml` (no DTDs, no external entities, no entity bombs) and
selected with the ElementTree XPath subset plus a namespace map: ``ns:Reading``,
``.//e:Meter[@kind='interval']``; a trailing ``/@attr`` reads an attribute and a trailing
``/text()`` the text. XML records become dicts: attributes as ``@name``, child elements by their
local name (repeated children become lists), element text as the value (or ``#text`` when the
element also has attributes or children). :func:`select_xml_with_ancestors` gives each record
fields of the elements it was found under (a resource's ``keep``), as the JSON selection does.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from scaler_workbench.exceptions import ResponseParseError

__all__ = [
    "CSV_FORMAT",
    "FORMATS",
    "MAX_NESTING",
    "XML_FORMAT",
    "RawBody",
    "decode_body",
    "element_to_dict",
    "find_value",
    "json_steps",
    "select_records",
    "select_xml_with_ancestors",
    "walk_json",
    "xml_steps",
]

XML_FORMAT = "xml"
CSV_FORMAT = "csv"
#: Body formats a resource may declare (``format = "..."``); ``auto`` follows Content-Type.
FORMATS = ("auto", "json", "xml", "csv")


@dataclass(frozen=True)
class RawBody:
    """An answer kept as bytes for its resource's own reader (a CSV export, :mod:`._csv`)."""

    content: bytes
    content_type: str = ""

    def __repr__(self) -> str:
        return f"RawBody({len(self.content)} bytes, {self.content_type!r})"


_INDEX = re.compile(r"^(?P<name>[^\[\]]*)(?P<idx>(\[(\*|-?\d+)\])*)$")

#: Deepest nesting of JSON arrays/objects or XML elements accepted in a response body [levels].
MAX_NESTING = 100
_BRACKETS_ONLY = bytes(range(256)).translate(None, b"[]{}")  # every byte but brackets: deleted
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)


def _bracket_depth_over(brackets: bytes, limit: int) -> bool:
    """Whether a bracket sequence nests deeper than ``limit`` (one innermost level per pass)."""
    for _ in range(limit):
        if not brackets:
            return False
        fewer = _INNERMOST_PAIR.sub(b"", brackets)
        if fewer == brackets:  # unbalanced (brackets inside strings): not deep by this count
            return False
        brackets = fewer
    return bool(brackets) and _INNERMOST_PAIR.search(brackets) is not None


def _json_too_deep(content: bytes, limit: int = MAX_NESTING) -> bool:
    """Whether a JSON body nests arrays/objects deeper than ``limit`` (C-speed passes)."""
    if content.count(b"[") + content.count(b"{") <= limit:
        return False
    if not _bracket_depth_over(content.translate(None, _BRACKETS_ONLY), limit):
        return False  # strings can only add brackets: the body without them is shallower
    return _bracket_depth_over(
        _JSON_STRING.sub(b"", content).translate(None, _BRACKETS_ONLY), limit
    )


def _xml_too_deep(root: Element, limit: int = MAX_NESTING) -> bool:
    stack = [(root, 1)]
    while stack:
        elem, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in elem)
    return False


def _too_deep(url: str) -> ResponseParseError:
    return ResponseParseError(
        f"response nests deeper than {MAX_NESTING} levels: refused",
        url=url,
        hint="Ask the provider why the body is so deeply nested; this page is left out and "
        "the run is partial.",
    )


def _declared_charset(content_type: str) -> str:
    m = _CHARSET.search(content_type or "")
    return m.group(1).lower() if m else ""


def _transcode(content: bytes, charset: str, url: str) -> bytes:
    """``content`` in ``charset`` as UTF-8 bytes (unchanged for UTF-8)."""
    if charset in ("", "utf-8", "utf8"):
        return content
    try:
        return content.decode(charset).encode("utf-8")
    except LookupError:
        raise ResponseParseError(
            f"response declares an unknown charset {charset!r}", url=url
        ) from None
    except UnicodeDecodeError as exc:
        raise ResponseParseError(
            f"response is not valid {charset}: {exc}; starts with {_snippet(content)!r}", url=url
        ) from exc


def decode_body(content: bytes, *, content_type: str = "", fmt: str = "auto", url: str = "") -> Any:
    """Decode a response body to JSON values or an XML root :class:`Element`.

    Parameters
    ----------
    content : bytes
        The raw body.
    content_type : str
        The response's Content-Type header (used when ``fmt`` is ``"auto"``).
    fmt : {"auto", "json", "xml", "csv"}
        The expected format (``csv``: the bytes, as :class:`RawBody`, for the CSV reader).
    url : str
        The (redacted) URL, for error messages.

    Raises
    ------
    ResponseParseError
        Not valid JSON/XML, XML that declares entities/DTDs (refused for safety), nesting
        deeper than :data:`MAX_NESTING` levels, or a body not in its declared charset.
    """
    if fmt not in FORMATS:
        raise ResponseParseError(
            f"unknown body format {fmt!r}", url=url, hint=f"Use one of {', '.join(FORMATS)}."
        )
    if fmt == CSV_FORMAT:
        return RawBody(content, content_type) if content else None
    if fmt == "auto":
        ct = content_type.lower()
        stripped = content.lstrip()[:1]
        fmt = "xml" if ("xml" in ct or (not ct and stripped == b"<")) else "json"
    if not content.strip():
        return None
    charset = _declared_charset(content_type)
    if fmt == "xml":
        if charset and not re.match(rb"\s*<\?xml[^>]*encoding=", content):
            content = _transcode(content, charset, url)  # the XML declaration wins if present
        root = _parse_xml(content, url)
        if _xml_too_deep(root):
            raise _too_deep(url)
        return root
    content = _transcode(content, charset, url)
    if _json_too_deep(content):
        raise _too_deep(url)
    try:
        return json.loads(content)
    except RecursionError:
        raise _too_deep(url) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResponseParseError(
            f"response is not valid JSON: {exc}; starts with {_snippet(content)!r}", url=url
        ) from exc


def _parse_xml(content: bytes, url: str) -> Element:
    from xml.etree.ElementTree import ParseError

    import defusedxml.ElementTree as safe_et
    from defusedxml import DefusedXmlException

    try:
        return safe_et.fromstring(content, forbid_dtd=True)
    except RecursionError:
        raise _too_deep(url) from None
    except DefusedXmlException as exc:
        raise ResponseParseError(
            f"refused unsafe XML ({type(exc).__name__}): DTDs and entities are not accepted",
            url=url,
            hint="The provider sent a DTD or entity declarations; ask them to remove it.",
        ) from exc
    except ParseError as exc:
        raise ResponseParseError(
            f"response is not valid XML: {exc}; starts with {_snippet(content)!r}", url=url
        ) from exc


def _snippet(content: bytes, n: int = 120) -> str:
    return content[:n].decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------- JSON
@functools.lru_cache(maxsize=512)
def json_steps(path: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A dotted JSON path (``$.a.b[*].c``, ``x[0]``) as ``(name, indexes)`` steps (cached).

    Parameters
    ----------
    path : str
        Dotted path; a leading ``$`` is dropped, ``[*]`` is every item, ``[-1]`` the last.

    Returns
    -------
    tuple of (str, tuple of str)
        One step per segment: the key (``""`` for a bare index) and its index texts.

    Raises
    ------
    ValueError
        A segment that is not ``name[idx]...``.
    """
    path = path.strip()
    if path.startswith("$"):
        path = path[1:].lstrip(".")
    steps = []
    for part in [p for p in path.split(".") if p != ""]:
        m = _INDEX.match(part)
        if not m:
            raise ValueError(f"bad path segment {part!r}")
        idx = tuple(re.findall(r"\[(\*|-?\d+)\]", m.group("idx")))
        steps.append((m.group("name"), idx))
    return tuple(steps)


_MISSING = object()


def walk_json(body: Any, path: str) -> tuple[list[Any], bool]:
    """All values at ``path`` and whether the path had a wildcard.

    Parameters
    ----------
    body : Any
        Decoded JSON (dicts and lists).
    path : str
        As :func:`json_steps`.

    Returns
    -------
    tuple of (list, bool)
        The values found (missing keys give none) and whether a ``[*]`` was walked.
    """
    current: list[Any] = [body]
    wildcard = False
    for name, idx in json_steps(path):
        nxt: list[Any] = []
        for node in current:
            value = node.get(name, _MISSING) if name and isinstance(node, Mapping) else node
            if name and not isinstance(node, Mapping):
                value = _MISSING
            if value is _MISSING:
                continue
            values = [value]
            for i in idx:
                expanded: list[Any] = []
                for v in values:
                    if not isinstance(v, list):
                        continue
                    if i == "*":
                        wildcard = True
                        expanded.extend(v)
                    elif -len(v) <= int(i) < len(v):
                        expanded.append(v[int(i)])
                values = expanded
            nxt.extend(values)
        current = nxt
    return current, wildcard


# ----------------------------------------------------------------------------------------- XML
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else str(tag)


def _split_xml_path(path: str) -> tuple[str, str]:
    """Split a trailing ``/@attr`` or ``/text()`` off an XPath."""
    path = path.strip()
    for suffix in ("/text()",):
        if path.endswith(suffix):
            return path[: -len(suffix)] or ".", "text()"
    m = re.search(r"/?@([\w:.-]+)$", path)
    if m and "[" not in path[m.start() :]:
        return path[: m.start()] or ".", "@" + m.group(1)
    return path or ".", ""


def _walk_xml(root: Element, path: str, namespaces: Mapping[str, str]) -> list[Any]:
    elem_path, tail = _split_xml_path(path)
    try:
        elems = [root] if elem_path in (".", "") else root.findall(elem_path, dict(namespaces))
    except (SyntaxError, KeyError) as exc:
        raise ResponseParseError(
            f"bad XML path {path!r}: {exc}",
            hint="Use the ElementTree XPath subset and declare prefixes in `namespaces`.",
        ) from exc
    if tail == "text()":
        return [(e.text or "").strip() for e in elems]
    if tail.startswith("@"):
        name = tail[1:]
        if ":" in name:
            prefix, local = name.split(":", 1)
            name = f"{{{namespaces.get(prefix, prefix)}}}{local}"
        return [e.get(name) for e in elems if e.get(name) is not None]
    return elems


def element_to_dict(elem: Element) -> Any:
    """Convert an XML element to plain Python values (see the module docstring)."""
    children = list(elem)
    text = (elem.text or "").strip()
    if not children and not elem.attrib:
        return text
    out: dict[str, Any] = {f"@{_local(k)}": v for k, v in elem.attrib.items()}
    for child in children:
        key = _local(child.tag)
        value = element_to_dict(child)
        if key in out:
            if not isinstance(out[key], list) or key not in _repeated(elem):
                out[key] = [out[key]]
            out[key].append(value)
        else:
            out[key] = value
    if text:
        out["#text"] = text
    return out


def _repeated(elem: Element) -> set[str]:
    seen: set[str] = set()
    rep: set[str] = set()
    for child in elem:
        key = _local(child.tag)
        (rep if key in seen else seen).add(key)
    return rep


# ------------------------------------------------------------------------------------- public
def select_records(
    body: Any, path: str = "", *, namespaces: Mapping[str, str] | None = None, url: str = ""
) -> list[dict[str, Any]]:
    """Return the records at ``path`` in a decoded body, as a list of dicts.

    A path that ends on a list yields its items; on a single object, a one-item list. XML
    elements are converted with :func:`element_to_dict`.

    Raises
    ------
    ResponseParseError
        The path does not exist in the body (an empty list at the path is fine).
    """
    if body is None:
        return []
    if isinstance(body, Element):
        elems = _walk_xml(body, path or ".", namespaces or {})
        out: list[dict[str, Any]] = []
        for e in elems:
            value = element_to_dict(e) if isinstance(e, Element) else e
            out.append(value if isinstance(value, dict) else {"value": value})
        return out
    try:
        values, wildcard = walk_json(body, path)
    except ValueError as exc:
        raise ResponseParseError(f"bad record_path {path!r}: {exc}", url=url) from exc
    if not values and not wildcard:
        keys = list(body)[:10] if isinstance(body, Mapping) else type(body).__name__
        raise ResponseParseError(
            f"record_path {path!r} is not in the response (top level: {keys})",
            url=url,
            hint="Set record_path to the dotted path of the record list, e.g. 'data'.",
        )
    if len(values) == 1 and isinstance(values[0], list) and not wildcard:
        values = values[0]
    records: list[dict[str, Any]] = []
    for v in values:
        if isinstance(v, list):
            records.extend(x if isinstance(x, dict) else {"value": x} for x in v)
        elif isinstance(v, dict):
            records.append(v)
        elif v is not None:
            records.append({"value": v})
    return records


def xml_steps(path: str) -> list[str]:
    """The location steps of an XPath (subset): ``a:x/a:y[@k='v']`` -> ``["a:x", "a:y[@k='v']"]``.

    A ``/`` inside a predicate or a quoted string does not split; ``//x`` (any depth) is one
    step ``.//x``; a leading ``./`` is dropped.
    """
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in path.strip():
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "/" and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    steps: list[str] = []
    descend = False
    for i, part in enumerate(parts):
        if part == "":
            if i > 0:
                descend = True  # "a//b": b at any depth under a
            continue
        if part == "." and not steps and not descend:
            continue
        steps.append(f".//{part}" if descend else part)
        descend = False
    return steps


def _xml_value(node: Any) -> Any:
    if isinstance(node, Element):
        return element_to_dict(node)
    return node


def select_xml_with_ancestors(
    root: Element,
    record_path: str,
    keep: Mapping[str, str],
    *,
    namespaces: Mapping[str, str] | None = None,
    url: str = "",
) -> list[dict[str, Any]]:
    """XML records at ``record_path`` that also carry values of the elements they are under.

    ``keep`` maps a new field name to a path whose first steps are the first steps of
    ``record_path`` (up to the ancestor wanted) and whose rest is read inside that ancestor, as
    for JSON: with ``record_path = "e:UsagePoint/e:MeterReading/e:IntervalReading"``,
    ``keep = { usage_point = "e:UsagePoint/e:title" }`` gives each reading the title of the
    UsagePoint it was listed under (``.../@id`` an attribute, ``.../text()`` the text); a path
    sharing no step reads from the document element. Prefixes come from ``namespaces``. The
    first value found is kept (an element as :func:`element_to_dict` gives it; None when
    absent); a kept field never overwrites one the record has.

    Parameters
    ----------
    root : xml.etree.ElementTree.Element
        The decoded body (its document element).
    record_path : str
        The records' path (ElementTree XPath subset, relative to the document element).
    keep : mapping of str to str
        New field name -> ancestor path.
    namespaces : mapping of str to str, optional
        Prefix -> namespace URI.
    url : str
        The (redacted) URL, for errors.

    Returns
    -------
    list of dict
        One dict per record element, in document order.

    Raises
    ------
    ResponseParseError
        A path is malformed or uses an undeclared prefix.
    """
    ns = dict(namespaces or {})
    steps = xml_steps(record_path)
    plans: list[tuple[str, int, str]] = []
    for name, path in keep.items():
        kst = xml_steps(path)
        depth = 0
        while depth < min(len(steps), len(kst)) and kst[depth] == steps[depth]:
            depth += 1
        rest = "/".join(kst[depth:])
        plans.append((name, depth, f"./{rest}" if rest.startswith(("@", "text()")) else rest))
    out: list[dict[str, Any]] = []

    def find(node: Element, path: str) -> list[Any]:
        try:
            return _walk_xml(node, path, ns)
        except ResponseParseError as exc:
            raise ResponseParseError(str(exc), url=url, hint=exc.hint) from exc

    def walk(node: Element, depth: int, trail: list[Element]) -> None:
        if depth == len(steps):
            rec = _xml_value(node)
            rec = rec if isinstance(rec, dict) else {"value": rec}
            for name, at, rest in plans:
                if name not in rec:
                    found = find(trail[at], rest) if rest else [trail[at]]
                    rec[name] = _xml_value(found[0]) if found else None
            out.append(rec)
            return
        for child in find(node, steps[depth]):
            if isinstance(child, Element):
                walk(child, depth + 1, [*trail, child])

    walk(root, 0, [root])
    return out


def find_value(body: Any, path: str, *, namespaces: Mapping[str, str] | None = None) -> Any:
    """Return the first value at ``path`` in a decoded body, or ``None`` when absent.

    Used for totals, cursors and next links. XML values are returned as text.
    """
    if body is None or not path:
        return None
    if isinstance(body, Mapping) and path in body:  # fast path: a plain key
        return body[path]
    if isinstance(body, Element):
        found = _walk_xml(body, path, namespaces or {})
        if not found:
            return None
        first = found[0]
        return (first.text or "").strip() if isinstance(first, Element) else first
    try:
        values, _ = walk_json(body, path)
    except ValueError:
        return None
    return values[0] if values else None
