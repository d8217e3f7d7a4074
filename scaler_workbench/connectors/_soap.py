"""SOAP resources: the ``[resources.X.soap]`` table and SOAP faults mapped to errors.

A SOAP resource POSTs an XML envelope (a body template, see :mod:`._templates`; substituted
values are XML-escaped) and reads the answer by the XML path (``record_path`` as XPath with
``namespaces``)::

    [resources.readings]
    path = "/ws"
    record_path = "s:Body/m:GetReadingsResponse/m:Reading"
    namespaces = { s = "http://schemas.xmlsoap.org/soap/envelope/", m = "urn:example:meter" }
    [resources.readings.soap]
    envelope = "get_readings.xml"   # a file next to profile.toml, or the envelope inline
    action = "urn:example:meter/GetReadings"
    version = "1.1"                 # 1.1: text/xml + SOAPAction; 1.2: application/soap+xml

Without ``envelope`` the resource's ``body`` is the envelope. ``headers`` given by the profile
win over the ``Content-Type`` / ``SOAPAction`` this table sets.

A SOAP fault, in a 500 or a 200 answer, SOAP 1.1 (``Fault/faultcode``, ``faultstring``) or 1.2
(``Fault/Code/Value`` with ``Subcode/Value``, ``Reason/Text``), becomes
(:func:`fault_error`):

- a fault whose code or string matches ``auth_fault`` (default :data:`DEFAULT_AUTH_FAULT`:
  ``Client.Authentication``, ``wsse:FailedAuthentication``, "invalid token", ...) ->
  :class:`AuthError` (the fetch stops, exit 3);
- one matching the client's ``quota_match`` or ``ban_match`` -> :class:`QuotaExhaustedError`
  (exit 4, the next run resumes);
- one matching ``busy_fault`` (default :data:`DEFAULT_BUSY_FAULT`: "Server.Busy",
  "throttled", "too many requests", ...) -> :class:`SoapBusyFault`, retried with the client's
  backoff (a :class:`ProviderUnavailableError` after the last attempt);
- anything else -> :class:`RequestRejectedError` naming the fault code and string (a failed
  page).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from scaler_workbench._profile_schema import SOAP_KEYS
from scaler_workbench.connectors._body import decode_body
from scaler_workbench.connectors._util import refuse_unknown_keys, text_or_file
from scaler_workbench.exceptions import (
    AuthError,
    ConnectorError,
    ProfileError,
    ProviderUnavailableError,
    QuotaExhaustedError,
    RequestRejectedError,
    ResponseParseError,
)

__all__ = [
    "DEFAULT_AUTH_FAULT",
    "DEFAULT_BUSY_FAULT",
    "SOAP_11",
    "SOAP_12",
    "SOAP_KEYS",
    "SoapBusyFault",
    "SoapFault",
    "check_soap_table",
    "fault_error",
    "fault_of_response",
    "find_fault",
]

SOAP_11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_12 = "http://www.w3.org/2003/05/soap-envelope"
_CONTENT_TYPES = {"1.1": "text/xml; charset=utf-8", "1.2": "application/soap+xml; charset=utf-8"}

#: A fault code or string meaning the credentials were refused (matched case-insensitively).
DEFAULT_AUTH_FAULT = (
    r"authenticat|unauthori[sz]ed|not authori[sz]ed|forbidden|access[ _-]?denied"
    r"|invalid[ _-]?(?:token|credentials?|password|user(?:name)?|api[ _-]?key|security)"
    r"|(?:token|session)[ _-]?(?:is[ _-])?(?:expired|invalid)|failed[ _-]?authentication"
    r"|security[ _-]?token"
)
#: A fault code or string meaning "busy, slow down": retried with backoff.
DEFAULT_BUSY_FAULT = (
    r"busy|throttl|too[ _-]?many[ _-]?requests|rate[ _-]?limit|overload|temporar"
    r"|try[ _-]?again|unavailable"
)


class SoapBusyFault(ProviderUnavailableError):
    """A SOAP fault saying the server is busy or throttling (the client retries it)."""


@dataclass(frozen=True)
class SoapFault:
    """One SOAP fault: its version, code (with subcodes, outermost first) and reason text."""

    version: str
    codes: tuple[str, ...]
    reason: str
    detail: str = ""

    @property
    def code(self) -> str:
        return " / ".join(self.codes) or "(no fault code)"

    def describe(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return (
            f"SOAP {self.version} fault {self.code}: {self.reason or '(no fault string)'}{detail}"
        )


def check_soap_table(table: Mapping[str, Any], *, profile: Any, key: str) -> dict[str, Any] | None:
    """The validated ``soap`` table of a resource (an envelope file read), or None.

    Parameters
    ----------
    table : mapping
        The resource table.
    profile : Profile or None
        Resolves an envelope file relative to the profile's folder.
    key : str
        ``resources.<name>``, for errors.

    Returns
    -------
    dict or None
        ``{"envelope": text or None, "action", "version", "auth_fault", "busy_fault"}`` with
        the two patterns compiled.

    Raises
    ------
    ProfileError
        Not a table, unknown keys, a bad version or regex, an envelope file that does not
        exist, an envelope beside ``body`` or no envelope at all.
    """
    spec = table.get("soap")
    if spec is None:
        return None
    where = f"{key}.soap"
    if not isinstance(spec, Mapping):
        raise ProfileError(f"{where} must be a table (envelope, action, version)", key=where)
    refuse_unknown_keys(spec, SOAP_KEYS, where)
    version = str(spec.get("version", "1.1"))
    if version not in _CONTENT_TYPES:
        raise ProfileError(
            f"{where}.version must be '1.1' or '1.2', not {version!r}", key=f"{where}.version"
        )
    envelope = spec.get("envelope")
    if envelope is not None and "body" in table:
        raise ProfileError(
            f"{where}.envelope and {key}.body are both the request body; give one",
            key=f"{where}.envelope",
        )
    if envelope is None and not isinstance(table.get("body"), str):
        raise ProfileError(
            f"{where} needs an envelope (or the resource's body)",
            key=f"{where}.envelope",
            hint='e.g. envelope = "get_readings.xml" (a file next to profile.toml)',
        )
    if envelope is not None:
        if not isinstance(envelope, str) or not envelope.strip():
            raise ProfileError(f"{where}.envelope must be text", key=f"{where}.envelope")
        envelope = text_or_file(
            envelope, profile=profile, suffixes=(".xml",), inline="<", key=f"{where}.envelope"
        )
    patterns = {}
    for name, default in (("auth_fault", DEFAULT_AUTH_FAULT), ("busy_fault", DEFAULT_BUSY_FAULT)):
        text = str(spec.get(name, default))
        try:
            patterns[name] = re.compile(text, re.I) if text else None
        except re.error as exc:
            raise ProfileError(f"bad {where}.{name} regex: {exc}", key=f"{where}.{name}") from exc
    return {
        "envelope": envelope,
        "action": spec.get("action"),
        "version": version,
        "content_type": _CONTENT_TYPES[version],
        **patterns,
    }


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(elem: Element, name: str) -> Element | None:
    return next((c for c in elem if _local(c.tag) == name), None)


def _text(elem: Element | None) -> str:
    return " ".join("".join(elem.itertext()).split()) if elem is not None else ""


def find_fault(root: Any) -> SoapFault | None:
    """The fault of a decoded SOAP answer (1.1 or 1.2), or None when it holds none.

    Parameters
    ----------
    root : Element or any
        The decoded body (anything that is not a SOAP envelope holds no fault).

    Returns
    -------
    SoapFault or None
    """
    if not isinstance(root, Element) or _local(root.tag) != "Envelope":
        return None
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    body = _child(root, "Body")
    fault = _child(body, "Fault") if body is not None else None
    if fault is None:
        return None
    if ns == SOAP_12 or _child(fault, "Code") is not None:
        codes: list[str] = []
        node = _child(fault, "Code")
        while node is not None:
            value = _text(_child(node, "Value"))
            if value:
                codes.append(value)
            node = _child(node, "Subcode")
        reason = _child(fault, "Reason")
        texts = [_text(t) for t in reason if _local(t.tag) == "Text"] if reason is not None else []
        return SoapFault(
            "1.2", tuple(codes), texts[0] if texts else "", _text(_child(fault, "Detail"))
        )
    code = _text(_child(fault, "faultcode"))
    return SoapFault(
        "1.1",
        (code,) if code else (),
        _text(_child(fault, "faultstring")),
        _text(_child(fault, "detail")),
    )


def fault_of_response(
    content: bytes, content_type: str, url: str = "", *, encoding: str = ""
) -> SoapFault | None:
    """The SOAP fault in a raw answer, or None (not XML, not an envelope, no fault).

    ``encoding`` is the resource's (see :func:`._body.decode_text`).
    """
    if b"Fault" not in content and b"F\x00a\x00u\x00l\x00t" not in content:
        return None  # (the second test: a UTF-16 envelope)
    try:
        root = decode_body(
            content, content_type=content_type, fmt="xml", url=url, encoding=encoding
        )
    except ResponseParseError:
        return None  # not a readable envelope: the ordinary status and body checks report it
    return find_fault(root)


def fault_error(
    fault: SoapFault,
    soap: Mapping[str, Any],
    *,
    retry: Any = None,
    provider: str = "",
    url: str = "",
    status: int | None = None,
) -> ConnectorError:
    """The error a SOAP fault stands for (see the module docstring for the order).

    Parameters
    ----------
    fault : SoapFault
    soap : mapping
        The resource's checked ``soap`` table (:func:`check_soap_table`): its patterns.
    retry : RetryPolicy, optional
        Its ``quota_match`` / ``ban_match`` make a fault a quota stop.
    provider, url : str
    status : int, optional
        The HTTP status the fault came with (500 or 200).

    Returns
    -------
    ConnectorError
        :class:`AuthError`, :class:`QuotaExhaustedError`, :class:`SoapBusyFault` or
        :class:`RequestRejectedError`.
    """
    text = f"{' '.join(fault.codes)} {fault.reason}"
    message = fault.describe()
    ctx: dict[str, Any] = {"provider": provider, "url": url, "status": status}
    auth = soap.get("auth_fault")
    if auth is not None and auth.search(text):
        return AuthError(
            message,
            hint="Check the credentials in the environment variables the profile names "
            "under [auth] (a SOAP service may also expect them in its envelope header).",
            **ctx,
        )
    if retry is not None and retry.is_quota(429, None, text):
        return QuotaExhaustedError(f"the provider's quota is spent ({message})", **ctx)
    busy = soap.get("busy_fault")
    if busy is not None and busy.search(text):
        return SoapBusyFault(message, **ctx)
    return RequestRejectedError(
        message,
        hint="The service refused the request: check the envelope, its action and the values "
        "filled into it.",
        **ctx,
    )
