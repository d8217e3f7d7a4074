"""Response bodies: decode JSON or XML safely, select records and values by path.

JSON paths are dotted with ``[*]`` (every element) and ``[n]`` (one element), an optional
leading ``$.``: ``data``, ``result.items[*]``, ``$.pages[*].records``. An empty path selects the
body itself.

A body nested deeper than :data:`MAX_NESTING` levels (JSON arrays/objects, XML elements) is a
:class:`ResponseParseError` for that page, never a ``RecursionError``.

Text encodings (:func:`decode_text`), first match wins:

1. the resource's ``encoding`` (``[resources.X] encoding = "cp1252"``), checked: a body that is
   not valid in it, or that starts with a UTF byte order mark, or that reads as UTF-8 with
   non-ASCII characters while the key names a legacy encoding (a wrong guess that would give
   mojibake such as ``ZÃ¼rich``) is an error naming the key;
2. a byte order mark (UTF-8, UTF-16, UTF-32), whatever the headers say;
3. the XML declaration's ``encoding`` (XML only), then the Content-Type's ``charset``: the first
   the body is valid in; a legacy charset (``iso-8859-1``, ``windows-1252``, ...) declared for a
   body that is valid UTF-8 with non-ASCII characters reads it as UTF-8 (servers that default
   to ISO-8859-1 while sending UTF-8);
4. UTF-8.

A body not valid in the encoding chosen is a :class:`ResponseParseError` for that page (the run
is partial), never text with replaced characters. XML reaches the parser as bytes: the body as
sent when it is UTF-8 or its declaration is honoured, else transcoded to UTF-8 with its
declaration rewritten. With ``format = "auto"`` a Content-Type naming neither JSON nor XML
(``text/plain``) is read by the body's first character (``<``: XML).

XML bodies are parsed with :mod:`defusedxml` (no DTDs, no external entities, no entity bombs) and
selected with the ElementTree XPath subset plus a namespace map: ``ns:Reading``,
``.//e:Meter[@kind='interval']``; a trailing ``/@attr`` reads an attribute and a trailing
``/text()`` the text. XML records become dicts: attributes as ``@name``, child elements by their
local name (repeated children become lists), element text as the value (or ``#text`` when the
element also has attributes or children). :func:`select_xml_with_ancestors` gives each record
fields of the elements it was found under (a resource's ``keep``), as the JSON selection does.
"""

from __future__ import annotations

import codecs
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from scaler_workbench._secrets import get_logger
from scaler_workbench.exceptions import ResponseParseError

__all__ = [
    "CSV_FORMAT",
    "FORMATS",
    "MAX_NESTING",
    "XML_FORMAT",
    "RawBody",
    "check_encoding",
    "decode_body",
    "decode_text",
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


log = get_logger(__name__)

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


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_XML_DECL_ENCODING = re.compile(
    rb"""\A\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']"""
)
_XML_DECL_TEXT = re.compile(r"""\A(\s*<\?xml[^>]*?\bencoding\s*=\s*)(["'])[^"']*\2""")


def _bom_codec(content: bytes) -> str:
    """The codec a byte order mark at the start of ``content`` names ("" without one)."""
    for bom, name in _BOMS:
        if content.startswith(bom):
            return name
    return ""


def _codec_name(name: str) -> str:
    """Python's canonical name of an encoding (``windows-1252`` -> ``cp1252``); "" if unknown."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        return ""


def _is_utf(codec: str) -> bool:
    return codec.startswith("utf")


def _utf8_with_non_ascii(content: bytes) -> bool:
    """Whether ``content`` is valid UTF-8 holding at least one multi-byte character."""
    if content.isascii():
        return False
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_encoding(name: Any, *, key: str) -> str:
    """A profile's ``encoding`` value, checked: a name Python knows.

    Parameters
    ----------
    name : Any
        The value as written (``"cp1252"``, ``"windows-1252"``, ``"utf-8"``).
    key : str
        The profile key, for the error (``resources.readings.encoding``).

    Returns
    -------
    str
        The name as written ("" when empty or None).

    Raises
    ------
    ProfileError
        Not text, or not an encoding Python knows.
    """
    from scaler_workbench.exceptions import ProfileError

    if name in (None, ""):
        return ""
    if not isinstance(name, str) or not _codec_name(name):
        raise ProfileError(
            f"{key} {name!r} is not an encoding Python knows",
            key=key,
            hint='e.g. "utf-8", "utf-8-sig", "cp1252", "latin-1"',
        )
    return name


def _at(exc: UnicodeDecodeError, content: bytes) -> str:
    return f"byte {exc.start}: {content[exc.start : exc.start + 4]!r}"


def decode_text(
    content: bytes,
    *,
    content_type: str = "",
    encoding: str = "",
    declared: str = "",
    url: str = "",
    what: str = "the response",
    key: str = "the resource's `encoding`",
    error: type[ResponseParseError] = ResponseParseError,
) -> tuple[str, str]:
    """Decode a body to text by the rules of the module docstring.

    Parameters
    ----------
    content : bytes
        The raw body.
    content_type : str
        The Content-Type header (its ``charset``).
    encoding : str
        The profile's encoding for this body ("" when none): wins, and is checked.
    declared : str
        An encoding the body itself declares (an XML declaration), before the header's.
    url : str
        The (redacted) URL, named in errors.
    what : str
        What is decoded, for errors ("the response", "the CSV answer", a zip member's name).
    key : str
        The profile key that sets the encoding, named in error hints.
    error : type
        The :class:`ResponseParseError` subclass raised.

    Returns
    -------
    tuple of (str, str)
        The text (without its byte order mark) and the codec used (Python's name).

    Raises
    ------
    ResponseParseError
        (or ``error``) The body is not valid in the encoding chosen, the encoding is unknown,
        or the profile's legacy encoding is a wrong guess (a BOM, or valid non-ASCII UTF-8).
    """
    where = f"{what} of {url}" if url else what
    bom = _bom_codec(content)
    if encoding:
        codec = _codec_name(encoding)
        if not codec:
            raise error(f"{key} {encoding!r} is not an encoding Python knows", url=url)
        if codec == "utf-8":
            codec = "utf-8-sig"  # a UTF-8 byte order mark is not part of the text
        wrong = ""
        if bom and not (_is_utf(codec) and (bom == codec or codec in ("utf-16", "utf-32"))):
            wrong = f"it starts with a {bom.replace('-sig', '').upper()} byte order mark"
        elif not _is_utf(codec) and _utf8_with_non_ascii(content):
            wrong = "it reads as UTF-8 (non-ASCII characters in valid UTF-8)"
        if wrong:
            raise error(
                f"{where} is declared {encoding!r} by {key}, but {wrong}: refused rather than "
                "read with garbled characters",
                url=url,
                hint=f'Set {key} to the encoding the provider sends (e.g. "utf-8") or remove it.',
            )
        try:
            return content.decode(codec), codec
        except UnicodeDecodeError as exc:
            raise error(
                f"{where} is not valid {encoding} as {key} says ({_at(exc, content)})",
                url=url,
                hint=f"Set {key} to the encoding the provider sends; this page counts as failed.",
            ) from None
    if bom:
        try:
            return content.decode(bom), bom
        except UnicodeDecodeError as exc:
            raise error(
                f"{where} starts with a {bom.replace('-sig', '').upper()} byte order mark but is "
                f"not valid {bom.replace('-sig', '').upper()} ({_at(exc, content)})",
                url=url,
                hint="Ask the provider; this page counts as failed.",
            ) from None
    header = _declared_charset(content_type)
    candidates = [c for c in dict.fromkeys((declared.lower(), header)) if c]
    unknown = [c for c in candidates if not _codec_name(c)]
    known = [c for c in candidates if _codec_name(c)]
    if unknown and not known:
        raise error(
            f"{where} declares an unknown charset {unknown[0]!r}",
            url=url,
            hint=f'Set {key} to the encoding the provider sends (e.g. "utf-8", "cp1252").',
        )
    if any(not _is_utf(_codec_name(c)) for c in known) and _utf8_with_non_ascii(content):
        log.info("%s declares %s but is UTF-8: read as UTF-8", where, "/".join(known))
        return content.decode("utf-8"), "utf-8"
    failures: list[tuple[str, str]] = []  # (charset, where the first bad byte is)
    for charset in known or ["utf-8"]:
        codec = _codec_name(charset)
        try:
            return content.decode(codec), codec
        except UnicodeDecodeError as bad:
            failures.append((charset, _at(bad, content)))
    charset, at = failures[0]
    said = f"{charset} as it declares" if known else "UTF-8 (no charset declared)"
    raise error(
        f"{where} is not valid {said} ({at})",
        url=url,
        hint=f'Set {key} to the encoding the provider sends (e.g. "cp1252"); this page counts '
        "as failed.",
    ) from None


def _sniff_format(content: bytes, content_type: str) -> str:
    """``json`` or ``xml`` for ``format = "auto"``: the Content-Type, else the first character."""
    ct = content_type.lower()
    if "json" in ct:
        return "json"
    if "xml" in ct:
        return "xml"
    if "html" in ct:
        return "json"  # an HTML page is not data: the JSON reader reports it
    bom = _bom_codec(content)
    head = content[
        len(codecs.BOM_UTF8) if bom == "utf-8-sig" else 4 if bom == "utf-32" else 2 if bom else 0 :
    ]
    # UTF-16/32 without a byte order mark: the NUL bytes of the ASCII characters are skipped
    first = head.lstrip(b" \t\r\n\x00")[:1]
    return "xml" if first == b"<" else "json"


def decode_body(
    content: bytes,
    *,
    content_type: str = "",
    fmt: str = "auto",
    url: str = "",
    encoding: str = "",
) -> Any:
    """Decode a response body to JSON values or an XML root :class:`Element`.

    Parameters
    ----------
    content : bytes
        The raw body.
    content_type : str
        The response's Content-Type header (used when ``fmt`` is ``"auto"``, and its charset).
    fmt : {"auto", "json", "xml", "csv"}
        The expected format (``csv``: the bytes, as :class:`RawBody`, for the CSV reader).
    url : str
        The (redacted) URL, for error messages.
    encoding : str
        The resource's ``encoding`` ("" when none), see :func:`decode_text`.

    Raises
    ------
    ResponseParseError
        Not valid JSON/XML, XML that declares entities/DTDs (refused for safety), nesting
        deeper than :data:`MAX_NESTING` levels, or a body not in its encoding (see
        :func:`decode_text`).
    """
    if fmt not in FORMATS:
        raise ResponseParseError(
            f"unknown body format {fmt!r}", url=url, hint=f"Use one of {', '.join(FORMATS)}."
        )
    if fmt == CSV_FORMAT:
        return RawBody(content, content_type) if content else None
    if fmt == "auto":
        fmt = _sniff_format(content, content_type)
    if not content.strip():
        return None
    if fmt == "xml":
        root = _parse_xml(_xml_bytes(content, content_type, encoding, url), url)
        if _xml_too_deep(root):
            raise _too_deep(url)
        return root
    text, codec = decode_text(
        content,
        content_type=content_type,
        encoding=encoding,
        url=url,
    )
    utf8 = content[len(codecs.BOM_UTF8) :] if codec == "utf-8-sig" else content
    if codec not in ("utf-8", "utf-8-sig"):
        utf8 = text.encode("utf-8", "surrogatepass")
    if _json_too_deep(utf8):
        raise _too_deep(url)
    try:
        return json.loads(text)
    except RecursionError:
        raise _too_deep(url) from None
    except ValueError as exc:
        raise ResponseParseError(
            f"response is not valid JSON: {exc}; starts with {_snippet(utf8)!r}", url=url
        ) from exc


def _xml_bytes(content: bytes, content_type: str, encoding: str, url: str) -> bytes:
    """The bytes for the XML parser: as sent when they are UTF-8 or their declaration is right,
    else the text in UTF-8 with the declaration saying so."""
    m = _XML_DECL_ENCODING.match(content)
    declared = m.group(1).decode("ascii") if m else ""
    text, codec = decode_text(
        content, content_type=content_type, encoding=encoding, declared=declared, url=url
    )
    if not encoding and codec == _codec_name(declared or "utf-8"):
        return content  # the parser reads it as it is (the declaration is honoured)
    return _XML_DECL_TEXT.sub(r"\1\2UTF-8\2", text, count=1).encode("utf-8")


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
