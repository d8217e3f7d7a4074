"""Recording and replaying a provider's answers (connectors.client RecordingAdapter/ReplayAdapter).

A GraphQL and a SOAP sandbox flavour sync is recorded (POST requests keyed by a hash of their
redacted body), the sandbox stopped, and the same sync replayed offline gives the same exported
files. Binary and non-UTF-8 bodies (a zip, a cp1252 CSV without charset) come back byte for
byte; a secret in a request body, a URL or an answer is never written to the recording, in any
encoding.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from _fakes import Reply, Request

from scaler_workbench._secrets import register_secret
from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import Client, fetch_resources
from scaler_workbench.connectors.paginate import PageRequest
from scaler_workbench.exceptions import TransportError
from scaler_workbench.profile import read_profile
from scaler_workbench.sync import run_sync

from .conftest import fake_profile, flavour_truth, usage_months

ROOT = Path(__file__).resolve().parents[2]
TINY = {"sites": 1, "meters_per_site": 1, "start": "2024-01-01", "end": "2024-01-03"}
#: a distinctive secret value (never a common word)
SECRET = "rec0rd-Sécret-7Qz!x9/Kp+Lw=="


def _forms(secret: str) -> set[str]:
    """``secret`` as text in the encodings a recording could hold it in."""
    raw = secret.encode("utf-8")
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


def _assert_no_secret(folder: Path, secret: str) -> None:
    """No file of ``folder`` holds ``secret`` in any form, nor in any base64 body it keeps."""
    files = list(folder.iterdir())
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not [f for f in _forms(secret) if f in text], path.name
        record = json.loads(text)
        if "body_base64" in record:
            raw = base64.b64decode(record["body_base64"])
            for codec in ("utf-8", "cp1252", "utf-16-le", "utf-16-be"):
                try:
                    assert secret.encode(codec) not in raw, (path.name, codec)
                except UnicodeEncodeError:
                    continue


def _exports(out: Path) -> dict[str, bytes]:
    """The exported data files (not the run's own summary, with its times and ids)."""
    return {
        p.name: p.read_bytes()
        for p in sorted((out / "export").iterdir())
        if p.suffix == ".csv" and p.name not in ("run_summary.csv",)
    }


def _record_then_replay(
    monkeypatch: pytest.MonkeyPatch, sb: Any, profile_path: Path, tmp_path: Path
) -> tuple[Path, Path, Path]:
    from scaler_workbench import sync

    folder = tmp_path / "recorded"
    live, offline = tmp_path / "live", tmp_path / "offline"
    now = datetime(2024, 3, 2, tzinfo=UTC)
    monkeypatch.setattr(sync, "Client", functools.partial(Client, record_to=folder))
    result = run_sync(read_profile(profile_path), out=live, clock=FakeClock(now), formats=("csv",))
    assert result.status == "success"
    sb.stop()  # offline from here on
    monkeypatch.setattr(sync, "Client", functools.partial(Client, replay_from=folder))
    result = run_sync(
        read_profile(profile_path), out=offline, clock=FakeClock(now), formats=("csv",)
    )
    assert result.status == "success"
    return folder, live, offline


def test_graphql_flavour_recorded_then_replayed_offline_gives_the_same_exports(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sb = make_sandbox(
        flavour="graphql",
        flavour_options={"homes": 2, "start": "2024-01-01", "end": "2024-03-01"},
        every_nth_503=5,  # transient answers are retried and never recorded
        **TINY,
    )
    for k, v in sb.env().items():
        monkeypatch.setenv(k, v)
    token = sb.env()["SANDBOX_TOKEN"]
    folder, live, offline = _record_then_replay(
        monkeypatch, sb, ROOT / "tests" / "data" / "graphql" / "profile.toml", tmp_path
    )
    assert usage_months(live) == pytest.approx(flavour_truth(sb), rel=1e-9)
    assert _exports(offline) == _exports(live) and "usage.csv" in _exports(live)
    records = [json.loads(p.read_text(encoding="utf-8")) for p in folder.iterdir()]
    posts = [r for r in records if r["method"] == "POST"]
    assert posts and all(" body:" in r["request"] for r in posts)
    # every page of the Relay pagination is its own recording (a cursor in the body)
    assert len({r["request"] for r in posts}) == len(posts) > 2
    assert all(r["status"] < 500 and r["status"] != 429 for r in records)
    _assert_no_secret(folder, token)


def test_soap_flavour_recorded_then_replayed_offline_gives_the_same_exports(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sb = make_sandbox(
        flavour="soap",
        flavour_options={"meters": 3, "start": "2024-01-01", "end": "2024-03-01"},
        **TINY,
    )
    for k, v in sb.env().items():
        monkeypatch.setenv(k, v)
    token = sb.env()["SANDBOX_TOKEN"]
    folder, live, offline = _record_then_replay(
        monkeypatch, sb, ROOT / "tests" / "data" / "soap" / "profile.toml", tmp_path
    )
    assert usage_months(live) == pytest.approx(flavour_truth(sb), rel=1e-9)
    assert _exports(offline) == _exports(live) and "usage.csv" in _exports(live)
    posts = [
        r
        for r in (json.loads(p.read_text(encoding="utf-8")) for p in folder.iterdir())
        if r["method"] == "POST"
    ]
    # one envelope per meter and month (same path, same action: only the body tells them apart)
    assert len(posts) >= 1 + 3 * 2
    assert len({r["request"] for r in posts}) == len(posts)
    _assert_no_secret(folder, token)


# -- bodies byte for byte, secrets never written -----------------------------------------------
def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export.csv", "meter;kwh\nm1;1,5\n" * 50)
    return buf.getvalue()


CP1252 = "meter;name\r\nm1;Zürich € Straße\r\n".encode("cp1252")
UTF16 = '<?xml version="1.0" encoding="UTF-16"?><r>Zürich</r>'.encode("utf-16")
BINARY = bytes(range(256)) * 4


def test_binary_and_non_utf8_bodies_round_trip_byte_for_byte(serve: Any, tmp_path: Path) -> None:
    bodies = {
        "/export.zip": (_zip(), "application/zip"),
        "/export.csv": (CP1252, "text/csv"),  # cp1252, no charset declared
        "/feed.xml": (UTF16, "application/xml"),
        "/blob": (BINARY, "application/octet-stream"),
        "/bom.json": (b'\xef\xbb\xbf{"a": "Z\xc3\xbcrich"}', "application/json"),
    }

    def handler(req: Request) -> Reply:
        body, ctype = bodies[req.path]
        return Reply(200, body, content_type=ctype)

    server = serve(handler)
    profile = fake_profile(server.url, resources={"x": {"path": "/x"}})
    folder = tmp_path / "recorded"
    recorder = Client(profile, record_to=folder, clock=FakeClock())
    for path in bodies:
        recorder.send(PageRequest(url=path), fmt="csv")
    server.close()
    replayer = Client(profile, replay_from=folder, clock=FakeClock())
    for path, (body, ctype) in bodies.items():
        reply = replayer.send(PageRequest(url=path), fmt="csv")
        assert reply.response.content == body, path
        assert reply.response.headers["Content-Type"] == ctype
    kinds = {
        json.loads(p.read_text(encoding="utf-8"))["url"].rsplit("/", 1)[1]: (
            "body_base64" in json.loads(p.read_text(encoding="utf-8"))
        )
        for p in folder.iterdir()
    }
    assert kinds == {
        "export.zip": True,
        "export.csv": True,
        "feed.xml": True,
        "blob": True,
        "bom.json": False,
    }
    # the text the records read back is the same too
    replay = fetch_resources(
        fake_profile(
            server.url,
            resources={
                "rows": {
                    "path": "/export.csv",
                    "csv": {"delimiter": ";"},
                    "encoding": "cp1252",
                    "primary_key": "meter",
                }
            },
        ),
        client=replayer,
    )
    assert replay["rows"].records == [{"meter": "m1", "name": "Zürich € Straße"}]


def test_posts_are_keyed_by_a_hash_of_the_redacted_body_and_no_secret_is_written(
    serve: Any, tmp_path: Path
) -> None:
    register_secret(SECRET)

    def handler(req: Request) -> Reply:
        payload = json.loads(req.body) if req.body.startswith(b"{") else dict(req.form)
        page = payload.get("page", "1")
        if req.path == "/echo-cp1252":  # an answer echoing the secret, in cp1252 bytes
            return Reply(200, f"page;{page};{SECRET}\n".encode("cp1252"), content_type="text/csv")
        if req.path == "/echo-utf16":
            return Reply(
                200, f"<r p='{page}'>{SECRET}</r>".encode("utf-16"), content_type="application/xml"
            )
        return Reply(200, {"page": page, "echo": SECRET}, headers={"X-Total-Count": "2"})

    server = serve(handler)
    profile = fake_profile(server.url, resources={"x": {"path": "/x"}})
    folder = tmp_path / "recorded"
    recorder = Client(profile, record_to=folder, clock=FakeClock())
    sent = [
        PageRequest(url="/graphql", method="POST", json={"page": "1", "password": SECRET}),
        PageRequest(url="/graphql", method="POST", json={"page": "2", "password": SECRET}),
        PageRequest(
            url="/form",
            method="POST",
            data=f"page=1&user=ops&password={quote_plus(SECRET)}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        PageRequest(url="/echo-cp1252", method="POST", json={"page": "1"}),
        PageRequest(url="/echo-utf16", method="POST", json={"page": "1"}),
        PageRequest(url=f"/graphql?sig={quote(SECRET)}", method="POST", json={"page": "3"}),
    ]
    live = [recorder.send(r, fmt="csv").response.content for r in sent]
    assert len(list(folder.iterdir())) == len(sent)  # one recording per body
    _assert_no_secret(folder, SECRET)
    server.close()
    replayer = Client(profile, replay_from=folder, clock=FakeClock())
    for request, body in zip(sent, live, strict=True):
        got = replayer.send(request, fmt="csv").response.content
        # byte for byte, but the secret the answer echoed is masked
        echoed = [
            f.encode(codec)
            for f in _forms(SECRET)
            for codec in ("utf-8", "cp1252", "utf-16-le")
            if f.encode(codec, "ignore") == f.encode(codec, "replace")
        ]
        assert not [e for e in echoed if e in got]
        if any(e in body for e in echoed):
            assert b"***" in got and got != body
        else:
            assert got == body
    assert b"***" in replayer.send(sent[3], fmt="csv").response.content
    # a body never recorded: a clear TransportError naming the request, without the secret
    with pytest.raises(TransportError, match="no recorded response for POST /graphql") as info:
        replayer.send(
            PageRequest(url="/graphql", method="POST", json={"page": "9", "password": SECRET}),
            fmt="csv",
        )
    assert not [f for f in _forms(SECRET) if f in str(info.value) + repr(info.value)]
    with pytest.raises(TransportError, match="no recorded response for GET /graphql"):
        replayer.send(PageRequest(url="/graphql"), fmt="csv")


def test_the_key_does_not_depend_on_a_secret_in_the_body(tmp_path: Path) -> None:
    from scaler_workbench.connectors import client

    other = "an0ther-Sécret-Vx42-Rt!"
    register_secret(SECRET)
    register_secret(other)
    one = client._request_key("POST", "http://h/x", json.dumps({"password": SECRET, "p": 1}))
    two = client._request_key("POST", "http://h/x", json.dumps({"password": other, "p": 1}))
    three = client._request_key("POST", "http://h/x", json.dumps({"password": other, "p": 2}))
    assert one == two != three
    form = "application/x-www-form-urlencoded"
    assert client._request_key(
        "POST", "http://h/x", "a=1&client_secret=unregistered-Qx81", form
    ) == client._request_key("POST", "http://h/x", "a=1&client_secret=other-Zp07", form)
    assert client._request_key("GET", "http://h/x?b=2&a=1") == "GET /x?a=1&b=2"  # GETs as before


def test_token_posts_are_not_recorded_and_replay_needs_no_token(
    make_sandbox: Any, sandbox_env: Any, tmp_path: Path
) -> None:
    from .conftest import AUTH_CASES, sandbox_profile

    options, auth = AUTH_CASES["oauth2_cc_body"]
    sb = make_sandbox(sites=1, meters_per_site=1, start="2024-01-01", end="2024-01-03", **options)
    sandbox_env(sb)
    profile = sandbox_profile(sb, auth=auth)
    folder = tmp_path / "recorded"
    live = fetch_resources(
        profile, resources=["sites"], client=Client(profile, record_to=folder, clock=FakeClock())
    )
    records = [json.loads(p.read_text(encoding="utf-8")) for p in folder.iterdir()]
    assert records and all(r["method"] == "GET" for r in records)
    assert not any("access_token" in json.dumps(r) for r in records)
    sb.stop()
    replay = fetch_resources(
        profile, resources=["sites"], client=Client(profile, replay_from=folder, clock=FakeClock())
    )
    assert replay["sites"].records == live["sites"].records
