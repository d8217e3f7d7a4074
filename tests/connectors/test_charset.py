"""Response text decoding as real providers send it, over loopback HTTP (connectors._body).

Each case is served by the fake on 127.0.0.1 and fetched through ``fetch_resources``: a UTF-8
BOM, a declared ``windows-1252`` / ``ISO-8859-1`` charset, UTF-8 sent under a declared
ISO-8859-1 (server default), an XML declaration's encoding without a header charset, UTF-16
XML, ``text/plain`` JSON and XML, CSV exports in cp1252 with no declared charset, and the
resource's ``encoding`` key (a wrong guess is a failed page naming the key, never mojibake).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _fakes import Reply, Request

from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import fetch_resources
from scaler_workbench.connectors._body import decode_body
from scaler_workbench.exceptions import ProfileError, ResponseParseError

from .conftest import fake_profile

NAME = "Zürich Straße € ÿ"  # ü ß ÿ in latin-1 and cp1252, € in cp1252 only
LATIN = "Zürich Straße ÿ"
MOJIBAKE = ("Ã", "â‚¬", "\ufffd")


def _json(name: str = NAME) -> str:
    return '{"data": [{"id": "m1", "name": "' + name + '"}]}'


def _xml(name: str = NAME, encoding: str = "") -> str:
    decl = f'<?xml version="1.0" encoding="{encoding}"?>' if encoding else ""
    return f"{decl}<r><data><id>m1</id><name>{name}</name></data></r>"


def _fetch(serve: Any, body: bytes, content_type: str, **resource: Any) -> Any:
    server = serve(lambda req: Reply(200, body, content_type=content_type))
    profile = fake_profile(
        server.url,
        resources={
            "meters": {"path": "/meters", "record_path": "data", "primary_key": "id", **resource}
        },
    )
    return fetch_resources(profile, clock=FakeClock())["meters"]


def _name(result: Any) -> str:
    [record] = result.records
    assert result.report.complete and not result.report.failed_pages
    name = str(record["name"])
    assert not any(m in name for m in MOJIBAKE), name
    return name


def _failed(result: Any) -> str:
    """The one failed page's error text (no records, the pull incomplete)."""
    assert result.records == []
    assert not result.report.complete
    [page] = result.report.failed_pages
    assert page["url"].startswith("http://127.0.0.1:") and page["url"].endswith("/meters")
    assert "ResponseParseError" in page["error"] or "CsvFormatError" in page["error"]
    return str(page["error"])


# -- JSON -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/json; charset=ISO-8859-1"],
)
def test_json_with_a_utf8_bom_is_read_whatever_the_header_says(
    serve: Any, content_type: str
) -> None:
    body = b"\xef\xbb\xbf" + _json().encode("utf-8")
    assert _name(_fetch(serve, body, content_type)) == NAME


@pytest.mark.parametrize(
    ("charset", "codec", "name"),
    [
        ("windows-1252", "cp1252", NAME),
        ("cp1252", "cp1252", NAME),
        ("ISO-8859-1", "latin-1", LATIN),
        ("latin1", "latin-1", LATIN),
    ],
)
def test_json_in_a_declared_legacy_charset(serve: Any, charset: str, codec: str, name: str) -> None:
    body = _json(name).encode(codec)
    assert _name(_fetch(serve, body, f"application/json; charset={charset}")) == name


def test_utf8_sent_under_a_declared_iso_8859_1_is_read_as_utf8_not_mojibake(serve: Any) -> None:
    # servers that default every answer to ISO-8859-1 while writing UTF-8 (old Java stacks)
    body = _json().encode("utf-8")
    assert _name(_fetch(serve, body, "application/json; charset=ISO-8859-1")) == NAME
    assert _name(_fetch(serve, body, "application/json; charset=windows-1252")) == NAME


def test_undeclared_cp1252_json_is_a_failed_page_naming_the_encoding_key(serve: Any) -> None:
    body = _json().encode("cp1252")
    error = _failed(_fetch(serve, body, "application/json"))
    assert "not valid UTF-8 (no charset declared)" in error
    assert "127.0.0.1" in error  # the URL is named in the message too
    # the hint names the key
    with pytest.raises(ResponseParseError) as info:
        decode_body(body, content_type="application/json", url="http://x.example/m")
    assert "encoding" in info.value.hint and "cp1252" in info.value.hint
    # the resource's encoding reads it
    assert _name(_fetch(serve, body, "application/json", encoding="cp1252")) == NAME


def test_a_wrong_encoding_guess_is_a_failed_page_never_mojibake(serve: Any) -> None:
    utf8 = _json().encode("utf-8")
    # cp1252 or latin-1 would decode these bytes, into ZÃ¼rich: refused, naming the key
    for guess in ("cp1252", "latin-1"):
        error = _failed(_fetch(serve, utf8, "application/json", encoding=guess))
        assert "reads as UTF-8" in error and guess in error and "`encoding`" in error
    # a UTF-8 BOM under a legacy guess: refused too
    error = _failed(_fetch(serve, b"\xef\xbb\xbf" + utf8, "application/json", encoding="cp1252"))
    assert "byte order mark" in error
    # utf-8 declared by the profile, cp1252 sent: refused (byte named)
    error = _failed(_fetch(serve, _json().encode("cp1252"), "application/json", encoding="utf-8"))
    assert "is not valid utf-8" in error and "byte" in error
    # the profile's key wins over a wrong header
    body = _json().encode("cp1252")
    assert _name(_fetch(serve, body, "application/json; charset=utf-8", encoding="cp1252")) == NAME


def test_text_plain_with_json_or_xml_inside(serve: Any) -> None:
    assert _name(_fetch(serve, _json().encode(), "text/plain")) == NAME
    assert _name(_fetch(serve, _json().encode(), "text/plain; charset=utf-8")) == NAME
    assert _name(_fetch(serve, _json().encode(), "")) == NAME
    assert _name(_fetch(serve, _xml().encode(), "text/plain", record_path="data")) == NAME
    assert _name(_fetch(serve, _xml().encode(), "application/octet-stream")) == NAME
    # an HTML page is not read as XML: a parse error, not an empty page
    error = _failed(_fetch(serve, b"<html><body>login</body></html>", "text/html"))
    assert "not valid JSON" in error


# -- XML ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("declared", "codec", "name"),
    [("ISO-8859-1", "latin-1", LATIN), ("windows-1252", "cp1252", NAME)],
)
@pytest.mark.parametrize("content_type", ["application/xml", "text/xml", ""])
def test_xml_declaration_encoding_is_honoured_without_a_header_charset(
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    declared: str,
    codec: str,
    name: str,
    content_type: str,
) -> None:
    from scaler_workbench.connectors import _body

    seen: list[Any] = []
    parse = _body._parse_xml

    def spy(content: Any, url: str) -> Any:
        seen.append(content)
        return parse(content, url)

    monkeypatch.setattr(_body, "_parse_xml", spy)
    body = _xml(name, declared).encode(codec)
    assert _name(_fetch(serve, body, content_type)) == name
    # bytes, not text, reach the parser: the bytes as sent, so the declaration is honoured
    assert seen == [body]


@pytest.mark.parametrize(
    "content_type",
    ["application/xml", "application/xml; charset=utf-16", "text/xml; charset=UTF-16", ""],
)
@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_xml_in_utf16(serve: Any, content_type: str, codec: str) -> None:
    text = _xml(NAME, "UTF-16")
    body = text.encode(codec)
    if codec != "utf-16":  # a byte order mark as a provider writes it with an explicit order
        body = ("\ufeff" + text).encode(codec)
    assert _name(_fetch(serve, body, content_type)) == NAME


def test_xml_declaration_and_header_disagree(serve: Any) -> None:
    # the body is what its declaration says (a file served as-is under a server-wide charset)
    latin = _xml(LATIN, "ISO-8859-1").encode("latin-1")
    assert _name(_fetch(serve, latin, "text/xml; charset=utf-8")) == LATIN
    # a UTF-8 body under a template's ISO-8859-1 declaration: read as UTF-8, not mojibake
    utf8 = _xml(NAME, "ISO-8859-1").encode("utf-8")
    assert _name(_fetch(serve, utf8, "text/xml")) == NAME
    # a template's UTF-8 declaration over Latin-1 bytes the header names: the header's charset
    templated = _xml(LATIN, "UTF-8").encode("latin-1")
    assert _name(_fetch(serve, templated, "text/xml; charset=iso-8859-1")) == LATIN
    error = _failed(_fetch(serve, templated, "text/xml"))  # nothing says Latin-1: refused
    assert "not valid utf-8 as it declares" in error
    # a header charset fills in for an XML without a declaration
    assert _name(_fetch(serve, _xml(NAME).encode("cp1252"), "text/xml; charset=cp1252")) == NAME
    # undeclared, not UTF-8: a failed page naming the encoding key; the key reads it
    error = _failed(_fetch(serve, _xml(NAME).encode("cp1252"), "application/xml"))
    assert "not valid UTF-8" in error
    body = _xml(NAME).encode("cp1252")
    assert _name(_fetch(serve, body, "application/xml", encoding="cp1252")) == NAME
    # the key also overrides a wrong declaration
    wrong = _xml(NAME, "UTF-8").encode("cp1252")
    assert _name(_fetch(serve, wrong, "application/xml", encoding="windows-1252")) == NAME


# -- CSV ------------------------------------------------------------------------------------
CSV = "meter;name;kwh\r\nm1;" + NAME + ";1,5\r\n"
CSV_TABLE = {"delimiter": ";", "decimal": ",", "numeric": ["kwh"]}


def _csv_fetch(serve: Any, body: bytes, content_type: str = "text/csv", **extra: Any) -> Any:
    csv_table = {**CSV_TABLE, **extra.pop("csv", {})}
    server = serve(lambda req: Reply(200, body, content_type=content_type))
    profile = fake_profile(
        server.url,
        resources={
            "meters": {"path": "/meters", "primary_key": "meter", "csv": csv_table, **extra}
        },
    )
    return fetch_resources(profile, clock=FakeClock())["meters"]


def test_csv_in_cp1252_without_a_declared_charset(serve: Any) -> None:
    body = CSV.encode("cp1252")
    # no encoding anywhere: a failed page naming the URL and the csv.encoding key
    error = _failed(_csv_fetch(serve, body))
    assert "not valid UTF-8" in error and "127.0.0.1" in error
    from scaler_workbench.connectors._csv import check_csv_table, read_csv_records
    from scaler_workbench.exceptions import CsvFormatError

    opts = check_csv_table({"csv": CSV_TABLE}, key="resources.meters")
    with pytest.raises(CsvFormatError) as info:
        read_csv_records(body, opts, url="http://x.example/m")
    assert "resources.meters.csv.encoding" in info.value.hint
    # csv.encoding, or the resource's encoding, reads it
    for extra in ({"csv": {"encoding": "cp1252"}}, {"encoding": "cp1252"}):
        result = _csv_fetch(serve, body, **extra)
        assert _name(result) == NAME and result.records[0]["kwh"] == "1.5"
    # declared by the header
    assert _name(_csv_fetch(serve, body, "text/csv; charset=windows-1252")) == NAME
    latin = CSV.replace(NAME, LATIN).encode("latin-1")
    assert _name(_csv_fetch(serve, latin, "text/csv; charset=ISO-8859-1")) == LATIN


def test_csv_wrong_encoding_guess_fails_clearly(serve: Any) -> None:
    utf8 = CSV.encode("utf-8")
    error = _failed(_csv_fetch(serve, utf8, csv={"encoding": "latin-1"}))
    assert "reads as UTF-8" in error and "latin-1" in error
    error = _failed(_csv_fetch(serve, utf8, encoding="cp1252"))
    assert "reads as UTF-8" in error
    # an Excel "CSV UTF-8" export (BOM) with no option: the BOM is not in the first name
    result = _csv_fetch(serve, b"\xef\xbb\xbf" + utf8)
    assert _name(result) == NAME and "meter" in result.records[0]
    from scaler_workbench.connectors._csv import check_csv_table, read_csv_records
    from scaler_workbench.exceptions import CsvFormatError

    opts = check_csv_table({"csv": {**CSV_TABLE, "encoding": "latin-1"}}, key="resources.meters")
    with pytest.raises(CsvFormatError) as info:
        read_csv_records(utf8, opts, url="http://x.example/m")
    assert "resources.meters.csv.encoding" in info.value.hint


def test_zipped_cp1252_csv_reads_with_the_encoding(serve: Any) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("export.csv", CSV.encode("cp1252"))
    body = buf.getvalue()
    error = _failed(_csv_fetch(serve, body, "application/zip"))
    assert "export.csv" in error and "not valid UTF-8" in error
    assert _name(_csv_fetch(serve, body, "application/zip", encoding="cp1252")) == NAME


# -- the profile key --------------------------------------------------------------------------
def test_the_encoding_key_is_checked_when_the_profile_is_read() -> None:
    from scaler_workbench.connectors.resources import RESOURCE_KEYS, ResourceSpec

    assert "encoding" in RESOURCE_KEYS
    profile = fake_profile("http://127.0.0.1:9", resources={"m": {"path": "/m"}})
    spec = ResourceSpec.from_profile(
        "m", {"path": "/m", "encoding": "windows-1252"}, profile=profile
    )
    assert spec.encoding == "windows-1252"
    with pytest.raises(ProfileError, match="not an encoding") as info:
        ResourceSpec.from_profile("m", {"path": "/m", "encoding": "klingon"}, profile=profile)
    assert info.value.context["key"] == "resources.m.encoding"
    with pytest.raises(ProfileError, match="encodng"):
        fake_profile("http://127.0.0.1:9", resources={"m": {"path": "/m", "encodng": "cp1252"}})


def test_a_request_sees_no_decoding_of_its_own(serve: Any) -> None:
    # the handler answers bytes: what reaches the records is what the rules above decide
    def handler(req: Request) -> Reply:
        return Reply(200, _json().encode("utf-16"), content_type="application/json")

    server = serve(handler)
    profile = fake_profile(
        server.url, resources={"m": {"path": "/m", "record_path": "data", "primary_key": "id"}}
    )
    assert _name(fetch_resources(profile, clock=FakeClock())["m"]) == NAME


# -- a whole sync: a wrong or missing encoding never reaches the exported names ----------------
@pytest.mark.parametrize(
    ("line", "replacement", "what"),
    [
        ('encoding = "cp1252"', "", "sites"),  # the cp1252 export read as UTF-8: refused
        ('encoding = "utf-8-sig"', 'encoding = "latin-1"', "meters"),  # BOM under latin-1
    ],
)
def test_csv_flavour_with_a_wrong_encoding_exports_no_mojibake(
    make_sandbox: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    line: str,
    replacement: str,
    what: str,
) -> None:
    import shutil
    from datetime import UTC, datetime

    from scaler_workbench.exceptions import WorkbenchError
    from scaler_workbench.profile import read_profile
    from scaler_workbench.sync import run_sync

    root = Path(__file__).resolve().parents[2] / "tests" / "data" / "csvexport"
    folder = tmp_path / "profile"
    shutil.copytree(root, folder)
    text = (folder / "profile.toml").read_text(encoding="utf-8")
    assert line in text
    (folder / "profile.toml").write_text(text.replace(line, replacement), encoding="utf-8")
    sb = make_sandbox(
        flavour="csvexport",
        flavour_options={},
        sites=1,
        meters_per_site=1,
        start="2024-01-01",
        end="2024-01-03",
    )
    for k, v in sb.env().items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "out"
    clock = FakeClock(datetime(2024, 3, 2, tzinfo=UTC))
    # every page of an entity resource failed: the sync stops, naming the URL and the encoding
    with pytest.raises(WorkbenchError) as info:
        run_sync(read_profile(folder / "profile.toml"), out=out, clock=clock, formats=("csv",))
    message = str(info.value)
    assert f"/export/{what}.csv" in message and "127.0.0.1" in message
    assert ("not valid UTF-8" in message) if what == "sites" else ("csv.encoding" in message)
    if what == "sites":  # every page unreadable: the wording names the profile, not an outage
        assert "the profile cannot read (check the resource's format and encoding)" in message
    exported = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".csv", ".json")]
    for path in exported:  # nothing half-read was written
        body = path.read_text(encoding="utf-8")
        assert not any(m in body for m in MOJIBAKE), path.name
    assert not (out / "export" / "assets.csv").exists()


def test_client_get_takes_the_encoding_too(serve: Any) -> None:
    from scaler_workbench.connectors import Client

    body = _json().encode("cp1252")
    server = serve(lambda req: Reply(200, body, content_type="application/json"))
    client = Client(fake_profile(server.url, resources={"m": {"path": "/m"}}), clock=FakeClock())
    with pytest.raises(ResponseParseError, match="not valid UTF-8"):
        client.get("/m")
    assert client.get("/m", encoding="cp1252").body["data"][0]["name"] == NAME
